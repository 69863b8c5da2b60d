package witness_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/consentcam/consentcam/witness"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// answer is one canned answer of a fake witness.
type answer struct {
	status int
	ctype  string
	body   string
}

// request is an add-checkpoint request as a fake witness read it.
type request struct {
	old        uint64
	proof      [][]byte
	checkpoint []byte
}

// fakeWitness answers add-checkpoint requests in turn with the answers
// given, and records the requests, which it checks are well formed. It
// stands in for witnesses that answer what omniwitness cannot be made to
// (the 403 and 404 of the specification, a witness moving between two
// requests) or that break the protocol.
func fakeWitness(t *testing.T, answers ...answer) (*httptest.Server, func() []request) {
	t.Helper()
	var mu sync.Mutex
	var reqs []request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/add-checkpoint" {
			t.Errorf("%s %s, want POST /add-checkpoint", r.Method, r.URL.Path)
		}
		req, err := parseRequest(r.Body)
		if err != nil {
			t.Errorf("malformed add-checkpoint request: %v", err)
		}
		mu.Lock()
		reqs = append(reqs, req)
		a := answers[min(len(reqs), len(answers))-1]
		mu.Unlock()
		if a.ctype != "" {
			w.Header().Set("Content-Type", a.ctype)
		}
		w.WriteHeader(a.status)
		io.WriteString(w, a.body)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []request {
		mu.Lock()
		defer mu.Unlock()
		return append([]request(nil), reqs...)
	}
}

// parseRequest reads a request body as C2SP tlog-witness defines it.
func parseRequest(r io.Reader) (request, error) {
	var req request
	br := bufio.NewReader(r)
	line, err := br.ReadString('\n')
	if err != nil {
		return req, err
	}
	if _, err := fmt.Sscanf(line, "old %d\n", &req.old); err != nil || fmt.Sprintf("old %d\n", req.old) != line {
		return req, fmt.Errorf("old size line %q", line)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return req, err
		}
		if line == "\n" {
			break
		}
		h, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(line, "\n"))
		if err != nil || len(h) != 32 {
			return req, fmt.Errorf("proof line %q", line)
		}
		req.proof = append(req.proof, h)
	}
	if len(req.proof) > 63 {
		return req, fmt.Errorf("%d proof lines, at most 63", len(req.proof))
	}
	req.checkpoint, err = io.ReadAll(br)
	return req, err
}

func TestProtocol(t *testing.T) {
	size := func(n int) answer { return answer{409, "text/x.tlog.size", fmt.Sprintf("%d\n", n)} }
	for _, tc := range []struct {
		name     string
		answers  []answer
		known    bool // the client knows the witness cosigned the checkpoint's size
		kind     error
		status   int
		requests int
	}{
		{"unknown log", []answer{{404, "", ""}}, false, witness.ErrRefused, 404, 1},
		{"untrusted key", []answer{{403, "", ""}}, false, witness.ErrRefused, 403, 1},
		{"bad request", []answer{{400, "", "old size > checkpoint size"}}, false, witness.ErrRefused, 400, 1},
		{"pushback", []answer{{429, "", ""}}, false, witness.ErrDown, 429, 1},
		{"unavailable", []answer{{503, "", ""}}, false, witness.ErrDown, 503, 1},
		{"teapot", []answer{{418, "", ""}}, false, witness.ErrBadResponse, 418, 1},
		{"200 without a cosignature", []answer{{200, "", "thanks\n"}}, false, witness.ErrBadResponse, 200, 1},
		{"409 without a size", []answer{{409, "text/plain", "conflict\n"}}, false, witness.ErrBadResponse, 409, 1},
		{"409 naming the size asked", []answer{size(0)}, false, witness.ErrBadResponse, 409, 1},
		{"tree moved between two requests", []answer{size(3), size(5)}, false, witness.ErrFork, 409, 2},
		{"same size, other root", []answer{size(7)}, true, witness.ErrFork, 409, 1},
		{"larger tree than the log", []answer{size(80)}, false, witness.ErrFork, 409, 1},
		{"inconsistent after resynchronising", []answer{size(3), {422, "", ""}}, false, witness.ErrFork, 422, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBox(t)
			cp := b.checkpoint(7)
			if !bytes.HasPrefix(cp, []byte(testOrigin+"\n7\n")) {
				t.Fatalf("test set-up: checkpoint %q", cp)
			}
			srv, requests := fakeWitness(t, tc.answers...)
			vkey := mustVKey(t, "witness.example/fake")
			c := b.clientOf(0, witness.Config{Name: "fake", URL: srv.URL, Key: vkey})
			if tc.known {
				c.SetSizes(map[string]uint64{"fake": 7})
			}
			st := push(t, c, cp).Statuses[0]
			var werr *witness.Error
			if !errors.As(st.Err, &werr) || !errors.Is(werr, tc.kind) || werr.Status != tc.status || werr.Witness != "fake" {
				t.Fatalf("%+v, want %v with status %d", st.Err, tc.kind, tc.status)
			}
			if st.Requests != tc.requests || len(requests()) != tc.requests {
				t.Errorf("%d requests (%d seen), want %d", st.Requests, len(requests()), tc.requests)
			}
			t.Logf("%v", werr)
		})
	}

	t.Run("requests are well formed, with a valid proof after 409", func(t *testing.T) {
		b := newBox(t)
		b.checkpoint(3) // the witness cosigned this one, of size 3
		cp := b.checkpoint(6)
		srv, requests := fakeWitness(t, size(3), answer{503, "", ""})
		vkey := mustVKey(t, "witness.example/fake")
		push(t, b.clientOf(0, witness.Config{URL: srv.URL, Key: vkey}), cp)
		reqs := requests()
		if len(reqs) != 2 {
			t.Fatalf("%d requests, want 2", len(reqs))
		}
		if reqs[0].old != 0 || len(reqs[0].proof) != 0 || !bytes.Equal(reqs[0].checkpoint, cp) {
			t.Errorf("first request: %+v, want old 0, no proof, the checkpoint", reqs[0])
		}
		r := reqs[1]
		root3, err := b.db.Root(3)
		if err != nil {
			t.Fatal(err)
		}
		root10, err := b.db.Root(10)
		if err != nil {
			t.Fatal(err)
		}
		if r.old != 3 || !bytes.Equal(r.checkpoint, cp) {
			t.Errorf("second request: old %d, want 3", r.old)
		}
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, 3, 10, r.proof, root3, root10); err != nil || len(r.proof) == 0 {
			t.Errorf("the proof sent (%d hashes) does not verify from 3 to 10: %v", len(r.proof), err)
		}
	})
}
