package witness_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/consentcam/consentcam/witness"
	"golang.org/x/mod/sumdb/note"
)

func TestVerifyCosigned(t *testing.T) {
	w1, w2 := startWitness(t, "witness.example/w1"), startWitness(t, "witness.example/w2")
	b := newBox(t)
	res := push(t, b.client(0, w1, w2), b.checkpoint(3))
	if !res.QuorumMet() {
		t.Fatalf("test set-up: %+v", res.Statuses)
	}
	v1, v2 := verifiers(t, w1)[0], verifiers(t, w2)[0]
	v3, err := witness.NewVerifier(mustVKey(t, "witness.example/w3"))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("quorum of trusted witnesses", func(t *testing.T) {
		got, err := witness.VerifyCosigned(res.Note, logVerifier(t), []note.Verifier{v2, v1}, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Witnesses) != 2 || got.Witnesses[0].Name != w2.Name || got.Witnesses[1].Name != w1.Name || len(got.Missing)+len(got.Others) != 0 {
			t.Errorf("got %+v", got)
		}
	})

	t.Run("a cosignature by a key not trusted does not count", func(t *testing.T) {
		got, err := witness.VerifyCosigned(res.Note, logVerifier(t), []note.Verifier{v1, v3}, 0)
		if !errors.Is(err, witness.ErrQuorum) {
			t.Fatalf("err = %v, want ErrQuorum", err)
		}
		if len(got.Witnesses) != 1 || !slices.Equal(got.Missing, []string{"witness.example/w3"}) ||
			len(got.Others) != 1 || got.Others[0].Name != w2.Name {
			t.Errorf("got %+v", got)
		}
		if !strings.Contains(err.Error(), "witness.example/w3") || !strings.Contains(err.Error(), w2.Name+"+") {
			t.Errorf("the error names neither the missing witness nor the untrusted key: %v", err)
		}
		if _, err := witness.VerifyCosigned(res.Note, logVerifier(t), []note.Verifier{v1, v3}, 1); err != nil {
			t.Errorf("quorum 1: %v", err)
		}
	})

	t.Run("a forged cosignature fails", func(t *testing.T) {
		lines := strings.Split(string(res.Note), "\n")
		i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "— "+w1.Name+" ") })
		// Change the last signature byte, not the key id in front.
		l := lines[i]
		j := len(l) - 4
		c := byte('A')
		if l[j] == 'A' {
			c = 'B'
		}
		lines[i] = l[:j] + string(c) + l[j+1:]
		_, err := witness.VerifyCosigned([]byte(strings.Join(lines, "\n")), logVerifier(t), []note.Verifier{v1, v2}, 1)
		if err == nil || errors.Is(err, witness.ErrQuorum) {
			t.Errorf("err = %v, want a signature failure", err)
		}
		t.Logf("%v", err)
	})

	t.Run("a checkpoint the log did not sign fails", func(t *testing.T) {
		_, err := witness.VerifyCosigned([]byte(strings.Replace(string(res.Note), "— "+testOrigin+" ", "— other/log ", 1)),
			logVerifier(t), []note.Verifier{v1, v2}, 1)
		if err == nil || errors.Is(err, witness.ErrQuorum) {
			t.Errorf("err = %v, want no log signature", err)
		}
		t.Logf("%v", err)
	})

	t.Run("quorum out of range", func(t *testing.T) {
		for _, q := range []int{-1, 3} {
			if _, err := witness.VerifyCosigned(res.Note, logVerifier(t), []note.Verifier{v1, v2}, q); err == nil {
				t.Errorf("quorum %d of 2 accepted", q)
			}
		}
	})
}

func TestCheck(t *testing.T) {
	k1, k2 := mustVKey(t, "witness.example/w1"), mustVKey(t, "witness.example/w2")
	ok := witness.Config{Name: "regulator", URL: "https://witness.example/submit", Key: k1}
	for _, tc := range []struct {
		name   string
		ws     []witness.Config
		quorum int
		index  int
		field  string
	}{
		{"bad key", []witness.Config{{URL: "http://x", Key: "witness.example/w1+1234abcd+notbase64"}}, 0, 0, "key"},
		{"no key", []witness.Config{{URL: "http://x"}}, 0, 0, "key"},
		{"same key twice", []witness.Config{ok, {Name: "other", URL: "http://y", Key: k1}}, 0, 1, "key"},
		{"same name twice", []witness.Config{ok, {Name: "regulator", URL: "http://y", Key: k2}}, 0, 1, "name"},
		{"name with a space", []witness.Config{{Name: "head office", URL: "http://y", Key: k2}}, 0, 0, "name"},
		{"not http", []witness.Config{{URL: "ftp://witness.example", Key: k2}}, 0, 0, "url"},
		{"no host", []witness.Config{{URL: "https:///x", Key: k2}}, 0, 0, "url"},
		{"query", []witness.Config{{URL: "https://witness.example/?a=b", Key: k2}}, 0, 0, "url"},
		{"quorum above the witnesses", []witness.Config{ok}, 2, -1, "quorum"},
		{"negative quorum", []witness.Config{ok}, -1, -1, "quorum"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := witness.Check(tc.ws, tc.quorum)
			var cerr *witness.ConfigError
			if !errors.As(err, &cerr) || cerr.Index != tc.index || cerr.Field != tc.field {
				t.Fatalf("err = %v, want a ConfigError on witness %d %s", err, tc.index, tc.field)
			}
			t.Logf("%v", err)
		})
	}

	vs, q, err := witness.Check([]witness.Config{ok, {URL: "http://127.0.0.1:8080/", Key: k2}}, 0)
	if err != nil || len(vs) != 2 || q != 2 || vs[1].Name() != "witness.example/w2" {
		t.Errorf("Check = %v, %d, %v; want two verifiers, quorum 2", vs, q, err)
	}
}
