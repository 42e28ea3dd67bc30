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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	// LOTSE_CPUPROFILE=FILE writes a CPU profile of the command: make pgo
	// collects them into default.pgo, which go build applies to lotse.
	if path := getenv("LOTSE_CPUPROFILE"); path != "" {
		stopProfile, err := startRecording(path, pprof.StartCPUProfile, pprof.StopCPUProfile)
		if err != nil {
			fmt.Fprintf(stderr, "lotse: LOTSE_CPUPROFILE: %v\n", err)
			return ci.ExitError
		}
		defer stopProfile()
	}
	// LOTSE_MEMPROFILE=FILE writes the allocation profile of the command
	// when it ends (go tool pprof -sample_index=alloc_space FILE).
	if path := getenv("LOTSE_MEMPROFILE"); path != "" {
		runtime.MemProfileRate = 64 << 10
		defer func() {
			if err := writeHeapProfile(path); err != nil {
				fmt.Fprintf(stderr, "lotse: LOTSE_MEMPROFILE: %v\n", err)
			}
		}()
	}
	// LOTSE_TRACE=FILE writes an execution trace of the command (go tool
	// trace FILE): which goroutines ran when, on how many cores.
	if path := getenv("LOTSE_TRACE"); path != "" {
		stopTrace, err := startRecording(path, trace.Start, trace.Stop)
		if err != nil {
			fmt.Fprintf(stderr, "lotse: LOTSE_TRACE: %v\n", err)
			return ci.ExitError
		}
		defer stopTrace()
	}
	// LOTSE_PEAKPROFILE=FILE writes the heap profile taken when the
	// command's resident set was highest (go tool pprof -sample_index=
	// inuse_space FILE): what a peak RSS is made of.
	if path := getenv("LOTSE_PEAKPROFILE"); path != "" {
		stopPeak, err := startPeakProfile(path, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "lotse: LOTSE_PEAKPROFILE: %v\n", err)
			return ci.ExitError
		}
		defer stopPeak()
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
