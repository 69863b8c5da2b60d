package agenttest

import (
	"slices"

	"github.com/consentcam/consentcam/internal/testenv"
	"github.com/consentcam/consentcam/store"
)

// goUserAgent is the User-Agent of the rig's HTTP requests (Go's
// default): what a client sends that must not be kept.
const goUserAgent = "Go-http-client/"

// CheckPrivacy fails the test if an event in the store, or a message the
// rig's subscriber received, holds what SPEC keeps out of the log and off
// the bus (testenv.Private: images, tokens, withdrawal codes, IP
// addresses, the client's User-Agent), if an event's detail holds a key
// not in store.DetailKeys for its type, or if anything was published on a
// topic that is not in SPEC's table. Close runs it after every test.
func (r *Rig) CheckPrivacy() {
	r.T.Helper()
	r.Private.AddString("the client's User-Agent", goUserAgent)
	for role, secret := range r.Tokens {
		r.Private.AddString("the "+role+" bearer token", secret)
	}
	raw, err := r.DB.Events(0, 1<<20)
	if err != nil {
		r.T.Errorf("privacy check: read the log: %v", err)
		return
	}
	for _, ev := range raw {
		if err := testenv.CheckDetail(store.DetailKeys, ev); err != nil {
			r.T.Errorf("privacy check: %v", err)
		}
		for _, leak := range r.Private.Leaks(ev) {
			r.T.Errorf("privacy check: the log holds %s\nin %s", leak, ev)
		}
	}
	if r.Sub == nil {
		return
	}
	for topic, msgs := range r.Sub.Messages() {
		if !slices.Contains(testenv.SpecTopics, topic) {
			r.T.Errorf("privacy check: %d messages on …/%s, a topic not in SPEC's table %v", len(msgs), topic, testenv.SpecTopics)
		}
		if slices.Contains(testenv.InTopics, topic) {
			continue // what the test sent to the agent
		}
		for _, m := range msgs {
			for _, leak := range r.Private.Leaks(m) {
				r.T.Errorf("privacy check: …/%s carried %s", topic, leak)
			}
		}
	}
}
