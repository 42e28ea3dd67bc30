// Command lotsed is lotse's webhook service: GitLab webhooks in, promotions
// (dev → staging → production, gated, four-eyes) out, through Git.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/lotse/lotse/internal/sign"
	"github.com/lotse/lotse/webhook"
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
	return webhook.Run(ctx, version, args[1:], getenv, stdout, stderr, gateVerifier, recordAttester)
}

// gateVerifier gives lotsed's gates cosign's verification (internal/sign);
// the webhook package itself does not link cosign.
func gateVerifier(r webhook.Registry) webhook.Verifier {
	return sign.GateVerifier{Options: sign.Options{Insecure: r.Insecure, Offline: r.Offline, Username: r.Username, Password: r.Password}}
}

// recordAttester gives lotsed cosign's signing for its promotion records,
// with its own key (--signing-key).
func recordAttester(k webhook.SigningKey, r webhook.Registry, getenv func(string) string) (webhook.Attester, error) {
	a, err := sign.NewAttester(sign.Options{Insecure: r.Insecure, Offline: r.Offline, Username: r.Username, Password: r.Password},
		sign.AttesterKey{Ref: k.Ref, Password: k.Password}, getenv, os.ReadFile)
	if err != nil {
		return nil, err
	}
	return a, nil
}
