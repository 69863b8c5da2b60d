package store

import (
	"maps"
	"slices"
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
