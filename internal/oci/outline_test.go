package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/lotse/lotse/internal/oci/ocitest"
)

type tarEntry struct {
	hdr  tar.Header
	data string
}

func tarBytes(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := e.hdr
		h.Size = int64(len(e.data))
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// outlineLayer is a layer with what an outline must keep: long names (PAX
// and GNU records), a symlink, a hard link, a directory, /etc files (kept)
// and a large /etc file and binaries (left out), and a file a later entry
// replaces.
func outlineLayer(t testing.TB) []byte {
	long := "usr/lib/" + strings.Repeat("very-long-directory-name/", 6) + "lib.so"
	return tarBytes(t,
		tarEntry{hdr: tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}},
		tarEntry{hdr: tar.Header{Name: "etc/os-release", Typeflag: tar.TypeReg}, data: "ID=debian\nVERSION_ID=\"12\"\n"},
		tarEntry{hdr: tar.Header{Name: "etc/big.conf", Typeflag: tar.TypeReg}, data: strings.Repeat("x", keepContentMax+1)},
		tarEntry{hdr: tar.Header{Name: "usr/bin/app", Typeflag: tar.TypeReg, Mode: 0o755}, data: "\x7fELF" + strings.Repeat("\x01", 5000)},
		tarEntry{hdr: tar.Header{Name: long, Typeflag: tar.TypeReg, PAXRecords: map[string]string{"user.note": "ü"}}, data: "shared object"},
		tarEntry{hdr: tar.Header{Name: "usr/" + strings.Repeat("g", 120), Typeflag: tar.TypeReg, Format: tar.FormatGNU}, data: "gnu long name"},
		tarEntry{hdr: tar.Header{Name: "usr/bin/app-link", Typeflag: tar.TypeSymlink, Linkname: "app"}},
		tarEntry{hdr: tar.Header{Name: "usr/bin/app-hard", Typeflag: tar.TypeLink, Linkname: "usr/bin/app"}},
		tarEntry{hdr: tar.Header{Name: "etc/hostname", Typeflag: tar.TypeReg}, data: "old"},
		tarEntry{hdr: tar.Header{Name: "etc/hostname", Typeflag: tar.TypeReg}, data: strings.Repeat("n", keepContentMax+1)},
		tarEntry{hdr: tar.Header{Name: "empty", Typeflag: tar.TypeReg}},
	)
}

// zeroedContents is layer with every regular file's content that an
// outline leaves out turned to zeros, byte for byte.
func zeroedContents(t testing.TB, layer []byte) []byte {
	t.Helper()
	out := bytes.Clone(layer)
	pr := &outlineReader{r: bytes.NewReader(layer), size: int64(len(layer))}
	tr := tar.NewReader(pr)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag == tar.TypeReg && !keepContent(path.Clean("/"+hdr.Name), hdr.Size) {
			clear(out[pr.pos : pr.pos+hdr.Size])
		}
	}
}

// written writes the encoded outline out and returns the file's bytes
// and the outline.
func written(t testing.TB, enc []byte) ([]byte, *outline) {
	t.Helper()
	name := filepath.Join(t.TempDir(), "outline")
	o, err := writeOutline(bytes.NewReader(enc), name)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b, o
}

// Written out, an outline is the layer with the contents it leaves out
// zeroed: every header, name record, link and size where the layer has
// them, and the /etc files syft reads kept.
func TestOutlineIsTheLayerWithoutContents(t *testing.T) {
	layer := outlineLayer(t)
	enc, err := outlineOf(bytes.NewReader(layer), int64(len(layer)))
	if err != nil {
		t.Fatal(err)
	}
	if len(enc) > len(layer)/3 {
		t.Errorf("outline is %d bytes of a %d-byte layer", len(enc), len(layer))
	}
	got, o := written(t, enc)
	if want := zeroedContents(t, layer); !bytes.Equal(got, want) {
		t.Fatalf("written outline differs from the layer with contents zeroed")
	}
	for p, want := range map[string]bool{
		"/etc/os-release": true,
		"/etc/big.conf":   false, // too large
		"/etc/hostname":   false, // the later, large entry replaced the kept one
		"/usr/bin/app":    false,
	} {
		if o.kept[p] != want {
			t.Errorf("kept[%s] = %v, want %v", p, o.kept[p], want)
		}
	}
	// A tar reader walks it as it walks the layer.
	tr := tar.NewReader(bytes.NewReader(got))
	var names []string
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
		if hdr.Name == "etc/os-release" {
			if b, _ := io.ReadAll(tr); !strings.HasPrefix(string(b), "ID=debian") {
				t.Errorf("os-release in the outline: %q", b)
			}
		}
	}
	if len(names) != 11 {
		t.Errorf("outline holds %d entries, want 11: %q", len(names), names)
	}
}

