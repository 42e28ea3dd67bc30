// Package ci holds the subcommands of the lotse pipeline helper: flags,
// GitLab CI_* defaults, wiring of the internal adapters, output and reports.
package ci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lotse/lotse/internal/scan"
)

// Exit codes of lotse. They are part of its interface: CI jobs branch on them.
const (
	ExitOK    = 0 // everything worked
	ExitError = 1 // something failed: network, registry, bad image, I/O
	ExitUsage = 2 // the command line is wrong
	ExitGate  = 3 // a gate failed: findings at or above --fail-on, guardrail violations
)

// Info describes the build of the running binary.
type Info struct {
	Version string
}

// app is what every subcommand shares for one invocation. It is built anew by
// Run, so nothing lives across invocations.
type app struct {
	info   Info
	env    env
	stdout io.Writer
	stderr io.Writer
	log    *slog.Logger
	now    func() time.Time
}

// Run executes one lotse command line (without the program name) and returns
// the process exit code.
func Run(ctx context.Context, info Info, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	// trivy forces a process-wide logger on whoever links it (see
	// scan.DiscardLibraryLogs): set once here, before any command runs.
	scan.DiscardLibraryLogs()
	a := &app{
		info:   info,
		env:    env{getenv: getenv},
		stdout: stdout,
		stderr: stderr,
		log:    slog.New(slog.DiscardHandler),
		now:    time.Now,
	}
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	code := exitCode(err)
	fmt.Fprintf(stderr, "lotse: %s\n", oneLine(err.Error()))
	if code == ExitUsage {
		fmt.Fprintln(stderr, "Run 'lotse --help' for usage.")
	}
	return code
}

// UsageError is a wrong command line: exit code 2.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

func usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// GateError is a failed gate: exit code 3. The command prints the findings
// behind it; Run adds the one-line summary.
type GateError struct {
	Reason string
}

func (e *GateError) Error() string { return "gate failed: " + e.Reason }

// exitCode is the one place that maps errors to exit codes.
func exitCode(err error) int {
	var usage *UsageError
	var gate *GateError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &gate):
		return ExitGate
	case errors.As(err, &usage):
		return ExitUsage
	default:
		return ExitError
	}
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

func (a *app) rootCmd() *cobra.Command {
	var logFormat, logLevel string
	root := &cobra.Command{
		Use:   "lotse",
		Short: "Signed, scanned, gated releases and GitOps promotion for GitLab",
		Long: `lotse is the pipeline helper of a GitLab → Harbor → ArgoCD delivery chain.
It reads an image once, writes its SBOM, scans and gates it, publishes it by
digest, signs and attests it, and commits value bumps into the GitOps repository.

Exit codes: 0 ok, 1 error, 2 usage, 3 gate failed.`,
		Version:       a.info.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			l, err := newLogger(a.stderr, logFormat, logLevel)
			if err != nil {
				return err
			}
			a.log = l
			return nil
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &UsageError{Err: err} })
	root.PersistentFlags().StringVar(&logFormat, "log-format", a.env.or("LOTSE_LOG_FORMAT", "text"), "log format: text or json")
	root.PersistentFlags().StringVar(&logLevel, "log-level", a.env.or("LOTSE_LOG_LEVEL", "info"), "log level: debug, info, warn or error")
	root.SetVersionTemplate("lotse {{.Version}}\n")
	root.AddCommand(
		a.sbomCmd(),
		a.scanCmd(),
		a.signCmd(),
		a.attestCmd(),
		a.verifyCmd(),
		a.publishCmd(),
		a.releaseCmd(),
		a.rescanCmd(),
		a.bumpCmd(),
		a.promoteCmd(),
		a.rollbackCmd(),
		a.statusCmd(),
		a.configCmd(),
		a.initCmd(),
		a.guardrailsCmd(),
		a.auditCmd(),
		a.doraCmd(),
		a.doctorCmd(),
	)
	// Unknown subcommands and bad positional arguments are usage errors.
	root.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usagef("unknown command %q", args[0])
		}
		return nil
	}
	root.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	return root
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("--log-level: unknown level %q (want debug, info, warn or error)", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, usagef("--log-format: unknown format %q (want text or json)", format)
	}
}

// args returns a cobra positional-argument check that reports usage errors.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("want %s, got %d argument(s)", what, len(args))
		}
		return nil
	}
}
