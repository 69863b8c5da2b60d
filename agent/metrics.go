package agent

import (
	"github.com/consentcam/consentcam/store"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the core's Prometheus metrics of docs/SPEC.md ("HTTP"). The
// outcomes are counted from committed events, as a store subscriber.
type metrics struct {
	frames        prometheus.Counter
	analyzed      prometheus.Counter
	detectSeconds prometheus.Histogram
	sourceUp      prometheus.Gauge
	captures      *prometheus.CounterVec
	consents      *prometheus.CounterVec
}

func newMetrics(a *Agent) (*metrics, error) {
	m := &metrics{
		frames: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "consentcam_frames_total", Help: "Frames read from the camera.",
		}),
		analyzed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "consentcam_frames_analyzed_total", Help: "Frames given to the face detector (only while a capture window is open).",
		}),
		detectSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "consentcam_detect_seconds", Help: "Time the face detector took per frame.",
			Buckets: []float64{.002, .005, .01, .02, .05, .1, .2, .5, 1},
		}),
		sourceUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "consentcam_source_up", Help: "1 while the camera source delivers frames, 0 after it failed.",
		}),
		captures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "consentcam_captures_total", Help: "Capture windows that ended, by result (saved, skipped).",
		}, []string{"result"}),
		consents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "consentcam_consents_total", Help: "Consent tokens received, by result (accepted, rejected).",
		}, []string{"result"}),
	}
	for _, r := range []string{"saved", "skipped"} {
		m.captures.WithLabelValues(r)
	}
	for _, r := range []string{"accepted", "rejected"} {
		m.consents.WithLabelValues(r)
	}
	m.sourceUp.Set(1)
	for _, c := range []prometheus.Collector{
		m.frames, m.analyzed, m.detectSeconds, m.sourceUp, m.captures, m.consents,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "consentcam_windows_open", Help: "Capture windows open (0 or 1).",
		}, func() float64 {
			if a.state.Load().Window != "" {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "consentcam_records", Help: "Face records held in the store.",
		}, func() float64 {
			n, err := a.Store.RecordCount()
			if err != nil {
				return -1
			}
			return float64(n)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "consentcam_subjects_stored",
			Help: "Distinct subjects (people) whose face data the store holds; at 100000 the processor files with the provincial CAC.",
		}, func() float64 { return float64(a.subjects.count()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "consentcam_audit_seq", Help: "Seq of the last audit event (-1 before the first).",
		}, func() float64 { return float64(a.Store.Size()) - 1 }),
	} {
		if err := a.Registry.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// observe counts the outcomes among committed events.
func (m *metrics) observe(events []store.Event) {
	for _, ev := range events {
		switch ev.Type {
		case store.EventCaptureSaved:
			m.captures.WithLabelValues("saved").Inc()
		case store.EventCaptureSkipped:
			m.captures.WithLabelValues("skipped").Inc()
		case store.EventConsentAccepted:
			m.consents.WithLabelValues("accepted").Inc()
		case store.EventConsentRejected:
			m.consents.WithLabelValues("rejected").Inc()
		}
	}
}