// Tars of every format archive/tar writes, with contents of sizes around
// the block size and the read window: the written outline is always the
// tar with the contents it leaves out zeroed.
func TestOutlineOfManyTars(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []int{0, 1, 511, 512, 513, outlineWindow - 1, outlineWindow, outlineWindow + 1, 3 * outlineWindow}
	formats := []tar.Format{tar.FormatUnknown, tar.FormatUSTAR, tar.FormatPAX, tar.FormatGNU}
	for i := range 200 {
		var entries []tarEntry
		for j := range 1 + rng.IntN(20) {
			dir := []string{"etc/", "usr/bin/", "usr/share/doc/" + strings.Repeat("d", rng.IntN(150)) + "/"}[rng.IntN(3)]
			e := tarEntry{hdr: tar.Header{Name: fmt.Sprintf("%sf%d", dir, j), Typeflag: tar.TypeReg, Format: formats[rng.IntN(len(formats))]}}
			if e.hdr.Format == tar.FormatUSTAR && len(e.hdr.Name) > 100 {
				e.hdr.Format = tar.FormatPAX
			}
			switch rng.IntN(6) {
			case 0:
				e.hdr.Typeflag, e.hdr.Linkname = tar.TypeSymlink, "target"
			case 1:
				e.hdr.Typeflag, e.hdr.Name = tar.TypeDir, e.hdr.Name+"/"
			default:
				b := make([]byte, sizes[rng.IntN(len(sizes))])
				for k := range b {
					b[k] = byte(1 + rng.IntN(255))
				}
				e.data = string(b)
			}
			entries = append(entries, e)
		}
		if i == 0 { // kept contents over several of the builder's chunks
			for j := range 40 {
				entries = append(entries, tarEntry{hdr: tar.Header{Name: fmt.Sprintf("etc/conf%d", j), Typeflag: tar.TypeReg}, data: strings.Repeat(string(rune('a'+j%26)), keepContentMax-j)})
			}
		}
		layer := tarBytes(t, entries...)
		enc, err := outlineOf(bytes.NewReader(layer), int64(len(layer)))
		if err != nil {
			t.Fatalf("tar %d: %v", i, err)
		}
		if got, _ := written(t, enc); !bytes.Equal(got, zeroedContents(t, layer)) {
			t.Fatalf("tar %d: written outline differs from the tar with contents zeroed", i)
		}
	}
}

// An encoded outline from the cache is checked: truncations, extents out
// of order or past the layer, and trailing bytes are refused, and leave no
// file behind.
func TestWriteOutlineRefusesMalformed(t *testing.T) {
	layer := outlineLayer(t)
	enc, err := outlineOf(bytes.NewReader(layer), int64(len(layer)))
	if err != nil {
		t.Fatal(err)
	}
	// encode encodes an outline of size bytes with these extents.
	encode := func(size int64, offs ...int64) []byte {
		var b outlineBuilder
		for _, off := range offs {
			b.add(off, []byte("x"))
		}
		return b.encode(size, map[string]bool{"/etc/x": true})
	}
	if _, o := written(t, encode(2048, 0, 512)); o.size != 2048 || !o.kept["/etc/x"] {
		t.Fatalf("a valid outline read back as %+v", o)
	}
	cases := map[string][]byte{
		"empty":                nil,
		"magic only":           []byte(outlineMagic),
		"cut in half":          enc[:len(enc)/2],
		"cut short":            enc[:len(enc)-1],
		"trailing byte":        append(bytes.Clone(enc), 0),
		"extent past end":      encode(512, 0, 512),
		"extents out of order": encode(2048, 512, 0),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "outline")
			if _, err := writeOutline(bytes.NewReader(b), path); err == nil {
				t.Fatal("accepted")
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Errorf("left a file: %v", err)
			}
		})
	}
}

