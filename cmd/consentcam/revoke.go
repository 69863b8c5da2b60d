package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/revoke"
)

const revokeUsage = `Erase a visitor's records on every camera of a site: sign one revoke command,
publish it to each camera that announces itself on the broker (retained
…/available or …/notice), wait for each camera's receipt and verify it with
that camera's device key. Prints one line per camera; exits 0 only when
every camera answered with a verified receipt, 1 otherwise.

Usage:

	consentcam revoke --broker URL --site S (--subject X | --visit V)
	    --key FILE --kid K [--camera C] [--timeout 10s] [--keys-dir DIR]

Arguments:

	--broker URL         the site's MQTT broker (tcp://host:1883, ssl://host:8883)
	--site S             the site
	--camera C           only this camera (the command names it: no other accepts it)
	--subject X          erase every record of this subject
	--visit V            erase the records of this visit
	--reason R           why (default "consent withdrawn")
	--key FILE           the operator's Ed25519 private key (PKCS#8 PEM, mode 0600)
	--kid K              the key id the cameras know the operator's key by
	--issuer NAME        the iss claim (default consentcam-cli)
	--keys-dir DIR       the cameras' device public keys, as DIR/SITE/CAMERA.pub
	                     (default /etc/consentcam/cameras)
	--timeout D          how long to wait for the receipts (default 10s)
	--ttl D              how long the command stays valid, at most 15m (default 5m)
	--username U         the broker user name
	--password-file F    a file holding the broker password
	--ca-file F          CA certificates (PEM) to check an ssl:// broker with
`

// RevokeCommand revokes a subject or a visit on every camera of a site.
type RevokeCommand struct{ Stdout, Stderr io.Writer }

// Run signs and sends the command, and prints the cameras' answers.
func (c *RevokeCommand) Run(ctx context.Context, args []string) error {
	fs := newFlagSet("revoke", revokeUsage, c.Stderr)
	broker := fs.String("broker", "", "")
	site := fs.String("site", "", "")
	cameraName := fs.String("camera", "", "")
	subject := fs.String("subject", "", "")
	visit := fs.String("visit", "", "")
	reason := fs.String("reason", "consent withdrawn", "")
	key := fs.String("key", "", "")
	kid := fs.String("kid", "", "")
	issuer := fs.String("issuer", "consentcam-cli", "")
	keysDir := fs.String("keys-dir", "/etc/consentcam/cameras", "")
	timeout := fs.Duration("timeout", 10*time.Second, "")
	ttl := fs.Duration("ttl", 5*time.Minute, "")
	username := fs.String("username", "", "")
	passwordFile := fs.String("password-file", "", "")
	caFile := fs.String("ca-file", "", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := required(fs, "broker", "site", "key", "kid", "issuer", "reason", "keys-dir"); err != nil {
		return err
	}
	if (*subject == "") == (*visit == "") {
		return usagef("revoke: give exactly one of --subject and --visit")
	}
	if err := checkAudience(*site, *cameraName); err != nil {
		return err
	}
	if err := checkTTL(*ttl); err != nil {
		return err
	}
	if *timeout <= 0 {
		return usagef("revoke: --timeout must be positive (got %v)", *timeout)
	}
	priv, err := consent.ReadPrivateKey(*key)
	if err != nil {
		return fmt.Errorf("--key: %w", err)
	}
	o := revoke.Options{Broker: *broker, Username: *username, Timeout: *timeout}
	if *passwordFile != "" {
		if o.Password, err = readSecretFile("--password-file", *passwordFile); err != nil {
			return err
		}
	}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return fmt.Errorf("--ca-file: %w", err)
		}
		o.TLS = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: x509.NewCertPool()}
		if !o.TLS.RootCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--ca-file: no PEM certificate in %s", *caFile)
		}
	}
	now := time.Now()
	res, err := revoke.Send(ctx, o, revoke.Request{
		Site:   *site,
		Camera: *cameraName,
		Revoke: consent.Revoke{Issuer: *issuer, Reason: *reason, Subject: *subject, Visit: *visit,
			IssuedAt: now, Expires: now.Add(*ttl)},
		Key:   priv,
		KeyID: *kid,
	}, revoke.KeyDir(*keysDir))
	if err != nil {
		return err
	}

	tw := tabwriter.NewWriter(c.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CAMERA\tAVAILABLE\tERASED\tSEQ\tVERIFIED\tNOTE")
	var failed []string
	for _, a := range res.Answers {
		erased, seq, verified, note := "-", "-", "yes", ""
		if a.Receipt != nil {
			erased, seq = strconv.Itoa(a.Receipt.Erased), strconv.FormatUint(a.Receipt.Seq, 10)
		}
		if a.Err != nil {
			verified, note = "no", a.Err.Error()
			failed = append(failed, fmt.Sprintf("%s (%v)", a.Camera, a.Err))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", a.Camera, orDash(a.Available), erased, seq, verified, note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "request %s: %d of %d cameras answered with a verified receipt\n",
		res.JTI, len(res.Answers)-len(failed), len(res.Answers))
	if len(failed) > 0 {
		return fmt.Errorf("revoke: no verified receipt from %s", strings.Join(failed, ", "))
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
