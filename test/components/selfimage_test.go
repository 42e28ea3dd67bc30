package components

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"gopkg.in/yaml.v3"

	"github.com/lotse/lotse/internal/imagebuild"
	"github.com/lotse/lotse/test/reportschema"
)

// componentVersion is the version the test gives the components: their
// default image is $CI_REGISTRY/lotse/lotse:<component version>, which the
// project's own pipeline (.gitlab-ci.yml) publishes.
const componentVersion = "1.0.0"

// selfRelease is what releaseSelf needs of the pipeline test.
type selfRelease struct {
	lotse, gcl string
	bins       map[string]string // program (lotse, lotsed) → its binary, for the images
	env        map[string]string // the jobs' environment: git config, PATH with lotse
	gitEnv     []string
	dir        string // the lotse project's checkout, created here
	regHost    string
	keyFile    string
	pubFile    string
	cacheDir   string // the fixture vulnerability DB
}

// releaseSelf runs the release-lotse job of the project's own pipeline
// (.gitlab-ci.yml at the repository root) with gitlab-ci-local on a tag
// pipeline for componentVersion: lotse releases lotse's image, the one make
// image writes (LOTSE_IMAGE_LAYOUT, e.g. bin/image/lotse) or else the same
// image built here from the lotse under test, with the project's release
// component (SBOM, scan with the fixture DB, signature, attestations) to
// REGISTRY/lotse/lotse:<component version>. Then lotse verify passes on
// it, its reports validate, and every component's default image resolves
// to it.
func releaseSelf(t *testing.T, r selfRelease) {
	t.Helper()
	want := map[string]string{} // program → digest of its image in the layout
	for _, prog := range []string{"lotse", "lotsed"} {
		src := filepath.Join(r.dir, "bin", "image", prog)
		if l := os.Getenv("LOTSE_IMAGE_LAYOUT"); l != "" {
			// make image writes both layouts side by side.
			copyTree(t, filepath.Join(filepath.Dir(l), prog), src)
		} else {
			buildSelfImage(t, prog, r.bins[prog], src)
		}
		img, digest := layoutImage(t, src)
		want[prog] = digest
		if prog == "lotse" {
			runInImage(t, img, r.lotse)
		}
	}

	ci, err := os.ReadFile(filepath.Join(repoRoot, ".gitlab-ci.yml"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(r.dir, ".gitlab-ci.yml"), ci)
	writeFile(t, filepath.Join(r.dir, ".gitignore"), []byte("/.gitlab-ci-local/\n"))
	git(t, r.dir, r.gitEnv, "init", "-q")
	git(t, r.dir, r.gitEnv, "remote", "add", "origin", "https://gitlab.example.com/lotse/lotse.git")
	git(t, r.dir, r.gitEnv, "add", ".gitlab-ci.yml", ".gitignore")
	git(t, r.dir, r.gitEnv, "commit", "-qm", "lotse")
	// One component fetch first (see testPipeline); ~latest is 1.0.0.
	writeFile(t, filepath.Join(r.dir, ".fetch.yml"), []byte("stages: [release]\ninclude:\n  - component: $CI_SERVER_FQDN/lotse/gitlab-templates/release@"+componentVersion+"\n"))
	run(t, r.dir, r.env, r.gcl, "--file", ".fetch.yml", "--list")

	repo := r.regHost + "/lotse/lotse"
	code, out := run(t, r.dir, r.env, r.gcl, "--force-shell-executor", "--no-color",
		"--ignore-predefined-vars", "CI_REGISTRY_IMAGE", "--variable", "CI_REGISTRY_IMAGE="+repo,
		"--variable", "CI_COMMIT_TAG="+componentVersion,
		"--variable", "LOTSE_CACHE_DIR="+r.cacheDir,
		"--variable", "COSIGN_PASSWORD=s3cret",
		"--input", "release:signing-key="+r.keyFile,
		"--input", "release:offline=true",
		"release-lotse", "release-lotsed")
	t.Logf("gitlab-ci-local release-lotse release-lotsed (lotse's own pipeline):\n%s", out)
	if code != 0 {
		t.Fatalf("gitlab-ci-local release-lotse release-lotsed: exit %d", code)
	}
	for _, p := range []struct{ prog, repo string }{{"lotse", repo}, {"lotsed", repo + "/lotsed"}} {
		job := "release-" + p.prog
		dotenv := parseDotenv(t, findJobFile(t, r.dir, job, p.prog+".env"))
		if dotenv["LOTSE_DIGEST"] != want[p.prog] || dotenv["LOTSE_IMAGE"] != p.repo+"@"+want[p.prog] {
			t.Fatalf("%s released %v, want %s@%s (the layout's image, unchanged)", job, dotenv, p.repo, want[p.prog])
		}
		if code, out := run(t, r.dir, r.env, r.lotse, "verify", "--offline", "--key", r.pubFile, "--type", "cyclonedx,vuln", p.repo+":"+componentVersion); code != 0 {
			t.Fatalf("lotse verify of %s's own image: exit %d\n%s", p.prog, code, out)
		}
		if err := reportschema.Validate(reportschema.ContainerScanning, findJobFile(t, r.dir, job, "gl-container-scanning-report.json")); err != nil {
			t.Errorf("%s: %v", job, err)
		}
		bom := findJobFile(t, r.dir, job, "gl-sbom-image.cdx.json")
		if err := reportschema.Validate(reportschema.CycloneDX, bom); err != nil {
			t.Errorf("%s: %v", job, err)
		}
		// syft reads the binary's build info: the SBOM names the modules it links.
		if !strings.Contains(string(bom), "pkg:golang/github.com/google/go-containerregistry@") {
			t.Errorf("the SBOM of %s's image does not list go-containerregistry", p.prog)
		}
	}
	regHost := r.regHost

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
			if err != nil || desc.Digest.String() != want["lotse"] {
				t.Errorf("%s: %s is %v (%v), want %s", c.name, ref, desc, err, want["lotse"])
			}
		}
	}
}

