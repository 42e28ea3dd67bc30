package oci

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestResolve(t *testing.T) {
	ctx := context.Background()
	reg := loopback(t)
	a, _ := random.Image(512, 1)
	b, _ := random.Image(512, 1)
	tag, _ := name.NewTag(reg + "/team/app:1.0")
	if err := remote.Write(tag, a); err != nil {
		t.Fatal(err)
	}
	da, _ := a.Digest()
	got, err := Resolve(ctx, tag, Options{})
	if err != nil || got.String() != reg+"/team/app@"+da.String() {
		t.Fatalf("Resolve(%s) = %s, %v; want the digest of the tagged image", tag, got, err)
	}
	// The tag moves: a later resolve follows it, the digest stays put.
	if err := remote.Write(tag, b); err != nil {
		t.Fatal(err)
	}
	db, _ := b.Digest()
	if again, err := Resolve(ctx, tag, Options{}); err != nil || again.DigestStr() != db.String() {
		t.Fatalf("after the move: %s, %v", again, err)
	}
	if same, err := Resolve(ctx, got, Options{}); err != nil || same != got {
		t.Fatalf("Resolve(digest) = %s, %v", same, err)
	}
	missing, _ := name.NewTag(reg + "/team/app:nope")
	if _, err := Resolve(ctx, missing, Options{}); err == nil || !strings.Contains(err.Error(), "not found in the registry") {
		t.Fatalf("missing tag: %v", err)
	}
}
