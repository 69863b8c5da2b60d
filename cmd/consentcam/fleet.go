package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/consentcam/consentcam/fleet"
)

const fleetUsage = `Run the fleet monitor: follow every box on the central broker, mirror their
logs into PostgreSQL, verify each checkpoint, judge the rules, raise alarms,
and serve the boxes' state and their logs to auditors (docs/FLEET.md).

Usage:

	consentcam fleet --config FILE [--log-level LEVEL]

Arguments:

	--config FILE        the monitor's configuration (YAML; docs/SPEC.md, "Fleet monitor")
	--log-level LEVEL    debug, info (default), warn or error
`

// FleetCommand runs the fleet monitor until ctx is cancelled (SIGTERM).
type FleetCommand struct{ Stdout, Stderr io.Writer }

// Run reads the configuration, opens the monitor and serves its HTTP API.
func (c *FleetCommand) Run(ctx context.Context, args []string) error {
	fs := newFlagSet("fleet", fleetUsage, c.Stderr)
	configPath := fs.String("config", "", "")
	logLevel := fs.String("log-level", "info", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := required(fs, "config"); err != nil {
		return err
	}
	logger, err := newLogger(c.Stderr, *logLevel)
	if err != nil {
		return err
	}
	cfg, err := fleet.ReadConfigFile(*configPath)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("http.listen: %w", err)
	}
	defer ln.Close()
	m := fleet.New(cfg)
	m.Logger = logger
	if err := m.Open(ctx); err != nil {
		return err
	}
	srv := &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	logger.Info("fleet monitor running", "http", ln.Addr().String(), "broker", cfg.MQTT.URL)

	select {
	case <-ctx.Done():
	case err = <-served:
	}
	stop, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Shutdown(stop)
	if cerr := m.Close(stop); cerr != nil && err == nil {
		err = cerr
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	logger.Info("fleet monitor stopped")
	return err
}