func FuzzWriteOutline(f *testing.F) {
	layer := outlineLayer(f)
	enc, err := outlineOf(bytes.NewReader(layer), int64(len(layer)))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc)
	f.Add([]byte(outlineMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), "outline")
		o, err := writeOutline(bytes.NewReader(b), path)
		if err != nil {
			return
		}
		fi, err := os.Stat(path)
		if err != nil || fi.Size() != o.size {
			t.Fatalf("accepted outline of %d bytes wrote %v, %v", o.size, fi, err)
		}
	})
}

// countingLayer counts the reads of a layer's compressed bytes.
type countingLayer struct {
	v1.Layer
	reads *atomic.Int32
}

func (l countingLayer) Compressed() (io.ReadCloser, error) {
	l.reads.Add(1)
	return l.Layer.Compressed()
}

func readAll(t *testing.T, rc io.ReadCloser) []byte {
	t.Helper()
	defer rc.Close()
	return must(io.ReadAll(rc))
}

func unpackedPath(u *Unpacked, i int) string { return u.layers[i].(*unpackedLayer).path }

// A layer read and checked before, whose reader needs only its outline, is
// put in place as its outline without reading the registry's blob; its
// contents are read (and checked) when first asked for, and a directory
// linked before that keeps the outline.
func TestUnpackOutlines(t *testing.T) {
	ctx := context.Background()
	base := outlineLayer(t)
	l1 := must(tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(base)), nil }))
	l2 := must(tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(tarOf(t, "app/main", "top"))), nil
	}))
	_, img := writeLayout(t, must(mutate.AppendLayers(empty.Image, l1, l2)))
	known := ocitest.NewLayers()
	outlines := ocitest.NewLayers()

	// Read in full the first time; both outlines are kept.
	u, err := Unpack(ctx, img, t.TempDir(), KnownDiffIDs(known), WithOutlines(outlines.Need(true, true)))
	if err != nil {
		t.Fatal(err)
	}
	u.WaitOutlines()
	if outlines.Kept() != 2 {
		t.Fatalf("%d outlines kept, want 2", outlines.Kept())
	}
	if got := must(os.ReadFile(unpackedPath(u, 0))); !bytes.Equal(got, base) {
		t.Fatal("first unpack did not read the layer in full")
	}

	// The second time the base layer is an outline, not read.
	var reads atomic.Int32
	layers := must(img.Layers())
	counted := &layersOverride{Image: img, layers: []v1.Layer{countingLayer{layers[0], &reads}, layers[1]}}
	u, err = Unpack(ctx, counted, t.TempDir(), KnownDiffIDs(known), WithOutlines(outlines.Need(true, false)))
	if err != nil {
		t.Fatal(err)
	}
	if n := reads.Load(); n != 0 || u.Outlines() != 1 {
		t.Errorf("the outlined layer's blob was read %d times; %d layers outlined, want 1", n, u.Outlines())
	}
	if got, want := must(os.ReadFile(unpackedPath(u, 0))), zeroedContents(t, base); !bytes.Equal(got, want) {
		t.Error("the outlined layer's file is not its outline")
	}
	linkDir := t.TempDir()
	linked := u.LinkLayers(linkDir)
	diffIDs := must(img.ConfigFile()).RootFS.DiffIDs
	kept, ok := linked.Outlined(diffIDs[0].String())
	if !ok || !kept("/etc/os-release") || kept("/usr/bin/app") {
		t.Fatalf("Linked.Outlined(base) = %v; want the outline, keeping /etc/os-release and not /usr/bin/app", ok)
	}
	if _, ok := linked.Outlined(diffIDs[1].String()); ok {
		t.Error("the top layer, read in full, is linked as an outline")
	}

	// trivy reads the layer: it is read from the blob and checked first.
	if got := readAll(t, must(must(u.LayerByDiffID(diffIDs[0])).Uncompressed())); !bytes.Equal(got, base) {
		t.Error("Uncompressed of an outlined layer is not the layer")
	}
	if n := reads.Load(); n != 1 {
		t.Errorf("the blob was read %d times to fill the layer, want 1", n)
	}
	// What was linked before stays the outline; a new link is the layer.
	linkedFile := filepath.Join(linkDir, filepath.Base(unpackedPath(u, 0)))
	if got := must(os.ReadFile(linkedFile)); !bytes.Equal(got, zeroedContents(t, base)) {
		t.Error("the file linked before the layer was filled changed")
	}
	if _, ok := u.LinkLayers(t.TempDir()).Outlined(diffIDs[0].String()); ok {
		t.Error("a filled layer is linked as an outline")
	}
	if err := u.Fill(ctx); err != nil || reads.Load() != 1 {
		t.Errorf("Fill after the layer was filled: %v, %d reads", err, reads.Load())
	}
}

