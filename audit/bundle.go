package audit

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/store"
	"github.com/gowebpki/jcs"
)

// Format is the manifest's format string of this version of the bundle.
const Format = "consentcam-audit-bundle/1"

// The files of a bundle (docs/SPEC.md, "Audit bundle").
const (
	FileManifest   = "manifest.json"
	FileLog        = "audit.jsonl"
	FileCheckpoint = "checkpoint"
	FileEvidence   = "evidence.jsonl"
	FileDevice     = "device.pub"
	FileTrust      = "trust.json"
	DirNotices     = "notices"
)

// DefaultTolerance is the tolerance a new manifest states.
const DefaultTolerance = 5 * time.Second

// Limits on the sizes of the small files, read whole.
const (
	maxSmallFile  = 1 << 20
	maxEvidence   = 1 << 30
	maxEvidenceLn = 64 << 10
)

// Manifest is manifest.json: what the bundle is of, the settings and
// tolerance the rules use, and the size and SHA-256 of every other file.
type Manifest struct {
	Format string    `json:"format"`
	Site   string    `json:"site"`
	Camera string    `json:"camera"`
	Made   time.Time `json:"made"`
	// Source says where the files came from (the agent's address).
	Source string `json:"source,omitempty"`
	// Tolerance is the slack allowed on every deadline the rules check, for
	// the box's own processing time.
	Tolerance Duration `json:"tolerance"`
	// Settings are the box's settings as the maker of the bundle states
	// them; the rules use those the box signed in agent.started, and these
	// only for a run whose agent.started carries none.
	Settings *Settings `json:"settings,omitempty"`
	// Files lists every other file of the bundle by its slash-separated
	// path.
	Files map[string]FileDigest `json:"files"`
}

// FileDigest is the size and SHA-256 (lowercase hex) of a file.
type FileDigest struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

func digestOf(b []byte) FileDigest {
	sum := sha256.Sum256(b)
	return FileDigest{Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])}
}

// Trust is trust.json: the public keys the box trusts, by kid, as PKIX PEM.
type Trust struct {
	Issuers   map[string]string `json:"issuers"`
	Operators map[string]string `json:"operators"`
}

// Bundle is a bundle opened and read, all but its log, which Check streams.
type Bundle struct {
	fsys fs.FS

	Manifest   Manifest
	Checkpoint []byte
	Device     ed25519.PublicKey
	// Issuers and Operators are the keys of trust.json.
	Issuers   map[string]ed25519.PublicKey
	Operators map[string]ed25519.PublicKey
	// Evidence is evidence.jsonl, by the seq of the event that references it.
	Evidence map[uint64]*store.Evidence
	// Notices are the notices, by hash.
	Notices map[string]*Notice
}

// Notice is a published notice of the bundle.
type Notice struct {
	Hash     string
	JSON     []byte
	Purposes map[string]time.Duration // purpose id → retention
}

// BundleError is a bundle that cannot be checked: a file missing,
// truncated, malformed or foreign. It names the file, and the line when it
// knows it.
type BundleError struct {
	File string
	Line int
	Err  error
}

func (e *BundleError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s line %d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.File, e.Err)
}

func (e *BundleError) Unwrap() error { return e.Err }

func bundleErr(file string, format string, args ...any) error {
	return &BundleError{File: file, Err: fmt.Errorf(format, args...)}
}

// Open reads the bundle in dir: see OpenFS. Errors name files by their path
// under dir.
func Open(dir string) (*Bundle, error) {
	if fi, err := os.Stat(dir); err != nil {
		return nil, &BundleError{File: dir, Err: err}
	} else if !fi.IsDir() {
		return nil, bundleErr(dir, "not a directory: a bundle is a directory (docs/AUDIT.md)")
	}
	return OpenFS(os.DirFS(dir))
}

var namePattern = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)

// OpenFS reads a bundle: the manifest, then every file it lists, whose size
// and SHA-256 must match (the log only streamed, not kept), then the keys,
// the evidence and the notices. Any file missing, unlisted, truncated or
// malformed is a *BundleError.
func OpenFS(fsys fs.FS) (*Bundle, error) {
	b := &Bundle{fsys: fsys}
	if err := b.readManifest(); err != nil {
		return nil, err
	}
	if err := b.checkFiles(); err != nil {
		return nil, err
	}
	if err := b.readKeys(); err != nil {
		return nil, err
	}
	if err := b.readEvidence(); err != nil {
		return nil, err
	}
	if err := b.readNotices(); err != nil {
		return nil, err
	}
	return b, nil
}

