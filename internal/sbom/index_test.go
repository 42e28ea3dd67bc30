package sbom

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	stfile "github.com/anchore/stereoscope/pkg/file"
	"github.com/anchore/stereoscope/pkg/filetree"
	"github.com/anchore/stereoscope/pkg/filetree/filenode"
	"github.com/anchore/stereoscope/pkg/image"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/lotse/lotse/internal/oci"
	"github.com/lotse/lotse/test/fixture"
)

// entry is one tar entry of a made-up layer.
type entry struct {
	typ  byte
	name string
	link string
	data []byte
	mode int64
}

// rawLayer is a layer of exactly these entries, in this order (no parent
// directories added), gzip-compressed or not.
func rawLayer(t testing.TB, gz bool, entries ...entry) v1.Layer {
	t.Helper()
	b, err := rawTar(entries...)
	if err != nil {
		t.Fatal(err)
	}
	opts := []tarball.LayerOption{}
	if gz {
		opts = append(opts, tarball.WithCompressedCaching)
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func rawTar(entries ...entry) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	when := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i, e := range entries {
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		h := &tar.Header{Typeflag: e.typ, Name: e.name, Linkname: e.link, Mode: mode, ModTime: when.Add(time.Duration(i) * time.Second), Uid: i % 3, Gid: i % 5}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// awkwardImage holds what a layer index can get wrong: hard links to a
// file, to a symlink, to a directory, to nothing, to a link that was not
// adopted, into a lower layer, and one whose adoption conflicts with the
// tree; symlinks of every kind; long and unusual names; a path written
// twice; files without parent entries; special files; whiteouts and an
// opaque directory; and contents of many MIME types.
func awkwardImage(t testing.TB, gz bool) v1.Image {
	t.Helper()
	elf, err := fixture.UnknownELF()
	if err != nil {
		t.Fatal(err)
	}
	zip, err := fixture.Zip(fixture.File{Path: "META-INF/MANIFEST.MF", Data: []byte("Manifest-Version: 1.0\n")})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("very-long-directory-name/", 8) + "file.txt"
	lower := rawLayer(t, gz,
		entry{typ: tar.TypeDir, name: "etc/", mode: 0o755},
		entry{typ: tar.TypeReg, name: "etc/os-release", data: []byte("ID=debian\nVERSION_ID=\"12\"\n")},
		entry{typ: tar.TypeReg, name: "bin/tool", data: elf, mode: 0o4755},
		entry{typ: tar.TypeReg, name: "usr/lib/x.jar", data: zip},
		entry{typ: tar.TypeReg, name: "usr/lib/data.json", data: []byte(`{"a": [1, 2, 3]}`)},
		entry{typ: tar.TypeReg, name: "usr/share/doc/script.sh", data: []byte("#!/bin/sh\necho hi\n"), mode: 0o755},
		entry{typ: tar.TypeReg, name: "usr/share/big.bin", data: bytes.Repeat([]byte{0, 1, 2, 3, 0xff}, 5000)},
		entry{typ: tar.TypeReg, name: "empty"},
		entry{typ: tar.TypeSymlink, name: "bin/sh", link: "tool"},
		entry{typ: tar.TypeSymlink, name: "lib", link: "/usr/lib"},
		entry{typ: tar.TypeSymlink, name: "dead", link: "/nowhere"},
		entry{typ: tar.TypeLink, name: "bin/tool2", link: "bin/tool"},
		entry{typ: tar.TypeLink, name: "via-symlink", link: "bin/sh"},
		entry{typ: tar.TypeLink, name: "to-dir", link: "etc"},
		entry{typ: tar.TypeLink, name: "to-nothing", link: "nope"},
		entry{typ: tar.TypeLink, name: "to-unadopted", link: "to-nothing"},
		entry{typ: tar.TypeLink, name: "through-lib", link: "lib/x.jar"},
		entry{typ: tar.TypeLink, name: "twice", link: "nope"},
		entry{typ: tar.TypeLink, name: "twice", link: "bin/tool"}, // adopted, it would replace a hard link
		entry{typ: tar.TypeReg, name: long, data: []byte("long\n")},
		entry{typ: tar.TypeReg, name: "ünïcode näme", data: []byte("u\n")},
		entry{typ: tar.TypeReg, name: "dup", data: []byte("first\n")},
		entry{typ: tar.TypeReg, name: "dup", data: []byte("second, longer\n")},
		entry{typ: tar.TypeReg, name: "implicit/deep/file", data: []byte("deep\n")},
		entry{typ: tar.TypeFifo, name: "run/fifo"},
		entry{typ: tar.TypeChar, name: "dev/null"},
		entry{typ: tar.TypeReg, name: "./dot/relative", data: []byte("dot\n")},
	)
	upper := rawLayer(t, gz,
		entry{typ: tar.TypeReg, name: "etc/.wh.os-release"},
		entry{typ: tar.TypeDir, name: "usr/lib/", mode: 0o755},
		entry{typ: tar.TypeReg, name: "usr/lib/.wh..wh..opq"},
		entry{typ: tar.TypeReg, name: "usr/lib/new.txt", data: []byte("new\n")},
		entry{typ: tar.TypeReg, name: "bin/tool", data: []byte("#!/bin/sh\nexec true\n"), mode: 0o755},
		entry{typ: tar.TypeLink, name: "bin/tool3", link: "bin/tool"},
		entry{typ: tar.TypeLink, name: "into-lower", link: "usr/share/big.bin"},
		entry{typ: tar.TypeReg, name: ".wh.dead"},
	)
	img, err := fixture.Image(lower, upper)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// lowestWhiteoutsImage is an image whose lowest layer carries whiteouts,
// which its squash drops (a lowest layer without any is its own squash);
// with asParent, its only whiteout is a directory the tree adds as the
// parent of a file.
func lowestWhiteoutsImage(t testing.TB, asParent bool) v1.Image {
	t.Helper()
	lowest := rawLayer(t, true,
		entry{typ: tar.TypeReg, name: "etc/os-release", data: []byte("ID=debian\n")},
		entry{typ: tar.TypeReg, name: "etc/.wh.gone"},
		entry{typ: tar.TypeReg, name: "usr/.wh..wh..opq"},
		entry{typ: tar.TypeReg, name: "usr/bin/tool", data: []byte("#!/bin/sh\n")},
	)
	if asParent {
		lowest = rawLayer(t, true,
			entry{typ: tar.TypeReg, name: "etc/os-release", data: []byte("ID=debian\n")},
			entry{typ: tar.TypeReg, name: "srv/.wh.dir/file", data: []byte("x\n")},
		)
	}
	upper := rawLayer(t, true, entry{typ: tar.TypeReg, name: "srv/app", data: []byte("app\n")})
	img, err := fixture.Image(lowest, upper)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// stereoscopeRead is stereoscope's own Read of img.
func stereoscopeRead(t testing.TB, img v1.Image) (*image.Image, error) {
	t.Helper()
	si := image.New(img, stfile.NewTempDirGenerator("lotse-test"), t.TempDir())
	t.Cleanup(func() { si.Cleanup() }) //nolint:errcheck // temporary
	return si, si.Read(context.Background())
}

// lotseRead reads img as Generate does: with followed, from oci.Unpack
// following each layer as it writes it; without, from the layers' files.
// Every layer's squashed tree is read.
func lotseRead(t testing.TB, img v1.Image, followed bool) (*image.Image, error) {
	t.Helper()
	return lotseReadSquashed(t, img, followed, func(int) bool { return true })
}

// lotseReadSquashed is lotseRead where syft reads the squashed trees of the
// layers reads names (the others are merged into the next one's), and
// then every layer's squashed tree is asked for (squashedAgain).
func lotseReadSquashed(t testing.TB, img v1.Image, followed bool, reads func(int) bool) (*image.Image, error) {
	t.Helper()
	c := &Cataloger{}
	src := img
	dir := t.TempDir()
	if followed {
		u, err := oci.Unpack(context.Background(), img, filepath.Join(dir, "layers"), oci.Follow(c.FollowLayer))
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(dir, "linked")
		src = u.LinkLayers(dir)
	}
	si := image.New(src, stfile.NewTempDirGenerator("lotse-test"), dir)
	return si, readSquashed(t, c, si, src, dir, reads)
}

// readSquashed is c.readImage of img into si, the top layer's squashed
// tree built, and then every layer's asked for (the one under the top
// layer's too, which the top one may have been merged onto).
func readSquashed(t testing.TB, c *Cataloger, si *image.Image, img v1.Image, dir string, reads func(int) bool) error {
	t.Helper()
	top, release, err := c.readImage(context.Background(), si, img, dir, reads)
	t.Cleanup(func() { si.Cleanup(); release() }) //nolint:errcheck // temporary
	if err != nil {
		return err
	}
	if err := top(); err != nil {
		return err
	}
	topSearch(si)
	for i := range si.Layers {
		if err := squashedAgain(si.Layers, i, si.FileCatalog); err != nil {
			return err
		}
	}
	return nil
}

// describe is everything syft can read of an image's index, by path: each
// layer's tree and squashed tree (every node, with its file's metadata,
// contents and layer), each searcher's answers, and the image's metadata.
func describe(t testing.TB, si *image.Image) string {
	t.Helper()
	var b strings.Builder
	cat := si.FileCatalog
	md := si.Metadata
	fmt.Fprintf(&b, "image %s size=%d media=%s os=%s arch=%s variant=%s config=%d manifest=%d tags=%v\n",
		md.ID, md.Size, md.MediaType, md.OS, md.Architecture, md.Variant, len(md.RawConfig), len(md.RawManifest), md.Tags)
	ref := func(r *stfile.Reference) string {
		if r == nil {
			return "-"
		}
		e, err := cat.Get(*r)
		if err != nil {
			return "not in catalog"
		}
		content := "no contents"
		if rc, err := cat.Open(*r); err == nil {
			data, err := io.ReadAll(rc)
			rc.Close()
			content = fmt.Sprintf("%x %v", sha256.Sum256(data), err)
		} else {
			content = err.Error()
		}
		l := "no layer"
		if layer := cat.Layer(*r); layer != nil {
			l = fmt.Sprint(layer.Metadata.Index)
		}
		return fmt.Sprintf("%s type=%v link=%q mime=%q uid=%d gid=%d size=%d mode=%v mtime=%d name=%q layer=%s %s",
			e.Path, e.Type, e.LinkDestination, e.MIMEType, e.UserID, e.GroupID, e.Size(), e.Mode(), e.ModTime().Unix(), e.Name(), l, content)
	}
	tree := func(name string, tr filetree.Reader) {
		fmt.Fprintf(&b, "%s\n", name)
		err := tr.Walk(func(p stfile.Path, n filenode.FileNode) error {
			fmt.Fprintf(&b, "  %s real=%s link=%s type=%v ref=%s\n", p, n.RealPath, n.LinkPath, n.FileType, ref(n.Reference))
			return nil
		}, nil)
		if err != nil {
			fmt.Fprintf(&b, "  walk: %v\n", err)
		}
	}
	search := func(name string, s filetree.Searcher, mimes []string) {
		if s == nil {
			fmt.Fprintf(&b, "%s: none\n", name)
			return
		}
		res, err := s.SearchByGlob("**", filetree.FollowBasenameLinks)
		fmt.Fprintf(&b, "%s glob: %v\n", name, err)
		var lines []string
		for _, r := range res {
			lines = append(lines, fmt.Sprintf("  %s -> %s", r.RequestPath, ref(r.Reference)))
		}
		slices.Sort(lines)
		b.WriteString(strings.Join(lines, "\n") + "\n")
		res, err = s.SearchByMIMEType(mimes...)
		fmt.Fprintf(&b, "%s mime: %v\n", name, err)
		lines = lines[:0]
		for _, r := range res {
			lines = append(lines, fmt.Sprintf("  %s -> %s", r.RequestPath, ref(r.Reference)))
		}
		slices.Sort(lines)
		b.WriteString(strings.Join(lines, "\n") + "\n")
		for _, p := range []string{"/bin/sh", "/lib/x.jar", "/dead", "/bin/tool2", "/etc/os-release", "/usr/lib/new.txt"} {
			r, err := s.SearchByPath(p, filetree.FollowBasenameLinks)
			if r == nil {
				fmt.Fprintf(&b, "%s path %s: none %v\n", name, p, err)
				continue
			}
			fmt.Fprintf(&b, "%s path %s: %s %v\n", name, p, ref(r.Reference), err)
		}
	}
	var mimes []string
	for _, l := range si.Layers {
		for _, r := range l.Tree.AllFiles() {
			if e, err := cat.Get(r); err == nil && e.MIMEType != "" && !slices.Contains(mimes, e.MIMEType) {
				mimes = append(mimes, e.MIMEType)
			}
		}
	}
	slices.Sort(mimes)
	fmt.Fprintf(&b, "mime types %v\n", mimes)
	for i, l := range si.Layers {
		fmt.Fprintf(&b, "layer %d: %+v\n", i, l.Metadata)
		tree("tree", l.Tree)
		tree("squashed", l.SquashedTree)
		search("search", l.SearchContext, mimes)
		search("squashed search", l.SquashedSearchContext, mimes)
	}
	tree("image squashed", si.SquashedTree())
	search("image search", si.SquashedSearchContext, mimes)
	return b.String()
}

// lotse's index of a layer is stereoscope's: the same trees, files,
// contents, layers and searches, built from the layers' files or while
// they are unpacked, for the fixture images and for one made to be awkward.
func TestIndexIsStereoscopes(t *testing.T) {
	images := append([]namedImage{
		{"awkward, gzip", awkwardImage(t, true)},
		{"awkward, uncompressed", awkwardImage(t, false)},
		{"whiteouts in the lowest layer", lowestWhiteoutsImage(t, false)},
		{"a whiteout's name as a directory in the lowest layer", lowestWhiteoutsImage(t, true)},
	}, fixtureImages(t)...)
	for _, tc := range images {
		t.Run(tc.name, func(t *testing.T) {
			want, err := stereoscopeRead(t, tc.img)
			if err != nil {
				t.Fatal(err)
			}
			wantDesc := describe(t, want)
			for _, followed := range []bool{false, true} {
				got, err := lotseRead(t, tc.img, followed)
				if err != nil {
					t.Fatalf("followed %v: %v", followed, err)
				}
				if gotDesc := describe(t, got); gotDesc != wantDesc {
					t.Errorf("followed %v: index differs from stereoscope's at\n%s", followed, firstDifference(gotDesc, wantDesc))
				}
			}
			// Squashed trees syft was not to read, merged into the one
			// above them, are built again when asked for: all of them, or
			// every other one.
			for name, reads := range map[string]func(int) bool{
				"none":        func(int) bool { return false },
				"every other": func(i int) bool { return i%2 == 1 },
			} {
				got, err := lotseReadSquashed(t, tc.img, false, reads)
				if err != nil {
					t.Fatalf("reads %s: %v", name, err)
				}
				if gotDesc := describe(t, got); gotDesc != wantDesc {
					t.Errorf("reads %s: index differs from stereoscope's at\n%s", name, firstDifference(gotDesc, wantDesc))
				}
			}
		})
	}
}

// A layer indexed as it was unpacked serves only the image whose layer is
// that very file: an index of other bytes under the layer's diff ID (a
// layer that failed its checks) is not taken, and the layer is indexed
// from the file the image serves.
func TestFollowedIndexOnlyForItsFile(t *testing.T) {
	img := awkwardImage(t, false)
	want, err := stereoscopeRead(t, img)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	other, err := rawTar(entry{typ: tar.TypeReg, name: "planted", data: []byte("not the layer\n")})
	if err != nil {
		t.Fatal(err)
	}
	c := &Cataloger{}
	dir := t.TempDir()
	for i, d := range cf.RootFS.DiffIDs {
		p := filepath.Join(t.TempDir(), "partial")
		if err := os.WriteFile(p, other, 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		c.FollowLayer(i, d, bytes.NewReader(other), f)
	}
	si := image.New(img, stfile.NewTempDirGenerator("lotse-test"), dir)
	if err := readSquashed(t, c, si, img, dir, func(int) bool { return true }); err != nil {
		t.Fatal(err)
	}
	if got, w := describe(t, si), describe(t, want); got != w {
		t.Fatalf("an index of other bytes was taken:\n%s", firstDifference(got, w))
	}
	if planted, err := si.FileCatalog.GetByBasename("planted"); err != nil || len(planted) > 0 {
		t.Fatalf("the catalog holds the files of the index not taken: %v, %v", planted, err)
	}
}

// A layer whose contents archive/tar reads otherwise than stereoscope
// (sparse files, header-only entries that claim data) is left to
// stereoscope's Read.
func TestIndexableEntries(t *testing.T) {
	for _, tc := range []struct {
		h    tar.Header
		want bool
	}{
		{tar.Header{Typeflag: tar.TypeReg, Size: 10}, true},
		{tar.Header{Typeflag: tar.TypeDir}, true},
		{tar.Header{Typeflag: tar.TypeSymlink, Linkname: "x"}, true},
		{tar.Header{Typeflag: tar.TypeLink, Linkname: "x"}, true},
		{tar.Header{Typeflag: tar.TypeGNUSparse, Size: 10}, false},
		{tar.Header{Typeflag: tar.TypeReg, Size: 10, PAXRecords: map[string]string{"GNU.sparse.major": "1"}}, false},
		{tar.Header{Typeflag: tar.TypeSymlink, Linkname: "x", Size: 3}, false},
		{tar.Header{Typeflag: tar.TypeLink, Linkname: "x", Size: 3}, false},
		{tar.Header{Typeflag: tar.TypeDir, Size: 512}, false},
	} {
		if got := indexable(&tc.h); got != tc.want {
			t.Errorf("indexable(%c size %d pax %v) = %v, want %v", tc.h.Typeflag, tc.h.Size, tc.h.PAXRecords, got, tc.want)
		}
	}
}

// sparseTar is a tar holding one PAX sparse file (format 1.0, as GNU tar
// writes it: the sparse map at the start of its data), which archive/tar
// expands while stereoscope reads its data as stored. archive/tar writes
// no sparse files, so the extended header is made by hand.
func sparseTar(t testing.TB) []byte {
	t.Helper()
	records := ""
	for _, kv := range [][2]string{{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"}, {"GNU.sparse.name", "sparse"}, {"GNU.sparse.realsize", "8"}} {
		rec := " " + kv[0] + "=" + kv[1] + "\n"
		n := len(rec) + 1
		for len(fmt.Sprint(n))+len(rec) != n {
			n = len(fmt.Sprint(n)) + len(rec)
		}
		records += fmt.Sprint(n) + rec
	}
	var x bytes.Buffer
	tw := tar.NewWriter(&x)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "PaxHeaders/sparse", Size: int64(len(records)), Mode: 0o644, Format: tar.FormatUSTAR}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(records)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Flush(); err != nil {
		t.Fatal(err)
	}
	b := x.Bytes()
	b[156] = tar.TypeXHeader
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b[:512] {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	data := []byte("1\n0\n4\n" + strings.Repeat("\x00", 506) + "data")
	var f bytes.Buffer
	tw = tar.NewWriter(&f)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "sparse", Size: int64(len(data)), Mode: 0o644, Format: tar.FormatUSTAR}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	out := append(slices.Clone(b), f.Bytes()...)
	tr := tar.NewReader(bytes.NewReader(out))
	h, err := tr.Next()
	if err != nil || h.PAXRecords["GNU.sparse.major"] != "1" {
		t.Fatalf("the sparse archive reads as %+v, %v", h, err)
	}
	return out
}

// An image with a sparse file is read by stereoscope: lotse's read falls
// back, having filled nothing, and Generate catalogs it as stereoscope
// reads it.
func TestIndexFallsBackOnSparseFiles(t *testing.T) {
	b := sparseTar(t)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := fixture.Image(l)
	if err != nil {
		t.Fatal(err)
	}
	for _, followed := range []bool{false, true} {
		si, err := lotseRead(t, img, followed)
		if !errors.Is(err, errIndexFallback) {
			t.Fatalf("followed %v: %v, want the fallback", followed, err)
		}
		if si.Layers != nil || si.FileCatalog != nil {
			t.Fatalf("followed %v: the image was filled before falling back", followed)
		}
	}
	s, err := Generate(context.Background(), img, "sparse:1", Tool{Name: "lotse", Version: "test"}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if s == nil {
		t.Fatal("no SBOM")
	}
}

// FuzzIndexIsStereoscopes builds two layers of entries the input chooses
// (files, directories, symlinks, hard links and whiteouts over a few
// names) and compares lotse's index of them, read from files and followed
// while unpacked, with stereoscope's; where stereoscope cannot read the
// image, lotse must not either.
func FuzzIndexIsStereoscopes(f *testing.F) {
	f.Add([]byte("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09"))
	f.Add([]byte("\x03\x10\x20\x01\x11\x04\x21\x30\x02\x31\x05\x40\x00\x41"))
	f.Add([]byte("\x04\x00\x02\x01\x03\x02\x04\x03\x05\x04\xff\x00\x01"))
	f.Fuzz(indexIsStereoscopes)
}

// indexIsStereoscopes is FuzzIndexIsStereoscopes's check of one input.
func indexIsStereoscopes(t *testing.T, in []byte) {
	names := []string{"a", "b", "a/b", "a/c", "d/e/f", ".wh.a", "a/.wh.b", "a/.wh..wh..opq", "", "./a", "b/../c"}
	if len(in) > 64 {
		in = in[:64]
	}
	var layers [2][]entry
	li := 0
	for i := 0; i+1 < len(in); i += 2 {
		op, arg := in[i], in[i+1]
		if op == 0xff {
			li = 1
			continue
		}
		name := names[int(arg)%len(names)]
		other := names[int(arg>>4)%len(names)]
		var e entry
		switch op % 5 {
		case 0:
			e = entry{typ: tar.TypeReg, name: name, data: bytes.Repeat([]byte{arg}, int(op))}
		case 1:
			e = entry{typ: tar.TypeDir, name: name + "/", mode: 0o755}
		case 2:
			e = entry{typ: tar.TypeSymlink, name: name, link: other}
		case 3:
			e = entry{typ: tar.TypeLink, name: name, link: other}
		case 4:
			e = entry{typ: tar.TypeSymlink, name: name, link: "/" + other}
		}
		if name == "" {
			continue
		}
		layers[li] = append(layers[li], e)
	}
	var ls []v1.Layer
	for _, es := range layers {
		ls = append(ls, rawLayer(t, false, es...))
	}
	img, err := fixture.Image(ls...)
	if err != nil {
		t.Fatal(err)
	}
	want, wantErr := stereoscopeRead(t, img)
	for _, followed := range []bool{false, true} {
		got, err := lotseRead(t, img, followed)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("followed %v: lotse %v, stereoscope %v", followed, err, wantErr)
		}
		if err != nil {
			continue
		}
		if g, w := describe(t, got), describe(t, want); g != w {
			t.Fatalf("followed %v: index differs from stereoscope's at\n%s", followed, firstDifference(g, w))
		}
	}
}

// countingReaderAt counts the bytes read from it.
type countingReaderAt struct {
	r io.ReaderAt
	n int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n += int64(n)
	return n, err
}

// fileTar gives archive/tar the tar as it is, and lets it seek past the
// contents it skips: indexing an outline (headers among holes) reads its
// headers, not its holes.
func TestFileTarSeeksPastContents(t *testing.T) {
	big := bytes.Repeat([]byte{7}, 8<<20)
	b, err := rawTar(
		entry{typ: tar.TypeReg, name: "a", data: []byte("small")},
		entry{typ: tar.TypeReg, name: "big", data: big},
		entry{typ: tar.TypeDir, name: "d/"},
		entry{typ: tar.TypeReg, name: "d/b", data: bytes.Repeat([]byte("x"), 40<<10)},
		entry{typ: tar.TypeReg, name: "z", data: []byte("last")},
	)
	if err != nil {
		t.Fatal(err)
	}
	read := func(r io.Reader, contents bool) (names []string, data [][]byte) {
		tr := tar.NewReader(r)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				return names, data
			}
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, h.Name)
			if contents && h.Size < 1<<20 {
				d, err := io.ReadAll(tr)
				if err != nil {
					t.Fatal(err)
				}
				data = append(data, d)
			}
		}
	}
	wantNames, wantData := read(bytes.NewReader(b), true)
	ra := &countingReaderAt{r: bytes.NewReader(b)}
	gotNames, gotData := read(&fileTar{f: ra, back: make([]byte, 32<<10)}, true)
	if !slices.Equal(gotNames, wantNames) || len(gotData) != len(wantData) {
		t.Fatalf("entries %v, want %v", gotNames, wantNames)
	}
	for i := range gotData {
		if !bytes.Equal(gotData[i], wantData[i]) {
			t.Fatalf("contents of entry %d differ", i)
		}
	}
	if ra.n >= int64(len(big)) {
		t.Fatalf("read %d bytes of a %d-byte tar: the big file was read, not skipped", ra.n, len(b))
	}
}

// mimeType is stereoscope's file.MIMEType: for empty contents, contents
// of every kind the fixtures hold, and contents around mimetype's read
// limit, including text that turns binary after the limit (whose type
// depends on where the limit is).
func TestMIMETypeIsStereoscopes(t *testing.T) {
	elf, err := fixture.UnknownELF()
	if err != nil {
		t.Fatal(err)
	}
	zip, err := fixture.Zip(fixture.File{Path: "a.txt", Data: []byte("a")})
	if err != nil {
		t.Fatal(err)
	}
	text := bytes.Repeat([]byte("plain text "), 400)
	contents := [][]byte{
		nil, {0}, []byte("x"), []byte("#!/bin/sh\n"), []byte(`{"a": 1}`), []byte("<?xml version=\"1.0\"?><a/>"),
		[]byte("<html><body></body></html>"), elf, zip, bytes.Repeat([]byte{0}, 5000),
		text[:mimeReadLimit-1], text[:mimeReadLimit], text[:mimeReadLimit+1],
		append(slices.Clone(text[:mimeReadLimit]), bytes.Repeat([]byte{0, 0xff}, 100)...),
		append(slices.Clone(text[:mimeReadLimit-10]), bytes.Repeat([]byte{0, 0xff}, 100)...),
		[]byte("\x1f\x8b\x08\x00\x00\x00\x00\x00"), []byte("%PDF-1.4\n"), []byte("\x89PNG\r\n\x1a\n"),
	}
	// Zeros (an outline's left-out contents), each length twice, the
	// second time from the detector's memory; and contents that start
	// like zeros of a length seen before.
	for _, n := range []int{1, 2, 3, 4, 8, 16, 100, 511, 512, 513, 4095, mimeReadLimit, mimeReadLimit + 1, 1 << 20} {
		z := make([]byte, n)
		contents = append(contents, z, z, append(z[:min(n, mimeReadLimit-1):min(n, mimeReadLimit-1)], elf...))
	}
	contents = append(contents, append(make([]byte, 1), "#!/bin/sh\n"...), append([]byte("\x7fELF"), make([]byte, 4092)...))
	d := newMIMEDetector()
	for i, c := range contents {
		want := stfile.MIMEType(bytes.NewReader(c))
		if got := d.detect(bytes.NewReader(c)); got != want {
			t.Errorf("contents %d (%d bytes): %q, stereoscope %q", i, len(c), got, want)
		}
		if got := d.detect(iotest.HalfReader(bytes.NewReader(c))); got != want {
			t.Errorf("contents %d (%d bytes), read in halves: %q, stereoscope %q", i, len(c), got, want)
		}
	}
	if len(d.zeros) == 0 {
		t.Error("no length of zeros was remembered")
	}
}
