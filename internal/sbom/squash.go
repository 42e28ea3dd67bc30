package sbom

import (
	"fmt"

	stfile "github.com/anchore/stereoscope/pkg/file"
	"github.com/anchore/stereoscope/pkg/filetree"
	"github.com/anchore/stereoscope/pkg/image"
)

// squashLayers builds the squashed trees of si's layers (the file system
// up to each layer: the layer's tree merged onto the squashed tree under
// it), lowest first, as stereoscope's Read does, and si's search context
// (the top layer's), with three differences:
//   - A lowest layer without whiteouts (most: a base image's rootfs) is
//     its own squashed tree, where stereoscope copies it: no one writes to
//     either once it is built. whiteouts says whether layer i's tree may
//     hold whiteouts.
//   - A layer without whiteouts is merged without asking, for each of its
//     nodes, whether the node's directory is opaque (see noWhiteouts).
//   - syft reads only some squashed trees: the top layer's (the image's
//     file system) and those of the layers it catalogs (reads says which;
//     see Generate). Another layer's squashed tree is not copied to build
//     the one above it: that one is merged onto it in place, and the layer
//     keeps none. Warm on go-toolchain, that spares copying the 25,000
//     nodes under the top layer (0.1 s). Should a layer's be read after
//     all, squashedAgain builds it.
//   - Where syft reads the squashed tree under the top layer, the top
//     layer's is left to top, which merges the top layer onto that tree in
//     place: catalogLayers calls it once the layer under the top one is
//     cataloged, and the layer keeps no squashed tree. Cold on
//     go-toolchain, that spares copying those 25,000 nodes (0.2 s of a
//     core). Where it is not left, top does nothing.
//
// si's search context is the top layer's once top returns and topSearch
// is called.
func squashLayers(si *image.Image, whiteouts func(i int) bool, index filetree.IndexReader, reads func(i int) bool) (top func() error, err error) {
	layers := si.Layers
	n := len(layers)
	var lower filetree.ReadWriter // the squashed tree under layer i
	merged := false               // whether layer i is to be merged onto lower in place
	for i, l := range layers {
		tree := l.Tree.(filetree.ReadWriter)
		if !whiteouts(i) {
			tree = noWhiteouts{l.Tree.(*filetree.FileTree)}
		}
		if i == n-1 && i > 0 && !merged && lower != layers[i-1].Tree {
			return func() error {
				if err := lower.Merge(tree); err != nil {
					return fmt.Errorf("failed to squash tree %d: %w", i, err)
				}
				layers[i-1].SquashedTree, layers[i-1].SquashedSearchContext = nil, nil
				setSquashed(l, lower, index)
				return nil
			}, nil
		}
		var sq filetree.ReadWriter
		switch {
		case i == 0 && !whiteouts(i):
			sq = l.Tree.(filetree.ReadWriter)
		case merged:
			sq, err = lower, lower.Merge(tree)
		default:
			sq, err = squash(lower, tree)
		}
		if err != nil {
			return nil, fmt.Errorf("failed to squash tree %d: %w", i, err)
		}
		lower = sq
		merged = i < n-1 && sq != l.Tree && !reads(i)
		if !merged {
			setSquashed(l, sq, index)
		}
	}
	if n == 0 {
		si.SquashedSearchContext = filetree.NewSearchContext(filetree.New(), index)
	}
	topSearch(si)
	return func() error { return nil }, nil
}

// topSearch gives si the search context of its top layer's squashed tree,
// once that is built: not while the layers are cataloged, each in a view
// (a copy) of si.
func topSearch(si *image.Image) {
	if n := len(si.Layers); n > 0 {
		si.SquashedSearchContext = si.Layers[n-1].SquashedSearchContext
	}
}

// setSquashed gives layer l its squashed tree sq.
func setSquashed(l *image.Layer, sq filetree.ReadWriter, index filetree.IndexReader) {
	l.SquashedTree = sq
	l.SquashedSearchContext = filetree.NewSearchContext(sq, index)
}

// squashedAgain gives layer i of layers, whose squashed tree squashLayers
// (or top) merged into the next one's, its squashed tree: built from the
// layers' trees, each squashed onto the one under it as stereoscope does.
func squashedAgain(layers []*image.Layer, i int, index filetree.IndexReader) error {
	if layers[i].SquashedTree != nil {
		return nil
	}
	var sq filetree.ReadWriter
	for _, l := range layers[:i+1] {
		var err error
		if sq, err = squash(sq, l.Tree.(filetree.ReadWriter)); err != nil {
			return fmt.Errorf("failed to squash tree %d: %w", i, err)
		}
	}
	setSquashed(layers[i], sq, index)
	return nil
}

// squash is stereoscope's squash of tree onto lower (nil for the lowest
// layer: a copy of tree without its whiteouts).
func squash(lower, tree filetree.ReadWriter) (filetree.ReadWriter, error) {
	union := filetree.NewUnionFileTree()
	if lower != nil {
		union.PushTree(lower)
	}
	union.PushTree(tree)
	return union.Squash()
}

// noWhiteouts is the tree of a layer none of whose paths has a part that
// starts with .wh. (indexLayer tells). stereoscope's Merge asks the upper
// tree, for each of its nodes, whether the node's directory holds the
// opaque marker .wh..wh..opq: a lookup through the tree, which on
// go-toolchain's toolchain layer takes 0.13 s of the squash's 0.23 s. In
// such a tree no node has that name, so no lookup can find one: the
// answer is no without looking.
type noWhiteouts struct{ *filetree.FileTree }

func (t noWhiteouts) HasPath(p stfile.Path, options ...filetree.LinkResolutionOption) bool {
	if p.Basename() == stfile.OpaqueWhiteout {
		return false
	}
	return t.FileTree.HasPath(p, options...)
}
