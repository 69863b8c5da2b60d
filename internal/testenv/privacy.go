package testenv

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// SpecTopics are the topics of docs/SPEC.md's MQTT table, below the
// prefix: the only ones anything may use. Written out here, not taken from
// the code, so that a topic the code adds fails the tests until SPEC and
// this list say it is part of the contract (TestSpecTopicsAreSpecs holds
// the list to SPEC's table).
var SpecTopics = []string{"available", "notice", "consent", "revoke", "revoke/receipt", "audit", "checkpoint"}

// InTopics are the topics of SpecTopics the agent reads (dir "in"): what
// arrives there was sent to the agent, tokens by design, never by it.
var InTopics = []string{"consent", "revoke"}

// Private is what SPEC keeps out of audit events and off the bus, as a
// scanner: images, tokens and key material ("Events never contain images,
// tokens or key material"; "No image or token ever goes on the bus"), and
// what identifies the person at the kiosk beyond the pseudonymous subject
// (a refusal keeps "nothing else"). Leaks finds, in any payload, JPEG data
// (raw, or base64 of any alphabet), a compact JWT or one of its segments,
// and IP addresses (v4 and v6) without being told of them; tests add what
// they handed to the box or got from it: the tokens they signed, the
// withdrawal codes and images they got, their User-Agent. Safe for
// concurrent use.
type Private struct {
	mu      sync.Mutex
	needles []needle
}

type needle struct {
	what string
	b    []byte
	fold bool // compare without case
}

// minSegment is the shortest token segment looked for on its own: every
// segment of a signed token is longer (an Ed25519 signature alone is 86
// characters), and shorter strings could turn up by chance.
const minSegment = 16

// AddToken adds a token (a JWT, or any bearer secret), and, for a JWT,
// each of its three segments.
func (p *Private) AddToken(tok string) {
	tok = strings.TrimSpace(tok)
	p.add(needle{what: "a token", b: []byte(tok)})
	if segs := strings.Split(tok, "."); len(segs) == 3 {
		for i, s := range segs {
			if len(s) >= minSegment {
				p.add(needle{what: fmt.Sprintf("segment %d of a token", i+1), b: []byte(s)})
			}
		}
	}
}

// AddCode adds a kiosk withdrawal code as given (in groups), without its
// dashes, and its second half (the MAC tag that makes it a code), in any
// case.
func (p *Private) AddCode(code string) {
	bare := strings.ToUpper(strings.NewReplacer("-", "", " ", "").Replace(code))
	p.add(needle{what: "a withdrawal code", b: []byte(code), fold: true})
	p.add(needle{what: "a withdrawal code", b: []byte(bare), fold: true})
	if len(bare) >= 2*minSegment {
		p.add(needle{what: "the tag of a withdrawal code", b: []byte(bare[len(bare)/2:]), fold: true})
	}
}

// AddImage adds an image: each of its 32-byte pieces raw and in hex, and
// each of its 48-byte pieces (at offsets that are multiples of 3, as in
// any base64 of the whole image) in base64, standard and URL.
func (p *Private) AddImage(img []byte) {
	for off := 0; off+32 <= len(img); off += 32 {
		piece := img[off : off+32]
		p.add(needle{what: "bytes of an image", b: bytes.Clone(piece)})
		p.add(needle{what: "bytes of an image, in hex", b: []byte(hex.EncodeToString(piece)), fold: true})
	}
	for off := 0; off+48 <= len(img); off += 48 {
		piece := img[off : off+48]
		p.add(needle{what: "bytes of an image, in base64", b: []byte(base64.StdEncoding.EncodeToString(piece))})
		p.add(needle{what: "bytes of an image, in base64url", b: []byte(base64.URLEncoding.EncodeToString(piece))})
	}
}

// AddString adds any other string, named what in findings (a User-Agent).
func (p *Private) AddString(what, s string) {
	if s != "" {
		p.add(needle{what: what, b: []byte(s)})
	}
}

