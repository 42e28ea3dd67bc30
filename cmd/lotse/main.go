// Command lotse is the pipeline helper run inside GitLab CI jobs: SBOM, scan
// gate, publish, sign and attest, and GitOps write-back.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"syscall"

	"github.com/lotse/lotse/ci"
)

// version is set at link time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	dropStartupPages()                                //nolint:errcheck // without it, lotse only holds more pages
	growHugeHeap(hugeHeapBytes, os.Getenv("GODEBUG")) //nolint:errcheck // without it, the heap has pages of 4 KiB
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	// Each recorder is switched on by its variable naming the file it
	// writes; one that cannot start stops lotse before the command runs.
	recorders := []struct {
		env   string
		start func(path string) (stop func(), err error)
	}{
		// A CPU profile of the command: make pgo collects them into
		// default.pgo, which go build applies to lotse.
		{"LOTSE_CPUPROFILE", func(path string) (func(), error) {
			return startRecording(path, pprof.StartCPUProfile, pprof.StopCPUProfile)
		}},
		// The allocation profile of the command when it ends (go tool
		// pprof -sample_index=alloc_space FILE).
		{"LOTSE_MEMPROFILE", func(path string) (func(), error) {
			runtime.MemProfileRate = 64 << 10
			return func() {
				if err := writeHeapProfile(path); err != nil {
					fmt.Fprintf(stderr, "lotse: LOTSE_MEMPROFILE: %v\n", err)
				}
			}, nil
		}},
		// An execution trace (go tool trace FILE): which goroutines ran
		// when, on how many cores.
		{"LOTSE_TRACE", func(path string) (func(), error) {
			return startRecording(path, trace.Start, trace.Stop)
		}},
		// The heap profile taken when the resident set was highest (go
		// tool pprof -sample_index=inuse_space FILE): what a peak RSS is
		// made of.
		{"LOTSE_PEAKPROFILE", func(path string) (func(), error) {
			return startPeakProfile(path, stderr)
		}},
	}
	for _, r := range recorders {
		path := getenv(r.env)
		if path == "" {
			continue
		}
		stop, err := r.start(path)
		if err != nil {
			fmt.Fprintf(stderr, "lotse: %s: %v\n", r.env, err)
			return ci.ExitError
		}
		defer stop()
	}
	return ci.Run(ctx, ci.Info{Version: version}, args[1:], getenv, stdout, stderr)
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// startRecording creates path and starts a recorder writing to it (a CPU
// profile, an execution trace); the function it returns stops it and
// closes the file.
func startRecording(path string, start func(io.Writer) error, stop func()) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := start(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		stop()
		f.Close()
	}, nil
}
