package agenttest

import (
	"fmt"
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
	const shown = 10
	findings := 0
	report := func(format string, args ...any) {
		r.T.Helper()
		if findings++; findings <= shown {
			r.T.Errorf("privacy check: "+format, args...)
		}
	}
	defer func() {
		if findings > shown {
			r.T.Errorf("privacy check: %d findings more", findings-shown)
		}
	}()

	raw, err := r.DB.Events(0, 1<<20)
	if err != nil {
		r.T.Errorf("privacy check: read the log: %v", err)
		return
	}
	for _, ev := range raw {
		if err := testenv.CheckDetail(store.DetailKeys, ev); err != nil {
			report("%v", err)
		}
		for _, leak := range r.Private.Leaks(ev) {
			report("the log holds %s\nin %s", leak, excerpt(ev))
		}
	}
	if r.Sub == nil {
		return
	}
	for topic, msgs := range r.Sub.Messages() {
		if !slices.Contains(testenv.SpecTopics, topic) {
			report("%d messages on …/%s, a topic not in SPEC's table %v", len(msgs), topic, testenv.SpecTopics)
		}
		if slices.Contains(testenv.InTopics, topic) {
			continue // what the test sent to the agent
		}
		for _, m := range msgs {
			for _, leak := range r.Private.Leaks(m) {
				report("…/%s carried %s", topic, leak)
			}
		}
	}
}

// excerpt is the start of a payload, for failure messages.
func excerpt(b []byte) string {
	if len(b) > 300 {
		return fmt.Sprintf("%s…", b[:300])
	}
	return string(b)
}