// readSmall reads a small file whole.
func readSmall(fsys fs.FS, name string, limit int64) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, &BundleError{File: name, Err: unwrapPathError(err)}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, &BundleError{File: name, Err: unwrapPathError(err)}
	}
	if int64(len(data)) > limit {
		return nil, bundleErr(name, "larger than %d bytes", limit)
	}
	return data, nil
}

// unwrapPathError drops the path of an fs error, which BundleError names.
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		if errors.Is(pe.Err, fs.ErrNotExist) {
			return errors.New("missing")
		}
		return pe.Err
	}
	return err
}

// decodeStrict decodes one JSON value, refusing unknown fields and anything
// after it.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}

func (b *Bundle) readManifest() error {
	data, err := readSmall(b.fsys, FileManifest, maxSmallFile)
	if err != nil {
		return err
	}
	m := &b.Manifest
	if err := decodeStrict(data, m); err != nil {
		return bundleErr(FileManifest, "not a bundle manifest: %v", err)
	}
	switch {
	case m.Format != Format:
		return bundleErr(FileManifest, "format %q, this program reads %q", m.Format, Format)
	case !namePattern.MatchString(m.Site) || !namePattern.MatchString(m.Camera):
		return bundleErr(FileManifest, "bad site/camera %q/%q", m.Site, m.Camera)
	case m.Tolerance < 0:
		return bundleErr(FileManifest, "negative tolerance %v", m.Tolerance)
	}
	if m.Settings != nil {
		if err := m.Settings.validate(); err != nil {
			return bundleErr(FileManifest, "settings: %v", err)
		}
	}
	for _, name := range []string{FileLog, FileCheckpoint, FileEvidence, FileDevice, FileTrust} {
		if _, ok := m.Files[name]; !ok {
			return bundleErr(FileManifest, "does not list %s, which every bundle has", name)
		}
	}
	for name, d := range m.Files {
		if !bundleFile(name) {
			return bundleErr(FileManifest, "lists %q, which is no file of a bundle", name)
		}
		if d.Size < 0 || len(d.SHA256) != 64 || strings.ToLower(d.SHA256) != d.SHA256 {
			return bundleErr(FileManifest, "bad size or sha256 for %s", name)
		}
	}
	return nil
}

var noticeFile = regexp.MustCompile(`^notices/[0-9a-f]{64}\.json$`)

// bundleFile reports whether name is a file a bundle may hold besides its
// manifest.
func bundleFile(name string) bool {
	switch name {
	case FileLog, FileCheckpoint, FileEvidence, FileDevice, FileTrust:
		return true
	}
	return noticeFile.MatchString(name)
}

// checkFiles makes sure the bundle holds exactly the files its manifest
// lists, each of its size and SHA-256.
func (b *Bundle) checkFiles() error {
	err := fs.WalkDir(b.fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return &BundleError{File: name, Err: unwrapPathError(err)}
		}
		switch {
		case d.IsDir() && (name == "." || name == DirNotices):
			return nil
		case d.IsDir():
			return bundleErr(name, "a directory a bundle does not have")
		case name == FileManifest:
			return nil
		}
		if _, ok := b.Manifest.Files[name]; !ok {
			return bundleErr(name, "not listed in %s: not part of this bundle", FileManifest)
		}
		return nil
	})
	if err != nil {
		return err
	}
	names := make([]string, 0, len(b.Manifest.Files))
	for name := range b.Manifest.Files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := b.checkDigest(name, b.Manifest.Files[name]); err != nil {
			return err
		}
	}
	return nil
}

func (b *Bundle) checkDigest(name string, want FileDigest) error {
	f, err := b.fsys.Open(name)
	if err != nil {
		return &BundleError{File: name, Err: unwrapPathError(err)}
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return &BundleError{File: name, Err: unwrapPathError(err)}
	}
	switch {
	case n < want.Size:
		return bundleErr(name, "truncated: %d bytes, the manifest says %d", n, want.Size)
	case n != want.Size:
		return bundleErr(name, "%d bytes, the manifest says %d: not the file this bundle was made with", n, want.Size)
	case hex.EncodeToString(h.Sum(nil)) != want.SHA256:
		return bundleErr(name, "SHA-256 differs from the manifest's: not the file this bundle was made with")
	}
	return nil
}

