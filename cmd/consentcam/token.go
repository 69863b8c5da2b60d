package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/consentcam/consentcam/consent"
)

const tokenUsage = `Sign a consent token or a revoke command, for tests and installation.

Usage:

	consentcam token consent [arguments]
	consentcam token revoke [arguments]

Run 'consentcam token <command> -h' for the arguments of a command.
`

// TokenCommand dispatches to the token subcommands.
type TokenCommand struct{ Stdout, Stderr io.Writer }

// Run runs token consent or token revoke.
func (c *TokenCommand) Run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(c.Stderr, tokenUsage)
		return usagef("token: say consent or revoke")
	}
	switch args[0] {
	case "consent":
		return (&TokenConsentCommand{Stdout: c.Stdout, Stderr: c.Stderr}).Run(ctx, args[1:])
	case "revoke":
		return (&TokenRevokeCommand{Stdout: c.Stdout, Stderr: c.Stderr}).Run(ctx, args[1:])
	case "help", "-h", "-help", "--help":
		fmt.Fprint(c.Stderr, tokenUsage)
		return flag.ErrHelp
	default:
		return usagef("token: unknown command %q (consent or revoke)", args[0])
	}
}

const tokenConsentUsage = `Print a consent token: proof that a visitor agreed to purposes after being
shown the notice whose hash is given ('consentcam notice --hash').

Usage:

	consentcam token consent --key FILE --kid K --site S [--camera C] --visit V
	    --subject SUB --purpose P [--purpose P2 ...] --notice HASH [--ttl 10m]

Arguments:

	--key FILE      the issuer's Ed25519 private key (PKCS#8 PEM, mode 0600)
	--kid K         the key id the camera box knows the issuer's key by
	--issuer NAME   the iss claim (default consentcam-cli)
	--site S        the site; with --camera, only that camera accepts the token
	--camera C      the camera (default: any camera of the site)
	--visit V       the visit id
	--subject SUB   the visitor's pseudonymous id: never a name or phone number
	--purpose P     a purpose the visitor agreed to; repeat for each
	--notice HASH   the hash of the notice the visitor was shown
	--ttl D         how long the token is valid, at most 15m (default 10m)
	--minor         the visitor is a minor
	--guardian      a guardian gave the consent (required with --minor)
`

// TokenConsentCommand prints a consent token.
type TokenConsentCommand struct{ Stdout, Stderr io.Writer }

