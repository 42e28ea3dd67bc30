package oci

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func TestParseSource(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		in      string
		kind    Kind
		path    string
		tag     string
		wantErr string
	}{
		{in: "registry.example.com/team/app:1.2.3", kind: Registry},
		{in: "registry.example.com/team/app@sha256:" + strings.Repeat("a", 64), kind: Registry},
		{in: "oci:" + dir, kind: Layout, path: dir},
		{in: "oci:" + dir + ":v1", kind: Layout, path: dir, tag: "v1"},
		{in: "oci:build/image:v2", kind: Layout, path: "build/image", tag: "v2"},
		{in: "docker-archive:image.tar", kind: Archive, path: "image.tar"},
		{in: "", wantErr: "empty image reference"},
		{in: "oci:", wantErr: "needs a directory"},
		{in: "docker-archive:", wantErr: "needs a file"},
		{in: "https://registry.example.com/app", wantErr: "drop the URL scheme"},
		{in: "Registry.Example.com/UPPER/case:tag", wantErr: "bad image reference"},
	} {
		s, err := ParseSource(tc.in, false)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseSource(%q) = %v, want error %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || s.Kind != tc.kind || s.Path != tc.path || s.Tag != tc.tag || s.String() != tc.in {
			t.Errorf("ParseSource(%q) = %+v, %v", tc.in, s, err)
		}
	}
}

func TestParseRepositoryAndTags(t *testing.T) {
	if r, err := ParseRepository("localhost:5000/team/app", false); err != nil || r.RepositoryStr() != "team/app" {
		t.Errorf("host:port repository = %v, %v", r, err)
	}
	for in, want := range map[string]string{"r.example/app:1": "without a tag", "r.example/app@sha256:" + strings.Repeat("0", 64): "without a digest"} {
		if _, err := ParseRepository(in, false); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseRepository(%q) = %v, want %q", in, err, want)
		}
	}
	if err := CheckTags([]string{"1.2.3", "latest"}); err != nil {
		t.Error(err)
	}
	if err := CheckTags([]string{"ok", "no spaces"}); err == nil || !strings.Contains(err.Error(), `"no spaces"`) {
		t.Errorf("CheckTags = %v", err)
	}
}

func loopback(t *testing.T) string {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// Publishing keeps the digest, from every kind of source, and tags last.
func TestOpenSpoolPush(t *testing.T) {
	ctx := context.Background()
	reg := loopback(t)
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	src, _ := name.NewTag(reg + "/src/app:1")
	if err := remote.Write(src, img); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p, err := layout.Write(filepath.Join(dir, "layout"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "v1"})); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "image.tar")
	if err := tarball.WriteToFile(archive, src, img); err != nil {
		t.Fatal(err)
	}
	for i, in := range []string{src.String(), "oci:" + filepath.Join(dir, "layout") + ":v1", "docker-archive:" + archive} {
		s, err := ParseSource(in, false)
		if err != nil {
			t.Fatal(err)
		}
		art, err := Open(ctx, s, Options{})
		if err != nil {
			t.Fatalf("Open(%s): %v", in, err)
		}
		copyDir := filepath.Join(t.TempDir(), "copy")
		art, err = Spool(s, art, copyDir)
		if err != nil {
			t.Fatalf("Spool(%s): %v", in, err)
		}
		dst, _ := ParseRepository(reg+"/dst/app", false)
		d, err := Push(ctx, art, dst, Options{})
		if err != nil {
			t.Fatalf("Push(%s): %v", in, err)
		}
		// Tag needs nothing from the local copy that Push has not read already.
		if err := os.RemoveAll(copyDir); err != nil {
			t.Fatal(err)
		}
		if in != "docker-archive:"+archive && d.DigestStr() != want.String() {
			t.Errorf("%s: pushed %s, want the source digest %s", in, d.DigestStr(), want)
		}
		tag := []string{"a", "b", "c"}[i]
		if ok, _ := Exists(ctx, dst.Tag(tag), Options{}); ok {
			t.Errorf("tag %s exists before Tag", tag)
		}
		if err := Tag(ctx, art, dst, []string{tag}, Options{}); err != nil {
			t.Fatal(err)
		}
		if ok, err := Exists(ctx, dst.Tag(tag), Options{}); !ok || err != nil {
			t.Errorf("tag %s missing after Tag: %v", tag, err)
		}
	}
}

// A multi-platform index is published whole; the chosen platform's image
// is the one analysed.
func TestIndex(t *testing.T) {
	ctx := context.Background()
	reg := loopback(t)
	amd, _ := random.Image(512, 1)
	arm, _ := random.Image(512, 1)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}})
	ref, _ := name.NewTag(reg + "/multi/app:1")
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	s, _ := ParseSource(ref.String(), false)
	art, err := Open(ctx, s, Options{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := art.Image.Digest()
	want, _ := arm.Digest()
	idxDigest, _ := idx.Digest()
	if got != want || art.Digest != idxDigest {
		t.Errorf("picked %s (artifact %s), want image %s of index %s", got, art.Digest, want, idxDigest)
	}
	copyDir := t.TempDir()
	art, err = Spool(s, art, copyDir)
	if err != nil {
		t.Fatal(err)
	}
	dst, _ := ParseRepository(reg+"/copy/app", false)
	d, err := Push(ctx, art, dst, Options{})
	if err != nil || d.DigestStr() != idxDigest.String() {
		t.Fatalf("Push index = %v, %v", d, err)
	}
	if err := os.RemoveAll(copyDir); err != nil {
		t.Fatal(err)
	}
	if err := Tag(ctx, art, dst, []string{"1"}, Options{}); err != nil {
		t.Fatalf("Tag after the local copy is gone: %v", err)
	}
	if ok, err := Exists(ctx, dst.Tag("1"), Options{}); !ok || err != nil {
		t.Errorf("tag 1 missing after Tag: %v", err)
	}
	if _, err := Open(ctx, s, Options{Platform: &v1.Platform{OS: "windows", Architecture: "amd64"}}); err == nil || !strings.Contains(err.Error(), "no image for platform") {
		t.Errorf("missing platform: %v", err)
	}
}

func TestKeychain(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.json")
	if err := writeFile(cfg, `{"auths":{"harbor.example.com":{"auth":"dXNlcjpwYXNz"}}}`); err != nil {
		t.Fatal(err)
	}
	kc, err := Keychain([]Credential{{Registry: "registry.gitlab.example.com", Username: "gitlab-ci-token", Password: "job"}}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for host, user := range map[string]string{"registry.gitlab.example.com": "gitlab-ci-token", "harbor.example.com": "user", "other.example.com": ""} {
		reg, _ := name.NewRegistry(host)
		a, err := kc.Resolve(reg)
		if err != nil {
			t.Fatal(err)
		}
		c, err := a.Authorization()
		if err != nil {
			t.Fatal(err)
		}
		if c.Username != user {
			t.Errorf("%s: user %q, want %q", host, c.Username, user)
		}
	}
	if _, err := Keychain(nil, filepath.Join(dir, "missing.json")); err != nil {
		t.Errorf("a missing docker config is not an error: %v", err)
	}
}

func writeFile(p, s string) error { return os.WriteFile(p, []byte(s), 0o600) }
