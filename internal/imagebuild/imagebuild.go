// Package imagebuild assembles lotse's own container images without a
// container engine: a static binary on an empty base that holds only what a
// static Go program needs (CA certificates, /etc/passwd and /etc/group with
// the non-root user 65532, a writable /tmp), optionally a static busybox as
// the shell GitLab's docker executor runs job scripts with, OCI labels, and
// an OCI layout to write it to. The result is reproducible: the same inputs
// and creation time give the same digest.
package imagebuild

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// NonRoot is the user and group the images run as (distroless' nonroot).
const NonRoot = 65532

// shellApplets are the busybox applets linked under /busybox when the image
// carries a shell: what GitLab Runner's job scripts and the components'
// scripts call.
func shellApplets() []string {
	return []string{"sh", "ash", "cat", "chmod", "cp", "date", "echo", "env", "false", "find", "grep",
		"gzip", "head", "id", "ls", "mkdir", "mktemp", "mv", "printf", "pwd", "rm", "rmdir", "sed", "sleep", "sort",
		"tail", "tar", "tee", "test", "touch", "tr", "true", "uname", "wc", "which", "xargs", "[", "[["}
}

// namePattern is what a program name may be.
var namePattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// Spec describes one image.
type Spec struct {
	// Name is the program: the binary goes to /usr/local/bin/NAME and is
	// the entrypoint; it is also the image title.
	Name string
	// Binary is the static binary's content.
	Binary []byte
	// CACerts is the PEM bundle installed as
	// /etc/ssl/certs/ca-certificates.crt (the first place Go looks).
	CACerts []byte
	// Busybox, when set, is a static busybox installed as /busybox/busybox
	// with the usual applets (sh, cat, mkdir, ...) linked next to it and
	// /busybox on PATH.
	Busybox []byte
	// Version, Revision and Source become the OCI labels
	// org.opencontainers.image.version, .revision and .source.
	Version, Revision, Source string
	// Created is the creation time and every file's mtime.
	Created time.Time
	// Arch is the binaries' GOARCH; the OS is linux.
	Arch string
	// Env is more of the config's environment, after PATH and
	// SSL_CERT_FILE.
	Env []string
	// StateDirs are directories owned by NonRoot (mode 0700), e.g. a
	// database directory; they are also declared volumes.
	StateDirs []string
	// Ports are exposed ports ("8080/tcp").
	Ports []string
	// Description is org.opencontainers.image.description.
	Description string
}

// Image builds the image of s.
func Image(s Spec) (v1.Image, error) {
	switch {
	case !namePattern.MatchString(s.Name):
		return nil, fmt.Errorf("image name %q: want a program name", s.Name)
	case len(s.Binary) == 0:
		return nil, fmt.Errorf("image %s: no binary", s.Name)
	case len(s.CACerts) == 0 || !bytes.Contains(s.CACerts, []byte("-----BEGIN CERTIFICATE-----")):
		return nil, fmt.Errorf("image %s: the CA bundle holds no PEM certificate", s.Name)
	case s.Arch == "":
		return nil, fmt.Errorf("image %s: no architecture", s.Name)
	}
	mtime := s.Created.UTC().Truncate(time.Second)
	base, err := layer(mtime, baseEntries(s))
	if err != nil {
		return nil, fmt.Errorf("image %s: base layer: %w", s.Name, err)
	}
	add := func(l v1.Layer, what string) mutate.Addendum {
		return mutate.Addendum{Layer: l, History: v1.History{Created: v1.Time{Time: mtime}, CreatedBy: "lotse imagebuild: " + what}}
	}
	hist := []mutate.Addendum{add(base, "CA certificates, passwd, group, /tmp")}
	if len(s.Busybox) > 0 {
		sh, err := layer(mtime, shellEntries(s.Busybox))
		if err != nil {
			return nil, fmt.Errorf("image %s: shell layer: %w", s.Name, err)
		}
		hist = append(hist, add(sh, "busybox shell"))
	}
	bin, err := layer(mtime, []entry{{name: "usr/local/bin/" + s.Name, mode: 0o755, data: s.Binary}})
	if err != nil {
		return nil, fmt.Errorf("image %s: binary layer: %w", s.Name, err)
	}
	hist = append(hist, add(bin, "/usr/local/bin/"+s.Name))

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, hist...)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", s.Name, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", s.Name, err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", s.Arch
	cf.Created = v1.Time{Time: mtime}
	pathVar := "PATH=/usr/local/bin"
	if len(s.Busybox) > 0 {
		pathVar += ":/busybox"
	}
	cf.Config.Env = append([]string{pathVar, "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}, s.Env...)
	cf.Config.Entrypoint = []string{"/usr/local/bin/" + s.Name}
	cf.Config.Cmd = nil
	cf.Config.User = fmt.Sprintf("%d:%d", NonRoot, NonRoot)
	cf.Config.WorkingDir = "/home/nonroot"
	cf.Config.Labels = labels(s)
	if len(s.StateDirs) > 0 {
		cf.Config.Volumes = map[string]struct{}{}
		for _, d := range s.StateDirs {
			cf.Config.Volumes["/"+strings.Trim(d, "/")] = struct{}{}
		}
	}
	if len(s.Ports) > 0 {
		cf.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range s.Ports {
			cf.Config.ExposedPorts[p] = struct{}{}
		}
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", s.Name, err)
	}
	return img, nil
}

// Labels are the OCI annotations of the image config.
func labels(s Spec) map[string]string {
	l := map[string]string{
		"org.opencontainers.image.title":   s.Name,
		"org.opencontainers.image.created": s.Created.UTC().Format(time.RFC3339),
	}
	for k, v := range map[string]string{
		"org.opencontainers.image.version":     s.Version,
		"org.opencontainers.image.revision":    s.Revision,
		"org.opencontainers.image.source":      s.Source,
		"org.opencontainers.image.description": s.Description,
	} {
		if v != "" {
			l[k] = v
		}
	}
	return l
}

// entry is one file, directory or symlink of a layer.
type entry struct {
	name     string // without a leading slash
	dir      bool
	link     string // symlink target
	mode     int64
	uid, gid int
	data     []byte
}

func baseEntries(s Spec) []entry {
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", NonRoot, NonRoot)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", NonRoot)
	es := []entry{
		{name: "etc", dir: true, mode: 0o755},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "etc/ssl", dir: true, mode: 0o755},
		{name: "etc/ssl/certs", dir: true, mode: 0o755},
		{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: s.CACerts},
		{name: "home", dir: true, mode: 0o755},
		{name: "home/nonroot", dir: true, mode: 0o700, uid: NonRoot, gid: NonRoot},
		{name: "root", dir: true, mode: 0o700},
		{name: "tmp", dir: true, mode: 0o1777},
		{name: "usr", dir: true, mode: 0o755},
		{name: "usr/local", dir: true, mode: 0o755},
		{name: "usr/local/bin", dir: true, mode: 0o755},
	}
	seen := map[string]bool{}
	for _, e := range es {
		seen[e.name] = true
	}
	for _, d := range s.StateDirs {
		d = strings.Trim(path.Clean("/"+d), "/")
		var parents []string
		for p := path.Dir(d); p != "." && p != "/" && !seen[p]; p = path.Dir(p) {
			parents = append(parents, p)
		}
		for _, p := range parents {
			seen[p] = true
			es = append(es, entry{name: p, dir: true, mode: 0o755})
		}
		if d != "" && !seen[d] {
			seen[d] = true
			es = append(es, entry{name: d, dir: true, mode: 0o700, uid: NonRoot, gid: NonRoot})
		}
	}
	return es
}

