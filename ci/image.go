package ci

import (
	"context"
	"os"

	"github.com/lotse/lotse/internal/oci"
)

// loaded is an image opened for analysis, copied to disk once when it came
// from a registry.
type loaded struct {
	src  oci.Source
	art  *oci.Artifact
	opts oci.Options
	dir  string // temporary directory: the local copy and unpacked layers
}

func (l *loaded) close() { os.RemoveAll(l.dir) }

// load parses ref, opens the image and makes a local copy of registry images,
// so that the SBOM, the scan and the publish step read the registry once.
func (a *app) load(ctx context.Context, ref string, rf *registryFlags) (*loaded, error) {
	src, err := oci.ParseSource(ref, rf.insecure)
	if err != nil {
		return nil, &UsageError{Err: err}
	}
	var hosts []string
	if src.Kind == oci.Registry {
		hosts = append(hosts, src.Ref.Context().RegistryStr())
	}
	opts, err := a.ociOptions(rf, hosts...)
	if err != nil {
		return nil, err
	}
	art, err := oci.Open(ctx, src, opts)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "lotse-image")
	if err != nil {
		return nil, err
	}
	l := &loaded{src: src, opts: opts, dir: dir}
	if l.art, err = oci.Localize(src, art, dir+"/layout"); err != nil {
		l.close()
		return nil, err
	}
	return l, nil
}
