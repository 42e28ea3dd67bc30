// Command imagebuild writes lotse's and lotsed's container images as OCI
// layouts, without a container engine or network: make image runs it on the
// static binaries make build writes. It is build tooling, like the shell
// scripts next to it, and not part of what lotse ships; the image assembly
// itself is internal/imagebuild, which the component tests use too.
//
//	go run ./scripts/imagebuild -lotse bin/lotse -lotsed bin/lotsed -out bin/image \
//	    -version v1.2.3 -revision $(git rev-parse HEAD) -source https://... -created 1767225600
//
// writes bin/image/lotse and bin/image/lotsed, each an OCI layout holding one
// image tagged with the version; lotse release oci:bin/image/lotse publishes
// it.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/lotse/lotse/internal/imagebuild"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "imagebuild:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("imagebuild", flag.ContinueOnError)
	lotse := fs.String("lotse", "bin/lotse", "the static lotse binary")
	lotsed := fs.String("lotsed", "bin/lotsed", "the static lotsed binary")
	out := fs.String("out", "bin/image", "directory for the OCI layouts OUT/lotse and OUT/lotsed")
	version := fs.String("version", "dev", "image version: the tag in the layouts and the org.opencontainers.image.version label")
	revision := fs.String("revision", "", "source commit (org.opencontainers.image.revision)")
	source := fs.String("source", "", "source repository URL (org.opencontainers.image.source)")
	created := fs.String("created", "0", "creation time and file times, Unix seconds (e.g. the commit time, for reproducible images)")
	ca := fs.String("ca", "/etc/ssl/certs/ca-certificates.crt", "PEM bundle of the CA certificates to install")
	busybox := fs.String("busybox", "", "static busybox for the lotse image's shell (GitLab runs job scripts with it); required unless -no-shell")
	noShell := fs.Bool("no-shell", false, "build the lotse image without a shell (it then cannot run GitLab job scripts)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	secs, err := strconv.ParseInt(*created, 10, 64)
	if err != nil {
		return fmt.Errorf("-created: want Unix seconds: %w", err)
	}
	caPEM, err := os.ReadFile(*ca)
	if err != nil {
		return fmt.Errorf("-ca: %w", err)
	}
	var shell []byte
	switch {
	case *busybox != "" && *noShell:
		return errors.New("-busybox and -no-shell exclude each other")
	case *busybox != "":
		if shell, err = os.ReadFile(*busybox); err != nil {
			return fmt.Errorf("-busybox: %w", err)
		}
		if _, err := imagebuild.StaticLinuxArch(shell); err != nil {
			return fmt.Errorf("-busybox %s: %w (Debian: apt-get install busybox-static)", *busybox, err)
		}
	case !*noShell:
		return errors.New("-busybox is required: the lotse image runs the CI/CD components' job scripts, which need a shell (Debian: apt-get install busybox-static; or -no-shell)")
	}
	for _, img := range []struct {
		name, bin string
		shell     []byte
	}{
		{name: "lotse", bin: *lotse, shell: shell},
		{name: "lotsed", bin: *lotsed},
	} {
		s, err := imagebuild.Program(img.name)
		if err != nil {
			return err
		}
		bin, err := os.ReadFile(img.bin)
		if err != nil {
			return fmt.Errorf("-%s: %w", img.name, err)
		}
		arch, err := imagebuild.StaticLinuxArch(bin)
		if err != nil {
			return fmt.Errorf("-%s %s: %w", img.name, img.bin, err)
		}
		s.Binary, s.CACerts, s.Busybox, s.Arch = bin, caPEM, img.shell, arch
		s.Version, s.Revision, s.Source, s.Created = *version, *revision, *source, time.Unix(secs, 0)
		image, err := imagebuild.Image(s)
		if err != nil {
			return err
		}
		dir := filepath.Join(*out, img.name)
		if err := imagebuild.WriteLayout(dir, image, *version); err != nil {
			return err
		}
		d, err := image.Digest()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%-6s oci:%s:%s %s\n", img.name, dir, *version, d)
	}
	return nil
}