func (p *Private) add(n needle) {
	if n.fold {
		n.b = bytes.ToLower(n.b)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.needles = append(p.needles, n)
}

// Leaks returns what payload holds that it must not, one finding for each
// kind, with where (nil when nothing). The scan covers the payload's bytes
// and, when it is JSON, each of its strings decoded (so an escape such as
// \/ hides nothing).
func (p *Private) Leaks(payload []byte) []string {
	found := map[string]string{} // what → where, the first time
	p.scan(payload, found)
	var v any
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if dec.Decode(&v) == nil {
		walkStrings(v, func(s string) { p.scan([]byte(s), found) })
	}
	var out []string
	for _, what := range slices.Sorted(maps.Keys(found)) {
		out = append(out, what+": "+found[what])
	}
	return out
}

func walkStrings(v any, fn func(string)) {
	switch v := v.(type) {
	case string:
		fn(v)
	case []any:
		for _, x := range v {
			walkStrings(x, fn)
		}
	case map[string]any:
		for k, x := range v {
			fn(k)
			walkStrings(x, fn)
		}
	}
}

// scan notes in found what b holds, once each kind, with where.
func (p *Private) scan(b []byte, found map[string]string) {
	note := func(what string, at int) {
		if _, ok := found[what]; !ok {
			lo, hi := max(0, at-20), min(len(b), at+40)
			found[what] = fmt.Sprintf("…%q…", b[lo:hi])
		}
	}
	if i := bytes.Index(b, jpegSOI); i >= 0 {
		note("JPEG data", i)
	}
	for _, start := range []string{"/9j/", "_9j_"} {
		for i := 0; ; {
			j := bytes.Index(b[i:], []byte(start))
			if j < 0 {
				break
			}
			at := i + j
			if (at == 0 || !isBase64(b[at-1])) && base64Run(b[at:]) >= minJPEGBase64 {
				note("JPEG data in base64", at)
			}
			i = at + 1
		}
	}
	if loc := jwtPattern.FindIndex(b); loc != nil {
		note("a JWT", loc[0])
	}
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte("eyJ"))
		if j < 0 {
			break
		}
		at := i + j
		if (at == 0 || !isBase64(b[at-1])) && isJSONSegment(b[at:]) {
			note("a JWT segment (base64url of a JSON object)", at)
		}
		i = at + 1
	}
	for _, loc := range ipv4Pattern.FindAllIndex(b, -1) {
		if a, err := netip.ParseAddr(string(b[loc[0]:loc[1]])); err == nil && a.Is4() {
			note("an IPv4 address", loc[0])
		}
	}
	for _, loc := range ipv6Pattern.FindAllIndex(b, -1) {
		s := strings.Trim(string(b[loc[0]:loc[1]]), ".")
		if strings.Count(s, ":") < 2 {
			continue
		}
		if a, err := netip.ParseAddr(s); err == nil && a.Is6() {
			note("an IPv6 address", loc[0])
		}
	}
	p.mu.Lock()
	needles := slices.Clone(p.needles)
	p.mu.Unlock()
	lower := bytes.ToLower(b)
	for _, n := range needles {
		hay := b
		if n.fold {
			hay = lower
		}
		if i := bytes.Index(hay, n.b); i >= 0 {
			note(n.what, i)
		}
	}
}

var (
	// jpegSOI is how every JPEG begins: a start-of-image marker and the
	// next marker. Events and the bus carry UTF-8 text, where the byte FF
	// never occurs, so three bytes are enough.
	jpegSOI = []byte{0xFF, 0xD8, 0xFF}
	// minJPEGBase64 is the shortest base64 run taken for a JPEG: 100 bytes
	// (no JPEG is smaller; a face crop is thousands). A checkpoint's root
	// or signature is base64 too, and starts with /9j/ once in 16 million:
	// at 44 and 92 characters it is too short to be taken for one.
	minJPEGBase64 = 136
	jwtPattern    = regexp.MustCompile(`eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*`)
	ipv4Pattern   = regexp.MustCompile(`\b(?:[0-9]{1,3}\.){3}[0-9]{1,3}\b`)
	// ipv6Pattern finds runs of hex digits, colons and dots: candidates
	// that netip parses or not (a time such as 10:11:12.345 never parses).
	ipv6Pattern = regexp.MustCompile(`[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*`)
)

func isBase64(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '-' || c == '_'
}

// base64Run is the length of the run of base64 characters (any alphabet)
// at the start of b.
func base64Run(b []byte) int {
	n := 0
	for n < len(b) && isBase64(b[n]) {
		n++
	}
	return n
}

// isJSONSegment reports whether b starts with base64url (unpadded) of a
// JSON object with at least one member, as a JWT's header and claims are.
// The root hash of a checkpoint that happens to start with eyJ decodes to
// `{"` and random bytes, which are not JSON.
func isJSONSegment(b []byte) bool {
	n := 0
	for n < len(b) && (b[n] >= 'A' && b[n] <= 'Z' || b[n] >= 'a' && b[n] <= 'z' || b[n] >= '0' && b[n] <= '9' || b[n] == '-' || b[n] == '_') {
		n++
	}
	if n%4 == 1 {
		n--
	}
	raw, err := base64.RawURLEncoding.DecodeString(string(b[:n]))
	if err != nil {
		return false
	}
	var obj map[string]any
	return json.Unmarshal(raw, &obj) == nil && len(obj) > 0
}

// CheckDetail checks one audit event's JSON against an allow-list of
// detail keys per event type (store.DetailKeys): it returns an error when
// the type has no entry or the detail holds a key not listed for it.
func CheckDetail(allow map[string][]string, event []byte) error {
	var ev struct {
		Seq    uint64
		Type   string
		Detail map[string]json.RawMessage
	}
	if err := json.Unmarshal(event, &ev); err != nil {
		return fmt.Errorf("event %q: %v", event, err)
	}
	keys, ok := allow[ev.Type]
	if !ok {
		return fmt.Errorf("event %d: type %q is not in the detail allow-list", ev.Seq, ev.Type)
	}
	var extra []string
	for k := range ev.Detail {
		if !slices.Contains(keys, k) {
			extra = append(extra, k)
		}
	}
	if len(extra) > 0 {
		slices.Sort(extra)
		return fmt.Errorf("event %d (%s): detail keys %q are not in its allow-list %q", ev.Seq, ev.Type, extra, keys)
	}
	return nil
}
