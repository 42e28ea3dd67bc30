package imagebuild

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

const pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

func spec() Spec {
	return Spec{
		Name: "lotsed", Binary: []byte("\x7fELF static"), CACerts: []byte(pem),
		Version: "v1.2.3", Revision: "0123456789abcdef0123456789abcdef01234567", Source: "https://gitlab.example.com/lotse/lotse",
		Created: time.Date(2026, 1, 2, 3, 4, 5, 600, time.FixedZone("CET", 3600)), Arch: "amd64",
		Env: []string{"LOTSE_DATABASE_URL=/var/lib/lotsed/lotsed.db"}, StateDirs: []string{"/var/lib/lotsed"}, Ports: []string{"8080/tcp"},
	}
}

type file struct {
	typ      byte
	mode     int64
	uid, gid int
	data     string
	link     string
	mtime    time.Time
}

// files flattens the image as a container runtime would.
func files(t *testing.T, s Spec) map[string]file {
	t.Helper()
	img, err := Image(s)
	if err != nil {
		t.Fatal(err)
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	out := map[string]file{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out[strings.TrimSuffix(h.Name, "/")] = file{h.Typeflag, h.Mode, h.Uid, h.Gid, string(b), h.Linkname, h.ModTime}
	}
	return out
}

func TestImageFiles(t *testing.T) {
	fs := files(t, spec())
	for name, want := range map[string]file{
		"tmp":                               {typ: tar.TypeDir, mode: 0o1777},
		"etc/ssl/certs/ca-certificates.crt": {typ: tar.TypeReg, mode: 0o644, data: pem},
		"usr/local/bin/lotsed":              {typ: tar.TypeReg, mode: 0o755, data: "\x7fELF static"},
		"home/nonroot":                      {typ: tar.TypeDir, mode: 0o700, uid: NonRoot, gid: NonRoot},
		"var/lib/lotsed":                    {typ: tar.TypeDir, mode: 0o700, uid: NonRoot, gid: NonRoot},
		"var/lib":                           {typ: tar.TypeDir, mode: 0o755},
	} {
		got, ok := fs[name]
		if !ok {
			t.Errorf("%s missing", name)
			continue
		}
		if got.typ != want.typ || got.mode != want.mode || got.uid != want.uid || got.gid != want.gid || (want.data != "" && got.data != want.data) {
			t.Errorf("%s = %+v, want %+v", name, got, want)
		}
	}
	if !strings.Contains(fs["etc/passwd"].data, "nonroot:x:65532:65532:") || !strings.Contains(fs["etc/group"].data, "nonroot:x:65532:") {
		t.Errorf("passwd/group:\n%s\n%s", fs["etc/passwd"].data, fs["etc/group"].data)
	}
	for name, f := range fs {
		// Nothing but the state directories belongs to the user the
		// image runs as: it cannot replace the binary or the CA bundle.
		if f.uid != 0 && name != "home/nonroot" && name != "var/lib/lotsed" {
			t.Errorf("%s is owned by %d", name, f.uid)
		}
		if f.mode&0o6000 != 0 {
			t.Errorf("%s is setuid/setgid (%o)", name, f.mode)
		}
		if f.typ == tar.TypeReg && f.mode&0o022 != 0 {
			t.Errorf("%s is writable by group or others (%o)", name, f.mode)
		}
		if !f.mtime.Equal(time.Date(2026, 1, 2, 2, 4, 5, 0, time.UTC)) {
			t.Errorf("%s mtime %v", name, f.mtime)
		}
	}
	if _, ok := fs["busybox/sh"]; ok {
		t.Error("a shell without Busybox set")
	}
}

func TestImageShell(t *testing.T) {
	s := spec()
	s.Name, s.Busybox = "lotse", []byte("\x7fELF busybox")
	fs := files(t, s)
	if fs["busybox/busybox"].data != "\x7fELF busybox" || fs["busybox/busybox"].mode != 0o755 {
		t.Errorf("busybox = %+v", fs["busybox/busybox"])
	}
	if sh := fs["busybox/sh"]; sh.typ != tar.TypeSymlink || sh.link != "busybox" {
		t.Errorf("busybox/sh = %+v", sh)
	}
	img, err := Image(s)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	if cf.Config.Env[0] != "PATH=/usr/local/bin:/busybox" {
		t.Errorf("env = %q", cf.Config.Env)
	}
}

func TestImageConfig(t *testing.T) {
	img, err := Image(spec())
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if strings.Join(c.Entrypoint, " ") != "/usr/local/bin/lotsed" || c.User != "65532:65532" || cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("config = %+v", cf)
	}
	for k, v := range map[string]string{
		"org.opencontainers.image.version":  "v1.2.3",
		"org.opencontainers.image.revision": "0123456789abcdef0123456789abcdef01234567",
		"org.opencontainers.image.source":   "https://gitlab.example.com/lotse/lotse",
		"org.opencontainers.image.title":    "lotsed",
		"org.opencontainers.image.created":  "2026-01-02T02:04:05Z",
	} {
		if c.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, c.Labels[k], v)
		}
	}
	if _, ok := c.Volumes["/var/lib/lotsed"]; !ok {
		t.Errorf("volumes = %v", c.Volumes)
	}
	if _, ok := c.ExposedPorts["8080/tcp"]; !ok {
		t.Errorf("ports = %v", c.ExposedPorts)
	}
	if !strings.Contains(strings.Join(c.Env, " "), "LOTSE_DATABASE_URL=/var/lib/lotsed/lotsed.db") {
		t.Errorf("env = %v", c.Env)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != "application/vnd.oci.image.manifest.v1+json" || len(m.Layers) != 2 || m.Layers[0].MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" {
		t.Errorf("manifest = %+v", m)
	}
}

