package agent

import (
	"github.com/consentcam/consentcam/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the Prometheus metrics of docs/SPEC.md ("HTTP"), in a registry
// of the agent's own.
type metrics struct {
	reg           *prometheus.Registry
	frames        prometheus.Counter
	analyzed      prometheus.Counter
	detectSeconds prometheus.Histogram
	windowsOpen   prometheus.Gauge
	sourceUp      prometheus.Gauge
	captures      *prometheus.CounterVec
	consents      *prometheus.CounterVec
}

func newMetrics(a *Agent) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
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
		windowsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "consentcam_windows_open", Help: "Capture windows open (0 or 1).",
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
	m.reg.MustRegister(
		m.frames, m.analyzed, m.detectSeconds, m.windowsOpen, m.sourceUp, m.captures, m.consents,
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
			Name: "consentcam_audit_seq", Help: "Seq of the last audit event (-1 before the first).",
		}, func() float64 { return float64(a.Store.Size()) - 1 }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "consentcam_outbox_pending", Help: "Audit events not yet acknowledged by the MQTT broker.",
		}, func() float64 {
			n, err := a.Store.PendingCount()
			if err != nil {
				return -1
			}
			return float64(n)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "consentcam_mqtt_connected", Help: "1 while connected to the MQTT broker.",
		}, func() float64 {
			if a.mqtt != nil && a.mqtt.connected() {
				return 1
			}
			return 0
		}),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// observe counts the outcome of a committed event.
func (m *metrics) observe(ev *store.Event) {
	switch ev.Type {
	case store.EventCaptureSaved:
		m.captures.WithLabelValues("saved").Inc()
	case store.EventCaptureSkipped:
		m.captures.WithLabelValues("skipped").Inc()
	}
}
