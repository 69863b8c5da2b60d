// Command consentcam is the consent-gated entrance camera agent and its tools.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	m := NewMain()
	err := m.Run(ctx, os.Args[1:])
	os.Exit(m.ExitCode(err))
}

// Main is the command line: it dispatches to one struct per subcommand.
type Main struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// NewMain returns a Main wired to the process's standard streams.
func NewMain() *Main {
	return &Main{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
}

// UsageError is a command-line mistake: the process exits with status 2.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

func usagef(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// ExitCode reports the error, if any, on Stderr and returns the exit status:
// 0 ok, 1 failure, 2 usage error.
func (m *Main) ExitCode(err error) int {
	var uerr *UsageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0 // -h: the flag package has printed the usage
	case errors.As(err, &uerr):
		fmt.Fprintf(m.Stderr, "consentcam: %s\n", err)
		fmt.Fprintln(m.Stderr, "Run 'consentcam help' for usage.")
		return 2
	default:
		fmt.Fprintf(m.Stderr, "consentcam: %s\n", err)
		return 1
	}
}

const usage = `consentcam keeps a face capture only with the visitor's signed consent.

Usage:

	consentcam <command> [arguments]

Commands:

	run         run the daemon
	demo        run the whole system on this machine, with no set-up
	audit       pull an agent's audit log, verify one, or check a bundle
	fleet       run the fleet monitor: mirror and check every box of the fleet
	keys        write a new set of keys, or print a camera's checkpoint vkey
	notice      print the notice visitors are shown, or its hash
	probe       print the faces the camera sees, to aim it
	report      print the record of processing of a period
	revoke      erase a visitor on every camera of a site and collect the receipts
	store       check the box's store in full (the daemon stopped)
	token       sign a consent token or a revoke command
	version     print the version

Run 'consentcam <command> -h' for the arguments of a command.
`

// Run executes the subcommand named by args[0].
func (m *Main) Run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(m.Stderr, usage)
		return usagef("no command given")
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(m.Stdout, usage)
		return nil
	case "run":
		return (&RunCommand{Stdout: m.Stdout, Stderr: m.Stderr}).Run(ctx, args)
	case "demo":
		return (&DemoCommand{Stdout: m.Stdout, Stderr: m.Stderr}).Run(ctx, args)
	case "audit":
		return (&AuditCommand{Stdin: m.Stdin, Stdout: m.Stdout, Stderr: m.Stderr}).Run(ctx, args)
	case "fleet":
		return (&FleetCommand{Stdout: m.Stdout, Stderr: m.Stderr}).Run(ctx, args)
	case "keys":
		return (&KeysCommand{Stdout: m.Stdout, Stderr: m.Stderr}).Run(ctx, args)
	case "notice":
		return (&NoticeCommand{Stdout: m.Stdout, Stderr: m.Stderr}).Run(ctx, args)
	case "probe":
		return (&ProbeCommand{Stdout: m.Stdout, Stderr: m.Stderr}).Run(ctx, args)
	case "report":
		return (&ReportCommand{Stdout: m.Stdout, Stderr: m.Stderr}).Run(ctx, args)
	case "revoke":
		return (&RevokeCommand{Stdout: m.Stdout, Stderr: m.Stderr}).Run(ctx, args)
	case "store":
		return (&StoreCommand{Stdout: m.Stdout, Stderr: m.Stderr}).Run(ctx, args)
	case "token":
		return (&TokenCommand{Stdout: m.Stdout, Stderr: m.Stderr}).Run(ctx, args)
	case "version":
		return (&VersionCommand{Stdout: m.Stdout, Stderr: m.Stderr}).Run(ctx, args)
	default:
		return usagef("unknown command %q", cmd)
	}
}

const versionUsage = `Print the version.

Usage:

	consentcam version
`

// VersionCommand prints the version.
type VersionCommand struct{ Stdout, Stderr io.Writer }

// Run prints the version.
func (c *VersionCommand) Run(ctx context.Context, args []string) error {
	if err := parseFlags(newFlagSet("version", versionUsage, c.Stderr), args); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "consentcam %s\n", Version)
	return nil
}

// newFlagSet returns the flag set of a subcommand, named as errors name it
// ("token consent"). Its usage text goes to stderr on -h and on a mistake;
// the flag package's own messages are dropped, since parseFlags returns them
// as the usage error.
func newFlagSet(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	return fs
}

// parseFlags parses a subcommand's arguments, which take no positional
// argument: -h is flag.ErrHelp (exit 0), a mistake a usage error (exit 2).
func parseFlags(fs *flag.FlagSet, args []string) error {
	return parseFlagsArgs(fs, args, 0)
}

// parseFlagsArgs is parseFlags for a subcommand that takes up to max
// positional arguments after its flags.
func parseFlagsArgs(fs *flag.FlagSet, args []string, max int) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("%s: %v", fs.Name(), err)
	}
	if fs.NArg() > max {
		fs.Usage()
		return usagef("%s: unexpected argument %q", fs.Name(), fs.Arg(max))
	}
	return nil
}

// required reports the first of the named flags left empty.
func required(fs *flag.FlagSet, names ...string) error {
	for _, name := range names {
		if fs.Lookup(name).Value.String() == "" {
			fs.Usage()
			return usagef("%s: --%s is required", fs.Name(), name)
		}
	}
	return nil
}
