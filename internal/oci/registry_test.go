package oci

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func gzipped(t *testing.T, b []byte, modTime time.Time) []byte {
	t.Helper()
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.ModTime = modTime // in gzip's header: other bytes, as many, the same content
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// With RegistryBlobs, Unpack leaves the compressed digest to
// go-containerregistry's remote reader. A registry that serves, for a
// layer's digest, other bytes as long as the blob that decompress to the
// very layer the config claims (only the compressed digest tells them
// apart) fails the unpack, and nothing is put in place; the blob it should
// serve unpacks.
func TestRegistryBlobsChecked(t *testing.T) {
	ctx := context.Background()
	layerTar := tarOf(t, "app/main", "the application")
	good := gzipped(t, layerTar, time.Time{})
	other := gzipped(t, layerTar, time.Unix(1e9, 0))
	if len(other) != len(good) || bytes.Equal(other, good) {
		t.Fatal("the other blob is not as long and different")
	}
	l := must(tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(good)), nil }))
	digest := must(l.Digest())
	img := must(mutate.AppendLayers(empty.Image, l))

	var swap bool
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if swap && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+digest.String()) {
			w.Write(other) //nolint:errcheck // the client reads what it gets
			return
		}
		inner.ServeHTTP(w, r)
	}))
	defer srv.Close()
	ref := must(name.NewTag(strings.TrimPrefix(srv.URL, "http://") + "/app:1"))
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}

	for _, swapped := range []bool{false, true} {
		swap = swapped
		read := must(remote.Image(ref))
		dir := t.TempDir()
		u, err := Unpack(ctx, read, dir, RegistryBlobs())
		if !swapped {
			if err != nil {
				t.Fatalf("the registry's own blob: %v", err)
			}
			if got := must(os.ReadFile(unpackedPath(u, 0))); !bytes.Equal(got, layerTar) {
				t.Error("the unpacked layer is not the layer")
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "layer 1 ("+digest.String()+")") || !strings.Contains(err.Error(), "checksum") {
			t.Fatalf("other bytes for the layer's digest: %v", err)
		}
		if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) > 0 {
			t.Errorf("files left in place: %v", left)
		}
	}
}