// trivy's workers, the SBOM's fill and a new link may ask for an outlined
// layer at once: the layer is read once, and every reader gets it whole.
func TestOutlinedLayerFilledOnceAtOnce(t *testing.T) {
	ctx := context.Background()
	base := outlineLayer(t)
	l1 := must(tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(base)), nil }))
	_, img := writeLayout(t, must(mutate.AppendLayers(empty.Image, l1)))
	known := ocitest.NewLayers()
	outlines := ocitest.NewLayers()
	first := must(Unpack(ctx, img, t.TempDir(), KnownDiffIDs(known), WithOutlines(outlines.Need(true))))
	first.WaitOutlines()
	var reads atomic.Int32
	counted := &layersOverride{Image: img, layers: []v1.Layer{countingLayer{must(img.Layers())[0], &reads}}}
	u := must(Unpack(ctx, counted, t.TempDir(), KnownDiffIDs(known), WithOutlines(outlines.Need(true))))
	diffID := must(img.ConfigFile()).RootFS.DiffIDs[0]
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			switch i % 3 {
			case 0:
				if got := readAll(t, must(must(u.LayerByDiffID(diffID)).Uncompressed())); !bytes.Equal(got, base) {
					t.Error("a reader got another layer")
				}
			case 1:
				if err := u.Fill(ctx); err != nil {
					t.Error(err)
				}
			default:
				u.LinkLayers(t.TempDir())
			}
		})
	}
	wg.Wait()
	if n := reads.Load(); n != 1 {
		t.Errorf("the layer was read %d times, want 1", n)
	}
}

// Without a diff ID seen for the blob's digest, or with another one, a layer
// is read and checked in full although an outline is kept: the outline may
// be of another layer the image only claims to hold.
func TestUnpackOutlinesNeedTheCheckedDiffID(t *testing.T) {
	ctx := context.Background()
	base := outlineLayer(t)
	l1 := must(tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(base)), nil }))
	_, img := writeLayout(t, must(mutate.AppendLayers(empty.Image, l1)))
	diffID := must(img.ConfigFile()).RootFS.DiffIDs[0]
	digest := must(must(img.Layers())[0].Digest())
	outlines := ocitest.NewLayers()
	outlines.Keep(diffID, must(outlineOf(bytes.NewReader(base), int64(len(base)))))
	other := ocitest.NewLayers()
	other.Remember(digest, v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0", 64)})
	for name, known := range map[string]*ocitest.Layers{
		"no diff ID seen":  ocitest.NewLayers(),
		"another diff ID":  other,
		"no known diff ID": nil,
	} {
		t.Run(name, func(t *testing.T) {
			opts := []UnpackOption{WithOutlines(outlines.Need(true))}
			if known != nil {
				opts = append(opts, KnownDiffIDs(known))
			}
			u, err := Unpack(ctx, img, t.TempDir(), opts...)
			if err != nil {
				t.Fatal(err)
			}
			if got := must(os.ReadFile(unpackedPath(u, 0))); !bytes.Equal(got, base) {
				t.Error("layer outlined")
			}
		})
	}
}

// layersOverride serves other layers objects for an image's layers.
type layersOverride struct {
	v1.Image
	layers []v1.Layer
}

func (o *layersOverride) Layers() ([]v1.Layer, error) { return o.layers, nil }
