// Command lotsed is lotse's webhook service: GitLab webhooks in, promotions
// (dev → staging → production, gated, four-eyes) out, through Git.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/lotse/lotse/webhook"
	"github.com/lotse/lotse/webhook/signing"
)

// version is set at link time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	// cosign (the gates' verifier) writes progress messages to os.Stderr,
	// looked up at each message, and has no option to stop. lotsed's
	// standard error is its JSON log: the log keeps the real one and
	// os.Stderr points at /dev/null, set once here before anything runs.
	stderr := os.Stderr
	if null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0); err == nil {
		os.Stderr = null
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Getenv, os.Stdout, stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	return webhook.Run(ctx, version, args[1:], getenv, stdout, stderr, signing.Verifier, signing.Attester)
}
