package fleet

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Kinds of alarm (docs/FLEET.md, "Alarms"; deploy/prometheus/consentcam-fleet.rules.yml).
const (
	// AlarmFork: the box published two different histories: a seq again
	// with other bytes, or a signed checkpoint whose root is not that of
	// the events mirrored. Cleared when a later checkpoint verifies.
	AlarmFork = "fork"
	// AlarmBadSignature: a checkpoint not signed by the box's device key.
	AlarmBadSignature = "bad-signature"
	// AlarmGap: a seq missing for longer than alarms.gap_after while later
	// events, or a checkpoint beyond it, arrived. Cleared when it arrives.
	AlarmGap = "gap"
	// AlarmSilence: a box that says it is online sent no checkpoint for
	// alarms.silence_intervals checkpoint intervals. Cleared by the next.
	AlarmSilence = "silence"
	// AlarmOffline: the broker published the box's last will. Cleared when
	// it says online (or stopped) again.
	AlarmOffline = "offline"
	// AlarmWitness: the box logged witness.failed for a witness; cleared
	// by its witness.recovered.
	AlarmWitness = "witness"
	// AlarmRule: the box's log breaks a rule of docs/AUDIT.md.
	AlarmRule = "rule"
	// AlarmBadInput: a payload that is not what the SPEC says (an event
	// that does not parse, a notice whose hash is not its own…).
	AlarmBadInput = "bad-input"
	// AlarmUnknownBox: a box with no key in boxes.keys_dir published.
	AlarmUnknownBox = "unknown-box"
	// AlarmSiteOffline: a site broker's bridge to the central broker went
	// down (its notification topic says 0). Cleared when it says 1.
	AlarmSiteOffline = "site-offline"
)

// AlarmKinds lists every kind of alarm.
var AlarmKinds = []string{AlarmFork, AlarmBadSignature, AlarmGap, AlarmSilence, AlarmOffline, AlarmWitness,
	AlarmRule, AlarmBadInput, AlarmUnknownBox, AlarmSiteOffline}

// held reports whether alarms of a kind stand for something that happened
// once: they stay raised for alarms.hold after the last occurrence.
func held(kind string) bool {
	switch kind {
	case AlarmRule, AlarmBadInput, AlarmUnknownBox, AlarmBadSignature:
		return true
	}
	return false
}

// Alarm is one alarm raised and not yet cleared.
type Alarm struct {
	Site   string `json:"site"`
	Camera string `json:"camera,omitempty"`
	Kind   string `json:"kind"`
	// Key tells apart alarms of one kind on one box: the witness, the
	// rule ("rule 4").
	Key     string `json:"key,omitempty"`
	Message string `json:"message"`
	// PayloadSHA256 is the hex SHA-256 of the payload that raised it,
	// when a payload did.
	PayloadSHA256 string    `json:"payload_sha256,omitempty"`
	Count         int64     `json:"count"`
	Raised        time.Time `json:"raised"`
	Last          time.Time `json:"last"`
}

type alarmKey struct{ site, camera, kind, key string }

// alarmBook holds the active alarms of the whole fleet; workers change
// those of their own boxes, the HTTP API reads them all.
type alarmBook struct {
	logger *slog.Logger
	gauge  *prometheus.GaugeVec
	raised *prometheus.CounterVec

	mu     sync.Mutex
	active map[alarmKey]*Alarm
	kinds  map[alarmKey]int // (site, camera, kind) → active alarms
}

func newAlarmBook(logger *slog.Logger, reg prometheus.Registerer) *alarmBook {
	b := &alarmBook{
		logger: logger,
		gauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "consentcam_fleet_alarm",
			Help: "1 while an alarm of the kind is raised for the box (camera empty for a site's alarms).",
		}, []string{"site", "camera", "kind"}),
		raised: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "consentcam_fleet_alarms_raised_total",
			Help: "Alarms raised, by kind.",
		}, []string{"kind"}),
		active: map[alarmKey]*Alarm{},
		kinds:  map[alarmKey]int{},
	}
	reg.MustRegister(b.gauge, b.raised)
	for _, k := range AlarmKinds {
		b.raised.WithLabelValues(k)
	}
	return b
}

