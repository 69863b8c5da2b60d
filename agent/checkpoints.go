package agent

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"

	"github.com/consentcam/consentcam/store"
	"github.com/consentcam/consentcam/witness"
	"github.com/prometheus/client_golang/prometheus"
)

// Witnesser cosigns checkpoints: *witness.Client. It pushes a checkpoint
// to the witnesses the box has (C2SP tlog-witness) and returns the note
// with the cosignatures of those that signed, and how each fared.
type Witnesser interface {
	Witness(ctx context.Context, note []byte) (*witness.Result, error)
}

// checkpoints hands each checkpoint the agent signs to the witnesses (when
// it has any), off the control loop, and then to the transports, which
// publish it: the latest checkpoint, cosigned by the witnesses that
// cosigned it.
type checkpoints struct {
	mu     sync.Mutex
	latest []byte // the latest checkpoint to publish
	subs   []func(note []byte)

	toWitness chan []byte // the latest checkpoint not yet pushed; one slot
	done      chan struct{}

	witnessCosigned *prometheus.GaugeVec
	witnessFailures *prometheus.CounterVec
	witnessed       prometheus.Gauge
}

// SubscribeCheckpoints has fn called with every checkpoint to publish: each
// one the agent signs (every checkpoint interval, after a revoke, at start
// and stop), once the witnesses, if any, have cosigned it or failed to.
// The same note may come again (a checkpoint re-signed when nothing
// happened is the same): publishing it again says the box is alive. fn
// must return quickly.
func (a *Agent) SubscribeCheckpoints(fn func(note []byte)) {
	a.cps.mu.Lock()
	defer a.cps.mu.Unlock()
	a.cps.subs = append(a.cps.subs, fn)
}

// Checkpoint is the latest checkpoint to publish: the device's note with
// the cosignatures the witnesses gave it. Before the first of this run, it
// is the store's latest.
func (a *Agent) Checkpoint() ([]byte, error) {
	a.cps.mu.Lock()
	latest := a.cps.latest
	a.cps.mu.Unlock()
	if latest != nil {
		return latest, nil
	}
	return a.Store.LatestCheckpoint()
}

// signed takes a checkpoint the agent has just signed to the witnesses, or,
// without any, publishes it.
func (a *Agent) signed(note []byte) {
	if !a.witnessing.Load() {
		a.publishCheckpoint(note)
		return
	}
	select { // only the latest waits: it covers the ones before
	case <-a.cps.toWitness:
	default:
	}
	a.cps.toWitness <- note
}

// publishCheckpoint makes note the latest checkpoint and hands it to the
// subscribers, unless a larger tree was published already.
func (a *Agent) publishCheckpoint(note []byte) {
	c := &a.cps
	c.mu.Lock()
	if c.latest != nil && treeSize(note) < treeSize(c.latest) {
		c.mu.Unlock()
		return
	}
	c.latest = bytes.Clone(note)
	subs := c.subs
	c.mu.Unlock()
	for _, fn := range subs {
		fn(note)
	}
}

// treeSize reads the tree size of a checkpoint note (its second line).
func treeSize(note []byte) uint64 {
	lines := strings.SplitN(string(note), "\n", 3)
	if len(lines) < 2 {
		return 0
	}
	n, _ := strconv.ParseUint(lines[1], 10, 64)
	return n
}

// witnessLoop pushes the latest checkpoint to the witnesses, one push at a
// time, until ctx ends; a push that fails delays nothing but the next push
// (consent, capture and revoke never wait for a witness).
func (a *Agent) witnessLoop(ctx context.Context) {
	defer close(a.cps.done)
	for {
		select {
		case <-ctx.Done():
			return
		case note := <-a.cps.toWitness:
			res, err := a.Witnesses.Witness(ctx, note)
			if err != nil { // the note is not this log's: a bug, not a witness's failure
				a.Logger.Error("witness a checkpoint", logKeyError, err)
				a.publishCheckpoint(note)
				continue
			}
			a.witnessed(res)
			a.publishCheckpoint(res.Note)
		}
	}
}

// witnessed records how each witness fared: an audit event when a witness
// fails, fails otherwise, or cosigns again (Status.Changed), a log line,
// and the metrics.
func (a *Agent) witnessed(res *witness.Result) {
	c := &a.cps
	var events []*store.Event
	for _, st := range res.Statuses {
		if st.Skipped {
			continue
		}
		if st.Err == nil {
			c.witnessCosigned.WithLabelValues(st.Witness).Set(1)
		} else {
			c.witnessCosigned.WithLabelValues(st.Witness).Set(0)
			c.witnessFailures.WithLabelValues(st.Witness, witness.Reason(st.Err)).Inc()
		}
		if !st.Changed {
			continue
		}
		if st.Err != nil {
			a.Logger.Warn("witness failed", "witness", st.Witness, logKeyReason, witness.Reason(st.Err), logKeyError, st.Err)
			msg, status := witnessFailure(st.Err)
			events = append(events, &store.Event{Type: store.EventWitnessFailed, Actor: actorAgent, Reason: witness.Reason(st.Err),
				Detail: map[string]any{"witness": st.Witness, "size": res.Size, "error": msg, "status": status}})
		} else {
			a.Logger.Info("witness cosigns again", "witness", st.Witness, "failures", st.Failures)
			events = append(events, &store.Event{Type: store.EventWitnessRecovered, Actor: actorAgent,
				Detail: map[string]any{"witness": st.Witness, "size": res.Size, "failures": st.Failures}})
		}
	}
	if res.QuorumMet() {
		c.witnessed.Set(1)
	} else {
		c.witnessed.Set(0)
	}
	a.logErr("audit the witnesses", a.append(events...))
}

// witnessFailure says, for the audit log, why a witness did not cosign,
// and the HTTP status of its answer (0 for none): what the witness said,
// or that it did not answer; never the network's error, which names
// addresses (the log says it all).
func witnessFailure(err error) (string, int) {
	var werr *witness.Error
	switch {
	case !errors.As(err, &werr):
		return witness.Reason(err), 0
	case werr.Err != nil:
		return "no answer", werr.Status
	}
	return werr.Msg, werr.Status
}

// init makes the checkpoints' state and registers its metrics.
func (c *checkpoints) init(reg *prometheus.Registry) error {
	c.toWitness = make(chan []byte, 1)
	c.done = make(chan struct{})
	c.witnessCosigned = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "consentcam_witness_cosigned", Help: "1 when the witness cosigned the latest checkpoint pushed to it, 0 when it failed.",
	}, []string{"witness"})
	c.witnessFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "consentcam_witness_failures_total", Help: "Pushes of a checkpoint to a witness that failed, by reason (down, refused, fork, bad-response, error).",
	}, []string{"witness", "reason"})
	c.witnessed = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "consentcam_checkpoint_witnessed", Help: "1 when the latest checkpoint has the quorum of cosignatures.",
	})
	for _, m := range []prometheus.Collector{c.witnessCosigned, c.witnessFailures, c.witnessed} {
		if err := reg.Register(m); err != nil {
			return err
		}
	}
	return nil
}
