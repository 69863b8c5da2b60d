package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/consentcam/consentcam/consent"
)

const noticeUsage = `Print the notice that visitors are shown before they consent (JSON, with
its hash), or only its hash: the value a kiosk puts in consent tokens.

Usage:

	consentcam notice --config FILE [--hash]

Arguments:

	--config FILE   the agent's configuration file
	--hash          print only the notice hash
`

// NoticeCommand prints the notice built from a configuration file.
type NoticeCommand struct{ Stdout, Stderr io.Writer }

// Run prints the notice or its hash.
func (c *NoticeCommand) Run(ctx context.Context, args []string) error {
	fs := newFlagSet("notice", noticeUsage, c.Stderr)
	config := fs.String("config", "", "")
	hash := fs.Bool("hash", false, "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := required(fs, "config"); err != nil {
		return err
	}
	cfg, err := ReadConfigFile(*config)
	if err != nil {
		return err
	}
	n := noticeFromConfig(cfg)
	if *hash {
		fmt.Fprintln(c.Stdout, n.Hash())
		return nil
	}
	var out bytes.Buffer
	if err := json.Indent(&out, n.JSON(), "", "  "); err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err = c.Stdout.Write(out.Bytes())
	return err
}

// noticeFromConfig builds the notice of the camera that cfg configures. The
// agent publishes this notice, and accepts only tokens carrying its hash.
func noticeFromConfig(cfg Config) consent.Notice {
	n := consent.NewNotice(cfg.Site, cfg.Camera, cfg.Capture.Window, cfg.Notice.Language)
	n.Controller = cfg.Notice.Controller.Text()
	n.Contact = cfg.Notice.Contact.Text()
	n.Withdraw = cfg.Notice.Withdraw.Text()
	n.Alternative = cfg.Notice.Alternative.Text()
	for _, p := range cfg.Purposes {
		n.Purposes = append(n.Purposes, consent.NewPurpose(p.ID, p.Description.Text(), p.Retention))
	}
	if cc := cfg.Compliance; cc != nil {
		n.Compliance = &consent.Compliance{PIAReference: cc.PIAReference, PIADate: cc.PIADate, DPOContact: cc.DPOContact.Text()}
	}
	return n
}
