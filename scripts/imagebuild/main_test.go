package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"
)

func TestRun(t *testing.T) {
	dir := t.TempDir()
	// This test binary stands in for lotse and lotsed: it is static
	// (CGO_ENABLED=0), as make build's binaries are.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "image")
	base := []string{"-lotse", self, "-lotsed", self, "-out", out, "-ca", ca, "-version", "1.2.3", "-revision", "abc", "-created", "1767225600"}

	// Without a shell for lotse, it refuses: the components need one.
	if err := run(base, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "-busybox is required") {
		t.Fatalf("without -busybox: %v", err)
	}
	// A busybox that is not a static executable is refused.
	if err := run(append(base, "-busybox", ca), &bytes.Buffer{}); err == nil {
		t.Fatal("a CA bundle passed as busybox")
	}
	if err := run(append(base, "-busybox", self, "-no-shell"), &bytes.Buffer{}); err == nil {
		t.Fatal("-busybox with -no-shell")
	}
	if err := run(append(base, "-created", "yesterday", "-no-shell"), &bytes.Buffer{}); err == nil {
		t.Fatal("a bad -created")
	}

	var stdout bytes.Buffer
	if err := run(append(base, "-busybox", self), &stdout); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"lotse", "lotsed"} {
		p, err := layout.FromPath(filepath.Join(out, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		idx, err := p.ImageIndex()
		if err != nil {
			t.Fatal(err)
		}
		im, err := idx.IndexManifest()
		if err != nil || len(im.Manifests) != 1 || im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "1.2.3" {
			t.Fatalf("%s: index %+v (%v)", name, im, err)
		}
		img, err := p.Image(im.Manifests[0].Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Config.Entrypoint[0] != "/usr/local/bin/"+name || cf.Config.Labels["org.opencontainers.image.revision"] != "abc" {
			t.Errorf("%s: config %+v", name, cf.Config)
		}
		// Only lotse carries the shell.
		if hasShell := strings.Contains(strings.Join(cf.Config.Env, " "), "/busybox"); hasShell != (name == "lotse") {
			t.Errorf("%s: env %v", name, cf.Config.Env)
		}
		if !strings.Contains(stdout.String(), "oci:"+filepath.Join(out, name)+":1.2.3 sha256:") {
			t.Errorf("stdout lacks %s:\n%s", name, stdout.String())
		}
	}
}