// runInImage runs a job script the way GitLab's docker executor would, as
// far as this machine allows without a container engine: in the image's
// flattened file system (chroot, as the image's user 65532), with the
// image's shell, PATH and CA bundle. It needs root (chroot); otherwise it
// only checks the config.
func runInImage(t *testing.T, img v1.Image, lotse string) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" || strings.Join(cf.Config.Entrypoint, " ") != "/usr/local/bin/lotse" {
		t.Errorf("image config: user %q, entrypoint %q", cf.Config.User, cf.Config.Entrypoint)
	}
	for _, k := range []string{"org.opencontainers.image.version", "org.opencontainers.image.revision", "org.opencontainers.image.source"} {
		if cf.Config.Labels[k] == "" && (k != "org.opencontainers.image.revision" || os.Getenv("LOTSE_IMAGE_LAYOUT") != "") {
			t.Errorf("image label %s is missing: %v", k, cf.Config.Labels)
		}
	}
	chroot, err := exec.LookPath("chroot")
	if os.Geteuid() != 0 || err != nil {
		t.Logf("not root or no chroot: the image's shell is not run")
		return
	}
	root := t.TempDir()
	rc := mutate.Extract(img)
	defer rc.Close()
	tar := exec.Command("tar", "-x", "-C", root)
	tar.Stdin = rc
	if out, err := tar.CombinedOutput(); err != nil {
		t.Fatalf("unpack the image: %v\n%s", err, out)
	}
	if _, err := os.Lstat(filepath.Join(root, "busybox", "sh")); err != nil && os.Getenv("LOTSE_IMAGE_LAYOUT") == "" {
		t.Logf("no busybox on this machine, so the image built here has no shell: not run")
		return
	}
	// What the components' job scripts do, with the image's environment:
	// a shell, lotse on PATH, the user's name, a writable /tmp.
	cmd := exec.Command(chroot, "--userspec=65532:65532", root, "/busybox/sh", "-c",
		`cd /tmp && id -un && lotse --version && echo ok > /tmp/job && cat /tmp/job && test -s "$SSL_CERT_FILE"`)
	cmd.Env = cf.Config.Env
	out, err := cmd.CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "/busybox/sh") {
			t.Fatalf("the image has no shell GitLab can run job scripts with: %v\n%s", err, out)
		}
		t.Fatalf("a job script in the image: %v\n%s", err, out)
	}
	if lines := strings.Fields(string(out)); len(lines) < 4 || lines[0] != "nonroot" || lines[1] != "lotse" || lines[len(lines)-1] != "ok" {
		t.Errorf("a job script in the image printed:\n%s", out)
	}
}

// layoutImage is the one image of the OCI layout at dir and its digest.
func layoutImage(t *testing.T, dir string) (v1.Image, string) {
	t.Helper()
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatalf("LOTSE_IMAGE_LAYOUT: %v", err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 1 {
		t.Fatalf("%s: want one image, got %v (%v)", dir, im, err)
	}
	img, err := p.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return img, im.Manifests[0].Digest.String()
}

// buildSelfImage writes the image of prog (lotse or lotsed) as make image
// does: the binary on the empty base, with the system's CA bundle, and for
// lotse busybox as the shell when there is one.
func buildSelfImage(t *testing.T, prog, bin, dir string) {
	t.Helper()
	s, err := imagebuild.Program(prog)
	if err != nil {
		t.Fatal(err)
	}
	if s.Binary, err = os.ReadFile(bin); err != nil {
		t.Fatal(err)
	}
	if s.Arch, err = imagebuild.StaticLinuxArch(s.Binary); err != nil {
		t.Fatalf("%s: %v", bin, err)
	}
	if s.CACerts, err = os.ReadFile("/etc/ssl/certs/ca-certificates.crt"); err != nil {
		t.Skipf("no CA bundle to build lotse's images with: %v", err)
	}
	s.Version, s.Source, s.Created = componentVersion, "https://github.com/lotse/lotse", time.Unix(0, 0)
	if bb, err := exec.LookPath("busybox"); err == nil && prog == "lotse" {
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