func (b *Bundle) readKeys() error {
	data, err := readSmall(b.fsys, FileDevice, maxSmallFile)
	if err != nil {
		return err
	}
	if b.Device, err = consent.ParsePublicKey(data); err != nil {
		return bundleErr(FileDevice, "%v", err)
	}
	if b.Checkpoint, err = readSmall(b.fsys, FileCheckpoint, maxSmallFile); err != nil {
		return err
	}
	data, err = readSmall(b.fsys, FileTrust, maxSmallFile)
	if err != nil {
		return err
	}
	var t Trust
	if err := decodeStrict(data, &t); err != nil {
		return bundleErr(FileTrust, "not a key list: %v", err)
	}
	if b.Issuers, err = parseKeys(t.Issuers, "issuers"); err != nil {
		return err
	}
	b.Operators, err = parseKeys(t.Operators, "operators")
	return err
}

func parseKeys(pems map[string]string, what string) (map[string]ed25519.PublicKey, error) {
	keys := make(map[string]ed25519.PublicKey, len(pems))
	for kid, p := range pems {
		if kid == "" {
			return nil, bundleErr(FileTrust, "%s: an empty kid", what)
		}
		k, err := consent.ParsePublicKey([]byte(p))
		if err != nil {
			return nil, bundleErr(FileTrust, "%s[%q]: %v", what, kid, err)
		}
		keys[kid] = k
	}
	return keys, nil
}

// KeyFingerprint is the lowercase hex SHA-256 of a public key's PKIX DER
// encoding: how agent.started names the keys the box trusts.
func KeyFingerprint(pub ed25519.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "" // not an Ed25519 key of the right size
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

func (b *Bundle) readEvidence() error {
	f, err := b.fsys.Open(FileEvidence)
	if err != nil {
		return &BundleError{File: FileEvidence, Err: unwrapPathError(err)}
	}
	defer f.Close()
	b.Evidence = make(map[uint64]*store.Evidence)
	jtis := make(map[string]int)
	sc := bufio.NewScanner(io.LimitReader(f, maxEvidence))
	sc.Buffer(make([]byte, 0, 64<<10), maxEvidenceLn)
	line := 0
	last := int64(-1)
	for sc.Scan() {
		line++
		lineErr := func(format string, args ...any) error {
			return &BundleError{File: FileEvidence, Line: line, Err: fmt.Errorf(format, args...)}
		}
		e := new(store.Evidence)
		if err := decodeStrict(sc.Bytes(), e); err != nil {
			return lineErr("not evidence: %v", err)
		}
		switch {
		case e.Kind != store.EvidenceConsent && e.Kind != store.EvidenceRevoke:
			return lineErr("kind %q: want %s or %s", e.Kind, store.EvidenceConsent, store.EvidenceRevoke)
		case e.JTI == "" || e.Token == "":
			return lineErr("jti or token empty")
		case int64(e.Seq) <= last:
			return lineErr("seq %d after seq %d: the lines must be in seq order, each seq once", e.Seq, last)
		case jtis[e.JTI] > 0:
			return lineErr("jti %q is also on line %d", e.JTI, jtis[e.JTI])
		}
		last = int64(e.Seq)
		jtis[e.JTI] = line
		b.Evidence[e.Seq] = e
	}
	if err := sc.Err(); err != nil {
		return &BundleError{File: FileEvidence, Line: line + 1, Err: err}
	}
	return nil
}

func (b *Bundle) readNotices() error {
	b.Notices = make(map[string]*Notice)
	for name := range b.Manifest.Files {
		if !noticeFile.MatchString(name) {
			continue
		}
		data, err := readSmall(b.fsys, name, maxSmallFile)
		if err != nil {
			return err
		}
		n, err := parseNotice(data)
		if err != nil {
			return bundleErr(name, "%v", err)
		}
		if want := strings.TrimSuffix(path.Base(name), ".json"); n.Hash != want {
			return bundleErr(name, "the notice hashes to %s, not to its file name", n.Hash)
		}
		b.Notices[n.Hash] = n
	}
	return nil
}

// parseNotice reads a notice as published (its JSON with its hash), checks
// the hash (SHA-256 of the RFC 8785 form without it) and reads its purposes.
func parseNotice(data []byte) (*Notice, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("not a notice: %v", err)
	}
	var said string
	if err := json.Unmarshal(m["hash"], &said); err != nil || said == "" {
		return nil, errors.New("not a notice: no hash")
	}
	delete(m, "hash")
	rest, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	canonical, err := jcs.Transform(rest)
	if err != nil {
		return nil, fmt.Errorf("not a notice: %v", err)
	}
	sum := sha256.Sum256(canonical)
	n := &Notice{Hash: hex.EncodeToString(sum[:]), JSON: data, Purposes: map[string]time.Duration{}}
	if said != n.Hash {
		return nil, fmt.Errorf("says hash %s, but hashes to %s", said, n.Hash)
	}
	// Only what the rules need, read alike from every version of the
	// notice (version 1 wrote texts as strings, version 2 by language).
	var body struct {
		Purposes []struct {
			ID               string `json:"id"`
			RetentionSeconds int64  `json:"retention_seconds"`
		} `json:"purposes"`
	}
	if err := json.Unmarshal(data, &body); err != nil {
		return nil, fmt.Errorf("not a notice: %v", err)
	}
	for _, p := range body.Purposes {
		n.Purposes[p.ID] = time.Duration(p.RetentionSeconds) * time.Second
	}
	return n, nil
}

