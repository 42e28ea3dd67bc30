package sbom

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/anchore/stereoscope/pkg/file"
	"github.com/anchore/stereoscope/pkg/image"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/lotse/lotse/internal/oci"
	"github.com/lotse/lotse/test/fixture"
)

func generate(t *testing.T, img v1.Image) *SBOM {
	t.Helper()
	s, err := Generate(context.Background(), img, "registry.example.com/team/app:1.0", Tool{Name: "lotse", Version: "test"}, t.TempDir())
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return s
}

func purls(s *SBOM, typ string) []string {
	var out []string
	for _, p := range s.Packages() {
		if p.Type == typ {
			out = append(out, p.PURL)
		}
	}
	return out
}

func TestGenerateDebian(t *testing.T) {
	img, err := fixture.DebianImage()
	if err != nil {
		t.Fatal(err)
	}
	s := generate(t, img)
	got := purls(s, "deb")
	want := []string{
		"pkg:deb/debian/base-files@12.4%2Bdeb12u5?arch=amd64&distro=debian-12.5",
		"pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12.5&upstream=glibc",
		"pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&distro=debian-12.5&upstream=openssl",
		"pkg:deb/debian/openssl@3.0.11-1~deb12u2?arch=amd64&distro=debian-12.5",
		"pkg:deb/debian/tzdata@2024a-0%2Bdeb12u1?arch=amd64&distro=debian-12.5",
		"pkg:deb/debian/zlib1g@1%3A1.2.13.dfsg-1?arch=amd64&distro=debian-12.5&upstream=zlib",
	}
	if !slices.Equal(got, want) {
		t.Errorf("deb purls:\n got %q\nwant %q", got, want)
	}
	if s.Len() != len(fixture.DebianPackages) {
		t.Errorf("Len = %d, want %d", s.Len(), len(fixture.DebianPackages))
	}
}

// One cataloger serves several images; once Close returns, the layers it
// unpacked are gone.
func TestCatalogerRemovesLayers(t *testing.T) {
	deb, err := fixture.DebianImage()
	if err != nil {
		t.Fatal(err)
	}
	apk, err := fixture.AlpineImage()
	if err != nil {
		t.Fatal(err)
	}
	c := NewCataloger(Tool{Name: "lotse", Version: "test"})
	var dirs []string
	for i, img := range []v1.Image{deb, apk} {
		dir := filepath.Join(t.TempDir(), fmt.Sprint("layers", i))
		s, err := c.Generate(context.Background(), img, "registry.example.com/team/app:1.0", dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		if s.Len() == 0 {
			t.Errorf("image %d: no packages", i)
		}
		dirs = append(dirs, dir)
	}
	c.Close()
	for _, dir := range dirs {
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s after Close: %v, want it removed", dir, err)
		}
	}
}

func TestGenerateAlpine(t *testing.T) {
	img, err := fixture.AlpineImage()
	if err != nil {
		t.Fatal(err)
	}
	got := purls(generate(t, img), "apk")
	if len(got) != len(fixture.AlpinePackages) {
		t.Fatalf("apk purls = %q, want %d packages", got, len(fixture.AlpinePackages))
	}
	if !slices.Contains(got, "pkg:apk/alpine/libcrypto3@3.3.1-r0?arch=x86_64&distro=alpine-3.20.3&upstream=openssl") {
		t.Errorf("libcrypto3 with its openssl origin missing from %q", got)
	}
}

func TestGenerateGoBinary(t *testing.T) {
	img, err := fixture.GoImage(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ver, _ := fixture.GoModuleVersion()
	s := generate(t, img)
	want := "pkg:golang/golang.org/x/sync@" + ver
	if !slices.Contains(purls(s, "go-module"), want) {
		t.Errorf("go-module purls %q lack %s", purls(s, "go-module"), want)
	}
	if s.Counts()["deb"] != len(fixture.DebianPackages) {
		t.Errorf("deb count = %d", s.Counts()["deb"])
	}
}

func TestEncodeDecode(t *testing.T) {
	img, err := fixture.DebianImage()
	if err != nil {
		t.Fatal(err)
	}
	s := generate(t, img)
	for _, f := range Formats {
		t.Run(string(f), func(t *testing.T) {
			b, err := s.Bytes(f)
			if err != nil {
				t.Fatal(err)
			}
			var doc map[string]any
			if err := json.Unmarshal(b, &doc); err != nil {
				t.Fatalf("not JSON: %v", err)
			}
			switch f {
			case CycloneDXJSON:
				if doc["bomFormat"] != "CycloneDX" {
					t.Errorf("bomFormat = %v", doc["bomFormat"])
				}
				if n := len(doc["components"].([]any)); n < len(fixture.DebianPackages) {
					t.Errorf("%d components, want at least %d", n, len(fixture.DebianPackages))
				}
			case SPDXJSON:
				if !strings.HasPrefix(doc["spdxVersion"].(string), "SPDX-2") {
					t.Errorf("spdxVersion = %v", doc["spdxVersion"])
				}
			}
			back, gotFormat, err := Decode(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if gotFormat != f {
				t.Errorf("decoded format %q, want %q", gotFormat, f)
			}
			if !slices.Equal(purls(back, "deb"), purls(s, "deb")) {
				t.Errorf("round trip lost packages: %q", purls(back, "deb"))
			}
		})
	}
}

func TestParseFormat(t *testing.T) {
	if _, err := ParseFormat("cyclonedx-xml"); err == nil || !strings.Contains(err.Error(), "cyclonedx-json, spdx-json, syft-json") {
		t.Errorf("ParseFormat(cyclonedx-xml) = %v", err)
	}
	if f, err := ParseFormat("spdx-json"); err != nil || f != SPDXJSON {
		t.Errorf("ParseFormat(spdx-json) = %v, %v", f, err)
	}
	if _, _, err := Decode(strings.NewReader("not an sbom")); err == nil {
		t.Error("Decode accepted garbage")
	}
}

// An image oci.Unpack unpacked, with its layers linked into the content
// directory (as lotse release does), is cataloged from those files: syft
// writes no copy of its own, and the SBOM is the one of the image read
// directly. If stereoscope renames its layer files, the first check fails;
// cataloging is then slower, not wrong.
func TestGenerateReadsUnpackedLayers(t *testing.T) {
	ctx := context.Background()
	img, err := fixture.DebianImage()
	if err != nil {
		t.Fatal(err)
	}
	u, err := oci.Unpack(ctx, img, filepath.Join(t.TempDir(), "layers"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "sbom")
	u.LinkLayers(dir)
	linked, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	before := map[string]os.FileInfo{}
	for _, e := range linked {
		fi, err := os.Stat(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		before[e.Name()] = fi
	}
	si := image.New(u, file.NewTempDirGenerator("lotse-test"), dir)
	defer si.Cleanup() //nolint:errcheck // test
	if err := si.Read(ctx); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(linked) || len(linked) != len(si.Layers) {
		t.Errorf("content directory: %d files before reading, %d after, %d layers; want one linked file per layer and no copies", len(linked), len(after), len(si.Layers))
	}
	for _, e := range after {
		fi, err := os.Stat(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if b, ok := before[e.Name()]; !ok || !os.SameFile(b, fi) {
			t.Errorf("%s: written by stereoscope, not the unpacked layer", e.Name())
		}
	}
	got := generate(t, u)
	want := generate(t, img)
	if !slices.Equal(purls(got, "deb"), purls(want, "deb")) || got.Len() != want.Len() {
		t.Errorf("SBOM of the unpacked image differs: %d packages, want %d", got.Len(), want.Len())
	}
}