// Run signs and prints the token.
func (c *TokenConsentCommand) Run(ctx context.Context, args []string) error {
	fs := newFlagSet("token consent", tokenConsentUsage, c.Stderr)
	var purposes stringList
	key := fs.String("key", "", "")
	kid := fs.String("kid", "", "")
	issuer := fs.String("issuer", "consentcam-cli", "")
	site := fs.String("site", "", "")
	camera := fs.String("camera", "", "")
	visit := fs.String("visit", "", "")
	subject := fs.String("subject", "", "")
	fs.Var(&purposes, "purpose", "")
	notice := fs.String("notice", "", "")
	ttl := fs.Duration("ttl", 10*time.Minute, "")
	minor := fs.Bool("minor", false, "")
	guardian := fs.Bool("guardian", false, "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := required(fs, "key", "kid", "issuer", "site", "visit", "subject", "purpose", "notice"); err != nil {
		return err
	}
	if err := checkAudience(*site, *camera); err != nil {
		return err
	}
	for i, p := range purposes {
		if !nameRE.MatchString(p) {
			return usagef("token consent: --purpose %q is not a purpose id (1 to 64 of a-z, 0-9 and '-')", p)
		}
		if slices.Contains(purposes[:i], p) {
			return usagef("token consent: --purpose %q is given twice", p)
		}
	}
	if !noticeHashRE.MatchString(*notice) {
		return usagef("token consent: --notice must be the 64 lowercase hex digits that 'consentcam notice --hash' prints")
	}
	if err := checkTTL(*ttl); err != nil {
		return err
	}
	if *minor && !*guardian {
		return usagef("token consent: --minor needs --guardian: a minor's consent must be given by a guardian")
	}
	priv, err := consent.ReadPrivateKey(*key)
	if err != nil {
		return err
	}
	now := time.Now()
	tok, err := consent.SignConsent(priv, *kid, consent.Consent{
		Issuer:    *issuer,
		Subject:   *subject,
		Visit:     *visit,
		Audience:  consent.Audience(*site, *camera),
		Purposes:  purposes,
		Notice:    *notice,
		IssuedAt:  now,
		NotBefore: now,
		Expires:   now.Add(*ttl),
		Minor:     *minor,
		Guardian:  *guardian,
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(c.Stdout, tok)
	return nil
}

const tokenRevokeUsage = `Print a revoke command: the camera box erases the records of a subject (or
of one visit) and publishes a signed receipt.

Usage:

	consentcam token revoke --key FILE --kid K --site S [--camera C]
	    (--subject SUB | --visit V) [--reason R]

Arguments:

	--key FILE      the operator's Ed25519 private key (PKCS#8 PEM, mode 0600)
	--kid K         the key id the camera box knows the operator's key by
	--issuer NAME   the iss claim (default consentcam-cli)
	--site S        the site; with --camera, only that camera accepts the command
	--camera C      the camera (default: any camera of the site)
	--subject SUB   erase every record of this subject
	--visit V       erase the records of this visit
	--reason R      why (default "consent withdrawn")
	--ttl D         how long the command is valid, at most 15m (default 5m)
`

// TokenRevokeCommand prints a revoke command.
type TokenRevokeCommand struct{ Stdout, Stderr io.Writer }

// Run signs and prints the revoke command.
func (c *TokenRevokeCommand) Run(ctx context.Context, args []string) error {
	fs := newFlagSet("token revoke", tokenRevokeUsage, c.Stderr)
	key := fs.String("key", "", "")
	kid := fs.String("kid", "", "")
	issuer := fs.String("issuer", "consentcam-cli", "")
	site := fs.String("site", "", "")
	camera := fs.String("camera", "", "")
	subject := fs.String("subject", "", "")
	visit := fs.String("visit", "", "")
	reason := fs.String("reason", "consent withdrawn", "")
	ttl := fs.Duration("ttl", 5*time.Minute, "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := required(fs, "key", "kid", "issuer", "site", "reason"); err != nil {
		return err
	}
	if (*subject == "") == (*visit == "") {
		return usagef("token revoke: give exactly one of --subject and --visit")
	}
	if err := checkAudience(*site, *camera); err != nil {
		return err
	}
	if err := checkTTL(*ttl); err != nil {
		return err
	}
	priv, err := consent.ReadPrivateKey(*key)
	if err != nil {
		return err
	}
	now := time.Now()
	tok, err := consent.SignRevoke(priv, *kid, consent.Revoke{
		Issuer:   *issuer,
		Reason:   *reason,
		Subject:  *subject,
		Visit:    *visit,
		Audience: consent.Audience(*site, *camera),
		IssuedAt: now,
		Expires:  now.Add(*ttl),
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(c.Stdout, tok)
	return nil
}

var noticeHashRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

func checkAudience(site, camera string) error {
	if !nameRE.MatchString(site) {
		return usagef("--site %q must be 1 to 64 of a-z, 0-9 and '-'", site)
	}
	if camera != "" && !nameRE.MatchString(camera) {
		return usagef("--camera %q must be 1 to 64 of a-z, 0-9 and '-'", camera)
	}
	return nil
}

func checkTTL(ttl time.Duration) error {
	if ttl <= 0 || ttl > consent.MaxLifetime {
		return usagef("--ttl %v must be more than 0 and at most %v", ttl, consent.MaxLifetime)
	}
	return nil
}

// stringList is a flag that may be repeated.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(s string) error {
	*l = append(*l, s)
	return nil
}