// Contents is what Write puts in a bundle.
type Contents struct {
	Site, Camera string
	Source       string
	Made         time.Time
	Tolerance    time.Duration
	Settings     *Settings // nil: none stated
	Log          []byte    // JSON Lines as /v1/audit serves them
	Checkpoint   []byte
	Evidence     []store.Evidence
	Notices      [][]byte // each as published, with its hash
	Device       ed25519.PublicKey
	Issuers      map[string]ed25519.PublicKey
	Operators    map[string]ed25519.PublicKey
}

// Write makes a bundle in dir, which must not exist or be empty, and
// returns the manifest it wrote.
func Write(dir string, c *Contents) (*Manifest, error) {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("write bundle: %s is not empty", dir)
	}
	files := map[string][]byte{FileLog: c.Log, FileCheckpoint: c.Checkpoint}
	var ev bytes.Buffer
	for _, e := range c.Evidence {
		line, err := json.Marshal(e)
		if err != nil {
			return nil, fmt.Errorf("write bundle: %w", err)
		}
		ev.Write(append(line, '\n'))
	}
	files[FileEvidence] = ev.Bytes()
	dev, err := consent.MarshalPublicKey(c.Device)
	if err != nil {
		return nil, fmt.Errorf("write bundle: device key: %w", err)
	}
	files[FileDevice] = dev
	t := Trust{Issuers: map[string]string{}, Operators: map[string]string{}}
	for _, set := range []struct {
		keys map[string]ed25519.PublicKey
		out  map[string]string
	}{{c.Issuers, t.Issuers}, {c.Operators, t.Operators}} {
		for kid, k := range set.keys {
			p, err := consent.MarshalPublicKey(k)
			if err != nil {
				return nil, fmt.Errorf("write bundle: key %s: %w", kid, err)
			}
			set.out[kid] = string(p)
		}
	}
	if files[FileTrust], err = json.MarshalIndent(t, "", "  "); err != nil {
		return nil, fmt.Errorf("write bundle: %w", err)
	}
	for _, data := range c.Notices {
		n, err := parseNotice(data)
		if err != nil {
			return nil, fmt.Errorf("write bundle: notice: %w", err)
		}
		files[DirNotices+"/"+n.Hash+".json"] = data
	}
	m := &Manifest{
		Format: Format, Site: c.Site, Camera: c.Camera, Made: c.Made.UTC(), Source: c.Source,
		Tolerance: Duration(c.Tolerance), Settings: c.Settings, Files: map[string]FileDigest{},
	}
	if err := os.MkdirAll(filepath.Join(dir, DirNotices), 0o755); err != nil {
		return nil, fmt.Errorf("write bundle: %w", err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(name)), data, 0o644); err != nil {
			return nil, fmt.Errorf("write bundle: %w", err)
		}
		m.Files[name] = digestOf(data)
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("write bundle: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, FileManifest), append(data, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("write bundle: %w", err)
	}
	return m, nil
}
