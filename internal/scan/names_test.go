package scan

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/lotse/lotse/test/fixture"
)

func TestRegistryNames(t *testing.T) {
	d := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
	for _, tc := range []struct {
		ref           string
		tags, digests []string
	}{
		{"alpine:3.20", []string{"alpine:3.20"}, []string{"alpine@" + d.String()}},
		{"docker.io/library/alpine", []string{"alpine:latest"}, []string{"alpine@" + d.String()}},
		{"bitnami/nginx:1.27", []string{"bitnami/nginx:1.27"}, []string{"bitnami/nginx@" + d.String()}},
		{"harbor.example.com:8443/team/app:1.2.3", []string{"harbor.example.com:8443/team/app:1.2.3"}, []string{"harbor.example.com:8443/team/app@" + d.String()}},
		{"harbor.example.com/library/app:1", []string{"harbor.example.com/library/app:1"}, []string{"harbor.example.com/library/app@" + d.String()}},
		{"harbor.example.com/team/app@" + d.String(), []string{}, []string{"harbor.example.com/team/app@" + d.String()}},
	} {
		ref, err := name.ParseReference(tc.ref)
		if err != nil {
			t.Fatal(err)
		}
		tags, digests := RegistryNames(ref, d)
		if !slices.Equal(tags, tc.tags) || !slices.Equal(digests, tc.digests) {
			t.Errorf("%s: tags %q digests %q, want %q %q", tc.ref, tags, digests, tc.tags, tc.digests)
		}
	}
}

// A report of an image from a registry names and identifies it as `trivy
// image` does: its tags and digests in its repository, the reference, the
// artifact ID (the image ID in that repository) and so each finding's
// fingerprint. Before, lotse's reports identified the image by its ID
// alone, and no finding's fingerprint was trivy's.
func TestReportNamesTheImageAsTrivy(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	img, err := fixture.JavaImage()
	if err != nil {
		t.Fatal(err)
	}
	refStr := strings.TrimPrefix(srv.URL, "http://") + "/team/app:1.0"
	ref, err := name.ParseReference(refStr)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(ref)
	if err != nil {
		t.Fatal(err)
	}

	want := runTrivyImage(t, "--image-src", "remote", "--insecure", refStr)

	s := openScanner(t)
	tags, digests := RegistryNames(ref, desc.Digest)
	res, err := s.Image(context.Background(), img, refStr, Options{RepoTags: tags, RepoDigests: digests})
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := res.Write(context.Background(), &got, FormatJSON); err != nil {
		t.Fatal(err)
	}
	w, g := reportNames(t, want), reportNames(t, got.Bytes())
	if len(w.Fingerprints) == 0 {
		t.Fatal("trivy found nothing: the test would compare no fingerprints")
	}
	if g.ArtifactID != w.ArtifactID || !slices.Equal(g.Metadata.RepoTags, w.Metadata.RepoTags) ||
		!slices.Equal(g.Metadata.RepoDigests, w.Metadata.RepoDigests) || g.Metadata.Reference != w.Metadata.Reference {
		t.Errorf("lotse names the image\n%+v\ntrivy\n%+v", g, w)
	}
	if !slices.Equal(g.Fingerprints, w.Fingerprints) {
		t.Errorf("fingerprints\n got %q\nwant %q", g.Fingerprints, w.Fingerprints)
	}
}

type namesOfReport struct {
	ArtifactID string
	Metadata   struct {
		RepoTags, RepoDigests []string
		Reference             string
	}
	Fingerprints []string
}

func reportNames(t *testing.T, report []byte) namesOfReport {
	t.Helper()
	var r struct {
		namesOfReport
		Results []struct {
			Vulnerabilities []struct{ Fingerprint string }
		}
	}
	if err := json.Unmarshal(report, &r); err != nil {
		t.Fatal(err)
	}
	n := r.namesOfReport
	for _, res := range r.Results {
		for _, v := range res.Vulnerabilities {
			n.Fingerprints = append(n.Fingerprints, v.Fingerprint)
		}
	}
	slices.Sort(n.Fingerprints)
	return n
}
