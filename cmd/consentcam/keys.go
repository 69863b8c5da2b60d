package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/store"
	"golang.org/x/mod/sumdb/note"
)

const keysUsage = `Manage the keys of a camera box.

Usage:

	consentcam keys gen --dir DIR [--force]
	consentcam keys vkey --pubkey FILE --site S --camera C

Run 'consentcam keys <command> -h' for the arguments of a command.
`

// KeysCommand dispatches to the keys subcommands.
type KeysCommand struct{ Stdout, Stderr io.Writer }

// Run runs keys gen or keys vkey.
func (c *KeysCommand) Run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(c.Stderr, keysUsage)
		return usagef("keys: say gen or vkey")
	}
	switch args[0] {
	case "gen":
		return (&KeysGenCommand{Stdout: c.Stdout, Stderr: c.Stderr}).Run(ctx, args[1:])
	case "vkey":
		return (&KeysVKeyCommand{Stdout: c.Stdout, Stderr: c.Stderr}).Run(ctx, args[1:])
	case "help", "-h", "-help", "--help":
		fmt.Fprint(c.Stderr, keysUsage)
		return flag.ErrHelp
	default:
		return usagef("keys: unknown command %q (gen or vkey)", args[0])
	}
}

const keysGenUsage = `Write a new set of keys into a directory: device.key, issuer.key and
operator.key (Ed25519, PKCS#8 PEM, mode 0600) with their public halves
device.pub, issuer.pub and operator.pub (PKIX PEM), and master.key (32 random
bytes, mode 0600). OpenSSL reads and writes the same files.

Keep device.key and master.key on the camera box. Give issuer.key to the
kiosk or front-desk system and operator.key to whoever handles withdrawals;
the box needs only their .pub files.

Usage:

	consentcam keys gen --dir DIR [--force]

Arguments:

	--dir DIR   where to write the keys (created, mode 0700, if missing)
	--force     replace existing key files (keys in use stop working)
`

// KeysGenCommand writes a new set of keys.
type KeysGenCommand struct{ Stdout, Stderr io.Writer }

// Run writes the keys and prints the paths of the files written.
func (c *KeysGenCommand) Run(ctx context.Context, args []string) error {
	fs := newFlagSet("keys gen", keysGenUsage, c.Stderr)
	dir := fs.String("dir", "", "")
	force := fs.Bool("force", false, "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := required(fs, "dir"); err != nil {
		return err
	}
	paths, err := consent.GenerateKeys(*dir, *force)
	for _, p := range paths {
		fmt.Fprintln(c.Stdout, p)
	}
	return err
}

const keysVKeyUsage = `Print the note verifier key (vkey) of a camera's checkpoints: what the
operator of a witness configures for the camera's log, under the origin
consentcam/SITE/CAMERA (docs/WITNESS.md).

Usage:

	consentcam keys vkey --pubkey FILE --site S --camera C

Arguments:

	--pubkey FILE   the camera's device.pub (PKIX PEM)
	--site S        the camera's site
	--camera C      the camera
`

// KeysVKeyCommand prints the verifier key of a camera's checkpoints.
type KeysVKeyCommand struct{ Stdout, Stderr io.Writer }

// Run prints the vkey.
func (c *KeysVKeyCommand) Run(ctx context.Context, args []string) error {
	fs := newFlagSet("keys vkey", keysVKeyUsage, c.Stderr)
	pubPath := fs.String("pubkey", "", "")
	site := fs.String("site", "", "")
	camera := fs.String("camera", "", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := required(fs, "pubkey", "site", "camera"); err != nil {
		return err
	}
	if !nameRE.MatchString(*site) || !nameRE.MatchString(*camera) {
		return usagef("keys vkey: --site and --camera must be 1 to 64 of a-z, 0-9 and '-'")
	}
	pub, err := consent.ReadPublicKey(*pubPath)
	if err != nil {
		return fmt.Errorf("--pubkey: %w", err)
	}
	vkey, err := note.NewEd25519VerifierKey(store.Origin(*site, *camera), pub)
	if err != nil {
		return err
	}
	fmt.Fprintln(c.Stdout, vkey)
	return nil
}