func shellEntries(busybox []byte) []entry {
	es := []entry{{name: "busybox", dir: true, mode: 0o755}, {name: "busybox/busybox", mode: 0o755, data: busybox}}
	for _, a := range shellApplets() {
		es = append(es, entry{name: "busybox/" + a, link: "busybox"})
	}
	return es
}

// layer writes entries, sorted by name, into a gzip layer with fixed
// owners and times.
func layer(mtime time.Time, es []entry) (v1.Layer, error) {
	es = slices.Clone(es)
	slices.SortFunc(es, func(a, b entry) int { return strings.Compare(a.name, b.name) })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := &tar.Header{Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: mtime, Format: tar.FormatPAX}
		switch {
		case e.dir:
			h.Typeflag, h.Name = tar.TypeDir, e.name+"/"
		case e.link != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, e.link, 0o777
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithCompressedCaching, tarball.WithMediaType(types.OCILayer))
}

// WriteLayout writes img as the only image of a new OCI layout at dir
// (replacing what is there), tagged tag (org.opencontainers.image.ref.name):
// lotse release oci:DIR takes it.
func WriteLayout(dir string, img v1.Image, tag string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("clear %s: %w", dir, err)
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	var opts []layout.Option
	if tag != "" {
		opts = append(opts, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag}))
	}
	if err := p.AppendImage(img, opts...); err != nil {
		return fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	return nil
}

// StaticLinuxArch checks that bin is a statically linked Linux ELF
// executable (the base has no libc and no loader) and returns its GOARCH.
func StaticLinuxArch(bin []byte) (string, error) {
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return "", fmt.Errorf("not an ELF executable: %w", err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return "", fmt.Errorf("ELF type %s is not an executable", f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "", errors.New("dynamically linked (it needs a loader the image does not have): build with CGO_ENABLED=0")
		}
	}
	arch, ok := map[elf.Machine]string{elf.EM_X86_64: "amd64", elf.EM_AARCH64: "arm64", elf.EM_386: "386", elf.EM_ARM: "arm",
		elf.EM_PPC64: "ppc64le", elf.EM_S390: "s390x", elf.EM_RISCV: "riscv64"}[f.Machine]
	if !ok {
		return "", fmt.Errorf("unsupported machine %s", f.Machine)
	}
	return arch, nil
}

// Program is the Spec of one of lotse's two images ("lotse" or "lotsed")
// as make image builds it, without the binary, CA bundle, shell, arch and
// version the caller adds: lotse's job scripts need a shell (the caller sets
// Busybox); lotsed keeps its SQLite database in a volume.
func Program(name string) (Spec, error) {
	switch name {
	case "lotse":
		return Spec{Name: name, Description: "lotse: releases, scans, signs and promotes container images from GitLab CI"}, nil
	case "lotsed":
		return Spec{Name: name, Description: "lotsed: lotse's webhook service",
			Env:       []string{"LOTSE_DATABASE_URL=/var/lib/lotsed/lotsed.db"},
			StateDirs: []string{"/var/lib/lotsed"},
			Ports:     []string{"8080/tcp"}}, nil
	}
	return Spec{}, fmt.Errorf("imagebuild: no program %q (lotse or lotsed)", name)
}
