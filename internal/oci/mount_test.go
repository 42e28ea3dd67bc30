package oci

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// projectRegistry is the in-memory registry with blobs kept per repository,
// as Harbor keeps them per project, and with cross-repository mounts, which
// the in-memory registry lacks: a blob is in a repository once pushed or
// mounted there, and POST .../blobs/uploads/?mount=D&from=R answers 201 when
// D is in R.
type projectRegistry struct {
	inner http.Handler
	mu    sync.Mutex
	blobs map[string]bool // repository + "@" + digest
	// what happened, as "repository digest" (mounted also names the source)
	mounted, uploaded []string
}

func newProjectRegistry(t *testing.T) (*projectRegistry, string) {
	r := &projectRegistry{inner: registry.New(registry.Logger(log.New(io.Discard, "", 0))), blobs: map[string]bool{}}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return r, strings.TrimPrefix(srv.URL, "http://")
}

func (r *projectRegistry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	repo, rest, ok := strings.Cut(strings.TrimPrefix(req.URL.Path, "/v2/"), "/blobs/")
	if !ok {
		r.inner.ServeHTTP(w, req)
		return
	}
	q := req.URL.Query()
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case req.Method == http.MethodHead && !strings.HasPrefix(rest, "uploads"):
		if !r.blobs[repo+"@"+rest] {
			w.WriteHeader(http.StatusNotFound)
			return
		}
	case req.Method == http.MethodPost && q.Get("mount") != "":
		d, from := q.Get("mount"), q.Get("from")
		if r.blobs[from+"@"+d] {
			r.blobs[repo+"@"+d] = true
			r.mounted = append(r.mounted, repo+" "+d+" from "+from)
			w.Header().Set("Location", "/v2/"+repo+"/blobs/"+d)
			w.Header().Set("Docker-Content-Digest", d)
			w.WriteHeader(http.StatusCreated)
			return
		}
	case req.Method == http.MethodPut && q.Get("digest") != "":
		r.blobs[repo+"@"+q.Get("digest")] = true
		r.uploaded = append(r.uploaded, repo+" "+q.Get("digest"))
	}
	r.inner.ServeHTTP(w, req)
}

// blobDigests lists the layer and config digests of img.
func blobDigests(t *testing.T, img v1.Image) []string {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	out := []string{m.Config.Digest.String()}
	for _, l := range m.Layers {
		out = append(out, l.Digest.String())
	}
	return out
}

// Publishing a registry image mounts its blobs from the source repository
// instead of uploading them again: the image as Open returns it (what
// lotse release publishes within one registry) and a local copy of it
// (what it publishes to another registry, where the mount is declined).
func TestPushMountsFromSource(t *testing.T) {
	ctx := context.Background()
	amd, _ := random.Image(512, 2)
	arm, _ := random.Image(512, 2)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}})
	for _, tc := range []struct {
		name  string
		push  func(name.Reference) error
		blobs []string
	}{
		{"image", func(r name.Reference) error { return remote.Write(r, amd) }, blobDigests(t, amd)},
		{"index", func(r name.Reference) error { return remote.WriteIndex(r, idx) }, append(blobDigests(t, amd), blobDigests(t, arm)...)},
	} {
		for _, local := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/local copy %t", tc.name, local), func(t *testing.T) {
				reg, host := newProjectRegistry(t)
				src, _ := name.NewTag(host + "/ci/app:1")
				if err := tc.push(src); err != nil {
					t.Fatal(err)
				}
				reg.uploaded = nil
				s, _ := ParseSource(src.String(), false)
				art, err := Open(ctx, s, Options{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}})
				if err != nil {
					t.Fatal(err)
				}
				if local {
					if art, err = Spool(s, art, filepath.Join(t.TempDir(), "copy")); err != nil {
						t.Fatal(err)
					}
				}
				dst, _ := ParseRepository(host+"/prod/app", false)
				d, err := Push(ctx, art, dst, Options{})
				if err != nil {
					t.Fatal(err)
				}
				if len(reg.uploaded) != 0 {
					t.Errorf("uploaded %q, want every blob mounted", reg.uploaded)
				}
				var want []string
				for _, b := range tc.blobs {
					want = append(want, "prod/app "+b+" from ci/app")
				}
				slices.Sort(want)
				got := slices.Sorted(slices.Values(reg.mounted))
				if !slices.Equal(got, want) {
					t.Errorf("mounted:\n got %q\nwant %q", got, want)
				}
				if ok, err := Exists(ctx, d, Options{}); !ok || err != nil {
					t.Errorf("%s missing after Push: %v", d, err)
				}
			})
		}
	}
}