// restore takes the alarms active in PostgreSQL at start.
func (b *alarmBook) restore(as []activeAlarm) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, a := range as {
		k := alarmKey{a.site, a.camera, a.kind, a.key}
		b.active[k] = &Alarm{Site: a.site, Camera: a.camera, Kind: a.kind, Key: a.key, Message: a.message,
			PayloadSHA256: a.sha, Count: a.count, Raised: a.raised.UTC(), Last: a.last.UTC()}
		b.count(k, 1)
	}
}

func (b *alarmBook) count(k alarmKey, d int) {
	kk := alarmKey{k.site, k.camera, k.kind, ""}
	b.kinds[kk] += d
	if b.kinds[kk] <= 0 {
		delete(b.kinds, kk)
		b.gauge.WithLabelValues(k.site, k.camera, k.kind).Set(0)
		return
	}
	b.gauge.WithLabelValues(k.site, k.camera, k.kind).Set(1)
}

// raise raises an alarm, or counts one more occurrence of it, logs it and
// queues the change in the batch.
func (b *alarmBook) raise(out *batch, now time.Time, site, camera, kind, key, sha, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	k := alarmKey{site, camera, kind, key}
	b.mu.Lock()
	a := b.active[k]
	first := a == nil
	if first {
		a = &Alarm{Site: site, Camera: camera, Kind: kind, Key: key, Raised: now}
		b.active[k] = a
		b.count(k, 1)
		b.raised.WithLabelValues(kind).Inc()
	}
	a.Message, a.PayloadSHA256, a.Last = msg, sha, now
	a.Count++
	change := alarmChange{activeAlarm: activeAlarm{site: site, camera: camera, kind: kind, key: key, message: msg,
		sha: sha, count: a.Count, raised: a.Raised, last: now}}
	b.mu.Unlock()
	out.alarms = append(out.alarms, change)
	attrs := []any{"site", site, "camera", camera, "kind", kind, "message", msg}
	if key != "" {
		attrs = append(attrs, "key", key)
	}
	if sha != "" {
		attrs = append(attrs, "payload_sha256", sha)
	}
	if first {
		b.logger.Warn("alarm raised", attrs...)
	} else {
		b.logger.Warn("alarm again", append(attrs, "count", change.count)...)
	}
}

// clear clears an alarm if it is raised.
func (b *alarmBook) clear(out *batch, now time.Time, site, camera, kind, key string) {
	k := alarmKey{site, camera, kind, key}
	b.mu.Lock()
	a := b.active[k]
	if a != nil {
		delete(b.active, k)
		b.count(k, -1)
	}
	b.mu.Unlock()
	if a == nil {
		return
	}
	out.alarms = append(out.alarms, alarmChange{clear: true, activeAlarm: activeAlarm{site: site, camera: camera, kind: kind, key: key, last: now}})
	b.logger.Info("alarm cleared", "site", site, "camera", camera, "kind", kind, "key", key, "raised", a.Raised, "count", a.Count)
}

// has reports whether an alarm is raised, and when it last occurred.
func (b *alarmBook) has(site, camera, kind, key string) (time.Time, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a := b.active[alarmKey{site, camera, kind, key}]
	if a == nil {
		return time.Time{}, false
	}
	return a.Last, true
}

// list returns copies of the active alarms that keep selects, in a stable
// order.
func (b *alarmBook) list(keep func(*Alarm) bool) []Alarm {
	b.mu.Lock()
	var out []Alarm
	for _, a := range b.active {
		if keep == nil || keep(a) {
			out = append(out, *a)
		}
	}
	b.mu.Unlock()
	slices.SortFunc(out, func(x, y Alarm) int {
		return strings.Compare(x.Site+"/"+x.Camera+"/"+x.Kind+"/"+x.Key, y.Site+"/"+y.Camera+"/"+y.Kind+"/"+y.Key)
	})
	return out
}

// expire clears the held alarms, among those shard owns, whose last
// occurrence is older than hold.
func (b *alarmBook) expire(out *batch, now time.Time, hold time.Duration, owns func(site, camera string) bool) {
	for _, a := range b.list(func(a *Alarm) bool {
		return held(a.Kind) && now.Sub(a.Last) > hold && owns(a.Site, a.Camera)
	}) {
		b.clear(out, now, a.Site, a.Camera, a.Kind, a.Key)
	}
}