// The same inputs give the same digest; any input changes it.
func TestImageReproducible(t *testing.T) {
	digest := func(s Spec) string {
		img, err := Image(s)
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d.String()
	}
	a := digest(spec())
	if b := digest(spec()); a != b {
		t.Fatalf("two builds: %s and %s", a, b)
	}
	s := spec()
	s.Binary = []byte("\x7fELF other")
	if digest(s) == a {
		t.Error("another binary, same digest")
	}
	s = spec()
	s.Revision = "f" + s.Revision[1:]
	if digest(s) == a {
		t.Error("another revision, same digest")
	}
}

func TestImageRefusesBadSpecs(t *testing.T) {
	for name, mut := range map[string]func(*Spec){
		"no binary":     func(s *Spec) { s.Binary = nil },
		"no CA bundle":  func(s *Spec) { s.CACerts = nil },
		"not PEM":       func(s *Spec) { s.CACerts = []byte("not a certificate") },
		"no arch":       func(s *Spec) { s.Arch = "" },
		"path as name":  func(s *Spec) { s.Name = "../../etc/passwd" },
		"empty name":    func(s *Spec) { s.Name = "" },
		"name with dot": func(s *Spec) { s.Name = ".." },
	} {
		s := spec()
		mut(&s)
		if _, err := Image(s); err == nil {
			t.Errorf("%s: built", name)
		}
	}
}

func TestWriteLayout(t *testing.T) {
	img, err := Image(spec())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "lotsed")
	for range 2 { // a second write replaces the first
		if err := WriteLayout(dir, img, "v1.2.3"); err != nil {
			t.Fatal(err)
		}
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != want || im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "v1.2.3" {
		t.Fatalf("index = %+v", im)
	}
}

func TestStaticLinuxArch(t *testing.T) {
	self, err := os.ReadFile("/proc/self/exe") // this test binary: CGO_ENABLED=0, static
	if err != nil {
		t.Skip(err)
	}
	arch, err := StaticLinuxArch(self)
	if err != nil || arch != runtime.GOARCH {
		t.Errorf("StaticLinuxArch(test binary) = %q, %v; want %s", arch, err, runtime.GOARCH)
	}
	if _, err := StaticLinuxArch([]byte("#!/bin/sh\necho hi\n")); err == nil {
		t.Error("a shell script passed")
	}
	for _, dyn := range []string{"/bin/ls", "/usr/bin/git"} {
		if b, err := os.ReadFile(dyn); err == nil {
			if _, err := StaticLinuxArch(b); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
				t.Errorf("%s: %v, want dynamically linked", dyn, err)
			}
			break
		}
	}
}
