package oci

import (
	"context"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Resolve returns the digest ref names in its registry: ref itself when it
// names a digest, else the digest of the manifest (or index) its tag points
// at now. Commands that read and then write attestations resolve once, so
// that both concern the same manifest even if the tag moves meanwhile.
func Resolve(ctx context.Context, ref name.Reference, opts Options) (name.Digest, error) {
	if d, ok := ref.(name.Digest); ok {
		return d, nil
	}
	desc, err := remote.Head(ref, opts.remote(ctx)...)
	if err != nil {
		return name.Digest{}, explainRemote(ref.String(), err)
	}
	return ref.Context().Digest(desc.Digest.String()), nil
}
