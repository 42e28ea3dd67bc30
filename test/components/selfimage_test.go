package components

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"gopkg.in/yaml.v3"

	"github.com/lotse/lotse/internal/imagebuild"
	"github.com/lotse/lotse/test/reportschema"
)

// componentVersion is the version the test gives the components: their
// default image is $CI_REGISTRY/lotse/lotse:<component version>, which the
// project's own pipeline (.gitlab-ci.yml) publishes.
const componentVersion = "1.0.0"

// releaseSelf releases lotse's own image with lotse, as the project's
// pipeline does: the image make image writes (LOTSE_IMAGE_LAYOUT, e.g.
// bin/image/lotse) or, without it, the same image built here from the lotse
// under test; SBOM, scan with the fixture DB, signature and attestations, to
// REGISTRY/lotse/lotse:<component version> on the loopback registry. Then
// lotse verify passes on it, its reports validate, and every component's
// default image resolves to it.
func releaseSelf(t *testing.T, lotse, regHost, keyFile, pubFile, cacheDir string) {
	t.Helper()
	dir := t.TempDir()
	src := os.Getenv("LOTSE_IMAGE_LAYOUT")
	if src == "" {
		src = filepath.Join(dir, "image", "lotse")
		buildSelfImage(t, lotse, src)
	}
	p, err := layout.FromPath(src)
	if err != nil {
		t.Fatalf("LOTSE_IMAGE_LAYOUT: %v", err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 1 {
		t.Fatalf("%s: want one image, got %v (%v)", src, im, err)
	}
	want := im.Manifests[0].Digest.String()

	env := map[string]string{"HOME": dir, "PATH": os.Getenv("PATH"), "COSIGN_PASSWORD": "s3cret", "LOTSE_CACHE_DIR": cacheDir}
	repo := regHost + "/lotse/lotse"
	code, out := run(t, dir, env, lotse, "release", "oci:"+src, "--to", repo, "--tag", componentVersion,
		"--offline", "--key", keyFile, "--fail-on", "critical", "--dotenv", "release.env")
	if code != 0 {
		t.Fatalf("lotse release of lotse's own image: exit %d\n%s", code, out)
	}
	t.Logf("lotse release of lotse's own image:\n%s", out)
	dotenv := parseDotenv(t, findFile(t, dir, "release.env"))
	if dotenv["LOTSE_DIGEST"] != want || dotenv["LOTSE_IMAGE"] != repo+"@"+want {
		t.Fatalf("released %v, want %s@%s (the layout's image, unchanged)", dotenv, repo, want)
	}
	if code, out := run(t, dir, env, lotse, "verify", "--offline", "--key", pubFile, "--type", "cyclonedx,vuln", repo+":"+componentVersion); code != 0 {
		t.Fatalf("lotse verify of lotse's own image: exit %d\n%s", code, out)
	}
	if err := reportschema.Validate(reportschema.ContainerScanning, findFile(t, dir, "gl-container-scanning-report.json")); err != nil {
		t.Error(err)
	}
	bom := findFile(t, dir, "gl-sbom-image.cdx.json")
	if err := reportschema.Validate(reportschema.CycloneDX, bom); err != nil {
		t.Error(err)
	}
	// syft reads lotse's build info: the SBOM names the modules it links.
	if !strings.Contains(string(bom), "pkg:golang/github.com/google/go-containerregistry@") {
		t.Errorf("the SBOM of lotse's image does not list go-containerregistry")
	}

	// Every component's default image is that image.
	tag, err := name.NewTag(repo + ":" + componentVersion)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range loadComponents(t) {
		var jobs map[string]struct {
			Image struct {
				Name string `yaml:"name"`
			} `yaml:"image"`
		}
		if err := yaml.Unmarshal([]byte(c.interpolate(t, sampleInputs, componentVersion)), &jobs); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		for job, j := range jobs {
			ref := os.Expand(j.Image.Name, func(k string) string {
				if k == "CI_REGISTRY" {
					return regHost
				}
				t.Errorf("%s: job %s: image %q uses $%s", c.name, job, j.Image.Name, k)
				return ""
			})
			if ref != tag.String() {
				t.Errorf("%s: job %s runs %q, want %s", c.name, job, ref, tag)
				continue
			}
			desc, err := remote.Head(tag)
			if err != nil || desc.Digest.String() != want {
				t.Errorf("%s: %s is %v (%v), want %s", c.name, ref, desc, err, want)
			}
		}
	}
}

// buildSelfImage writes lotse's image as make image does: the lotse binary
// on the empty base, with the system's CA bundle and busybox as the shell
// when there is one.
func buildSelfImage(t *testing.T, lotse, dir string) {
	t.Helper()
	bin, err := os.ReadFile(lotse)
	if err != nil {
		t.Fatal(err)
	}
	arch, err := imagebuild.StaticLinuxArch(bin)
	if err != nil {
		t.Fatalf("%s: %v", lotse, err)
	}
	ca, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		t.Skipf("no CA bundle to build lotse's image with: %v", err)
	}
	s := imagebuild.Spec{Name: "lotse", Binary: bin, CACerts: ca, Arch: arch, Version: componentVersion,
		Source: "https://github.com/lotse/lotse", Created: time.Unix(0, 0)}
	if bb, err := exec.LookPath("busybox"); err == nil {
		if s.Busybox, err = os.ReadFile(bb); err != nil {
			t.Fatal(err)
		}
	}
	img, err := imagebuild.Image(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := imagebuild.WriteLayout(dir, img, componentVersion); err != nil {
		t.Fatal(err)
	}
}
