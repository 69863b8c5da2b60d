package store

import (
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The detail allow-list names every event type and nothing else: Append
// refuses a type not in eventTypes, so every event the agent records has
// an entry, and a new type cannot be added without deciding its detail.
func TestDetailKeysCoverEveryType(t *testing.T) {
	got := slices.Sorted(maps.Keys(DetailKeys))
	want := slices.Sorted(slices.Values(eventTypes))
	if !slices.Equal(got, want) {
		t.Errorf("DetailKeys has types %v; want exactly the event types %v", got, want)
	}
	for typ, keys := range DetailKeys {
		if len(slices.Compact(slices.Sorted(slices.Values(keys)))) != len(keys) {
			t.Errorf("%s: key listed twice in %v", typ, keys)
		}
	}
	// A checkpoint event carries exactly what Checkpoint.Event puts in it.
	cp := Checkpoint{Size: 1, Root: make([]byte, 32), Note: []byte("n")}.Event()
	if got, want := slices.Sorted(maps.Keys(cp.Detail)), slices.Sorted(slices.Values(DetailKeys[EventCheckpoint])); !slices.Equal(got, want) {
		t.Errorf("checkpoint detail %v, allow-list %v", got, want)
	}
}

// docs/SPEC.md ("Audit log") lists the same detail keys as DetailKeys.
func TestDetailKeysInSpec(t *testing.T) {
	spec, err := os.ReadFile(filepath.Join("..", "docs", "SPEC.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, para, ok := strings.Cut(string(spec), "- `detail` holds only these keys")
	if !ok {
		t.Fatal("SPEC.md has no list of detail keys")
	}
	para, _, _ = strings.Cut(para, "\n- ")
	para = strings.Join(strings.Fields(para), " ")
	inSpec := map[string][]string{}
	for _, m := range regexp.MustCompile("`([a-z.]+)`: ((?:`[a-z0-9_]+`(?:, )?)+)").FindAllStringSubmatch(para, -1) {
		for _, k := range strings.Split(m[2], ", ") {
			inSpec[m[1]] = append(inSpec[m[1]], strings.Trim(k, "`"))
		}
	}
	for typ, keys := range DetailKeys {
		if got := slices.Sorted(slices.Values(inSpec[typ])); !slices.Equal(got, slices.Sorted(slices.Values(keys))) && len(keys)+len(got) > 0 {
			t.Errorf("%s: SPEC lists detail keys %v, DetailKeys %v", typ, got, keys)
		}
	}
	for typ := range inSpec {
		if _, ok := DetailKeys[typ]; !ok {
			t.Errorf("SPEC lists detail keys for %s, which is not an event type", typ)
		}
	}
}
