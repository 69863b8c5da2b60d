package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"

	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/store"
	"golang.org/x/mod/sumdb/note"
)

// StoreCommand dispatches the store subcommands.
type StoreCommand struct{ Stdout, Stderr io.Writer }

const storeUsage = `Usage:

	consentcam store check --config FILE

check checks the box's store in full, with the daemon stopped.
`

const storeCheckUsage = `Check the box's store in full: every page of the store file and of its key
file, every record, data key and spent token id, every event of the audit
log against the stored tree, and the latest checkpoint against the tree and
the device key. A damaged store is refused before anything is written to
it. The daemon must be stopped first: the store has one writer.

Usage:

	consentcam store check --config FILE

Arguments:

	--config FILE        the daemon's configuration (state_dir, keys)
`

// Run runs store check.
func (c *StoreCommand) Run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(c.Stderr, storeUsage)
		return usagef("store needs a subcommand: check")
	}
	switch args[0] {
	case "check":
		return c.check(args[1:])
	case "-h", "-help", "--help", "help":
		fmt.Fprint(c.Stderr, storeUsage)
		return nil
	default:
		return usagef("unknown store subcommand %q (check)", args[0])
	}
}

func (c *StoreCommand) check(args []string) error {
	fs := newFlagSet("store check", storeCheckUsage, c.Stderr)
	configPath := fs.String("config", "", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := required(fs, "config"); err != nil {
		return err
	}
	cfg, err := ReadConfigFile(*configPath)
	if err != nil {
		return err
	}
	masterKey, err := consent.ReadMasterKey(cfg.Keys.Master)
	if err != nil {
		return fmt.Errorf("keys.master: %w", err)
	}
	deviceKey, err := consent.ReadPrivateKey(cfg.Keys.Device)
	if err != nil {
		return fmt.Errorf("keys.device: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(c.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	db, err := openStore(cfg, masterKey, logger)
	if errors.Is(err, store.ErrLocked) {
		return fmt.Errorf("%w: the daemon has it open; stop it first (systemctl stop consentcam), then check", err)
	}
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Verify(); err != nil {
		return damagedStore(err)
	}
	checkpoint := "no checkpoint yet"
	cp, err := db.LatestCheckpoint()
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return err
	default:
		v, err := store.NewCheckpointVerifier(store.Origin(cfg.Site, cfg.Camera), deviceKey.Public().(ed25519.PublicKey))
		if err != nil {
			return err
		}
		if _, err := note.Open(cp, note.VerifierList(v)); err != nil {
			return damagedStore(&store.DamageError{Path: db.Path(), Problem: "the latest checkpoint is not signed by keys.device for " + v.Name() + ": " + err.Error()})
		}
		checkpoint = "the latest checkpoint signed by keys.device"
	}
	records, err := db.RecordCount()
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "%s: ok: %d records, %d events, %s\n", db.Path(), records, db.Size(), checkpoint)
	return db.Close()
}

// openStore opens the store of state_dir; a damaged one is refused with
// what to do.
func openStore(cfg Config, masterKey []byte, logger *slog.Logger) (*store.DB, error) {
	db := store.NewDB(filepath.Join(cfg.StateDir, StoreFile))
	db.MasterKey, db.Site, db.Camera, db.Logger = masterKey, cfg.Site, cfg.Camera, logger
	if err := db.Open(); err != nil {
		return nil, damagedStore(err)
	}
	return db, nil
}

// damagedStore adds to the error of a damaged store what to do about it.
func damagedStore(err error) error {
	if !errors.Is(err, store.ErrDamaged) {
		return err
	}
	return fmt.Errorf("%w\n"+
		"The store is damaged, and nothing was written to it. Never delete or\n"+
		"overwrite its files to start afresh: the audit log would begin again at\n"+
		"seq 0. Keep both (%s and its .keys file) for inspection; restore both\n"+
		"from the same backup if you keep one. What else to do: docs/RELIABILITY.md,\n"+
		"\"Damaged files\" (/usr/share/doc/consentcam/RELIABILITY.md).", err, StoreFile)
}
