// Command lotse is the pipeline helper run inside GitLab CI jobs: SBOM, scan
// gate, publish, sign and attest, and GitOps write-back.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/lotse/lotse/ci"
)

// version is set at link time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	return ci.Run(ctx, ci.Info{Version: version}, args[1:], getenv, stdout, stderr)
}
