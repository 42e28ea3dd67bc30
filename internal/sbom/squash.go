package sbom

import (
	"fmt"

	"github.com/anchore/stereoscope/pkg/filetree"
	"github.com/anchore/stereoscope/pkg/image"
)

// squashLayers builds the squashed trees of an image's layers (the file
// system up to each layer: the layer's tree merged onto the squashed tree
// under it), lowest first, as stereoscope's Read does, with two
// differences:
//   - A lowest layer without whiteouts (most: a base image's rootfs) is
//     its own squashed tree, where stereoscope copies it: no one writes to
//     either once it is built. whiteouts says whether the lowest layer's
//     tree may hold whiteouts.
//   - syft reads only some squashed trees: the top layer's (the image's
//     file system) and those of the layers it catalogs (reads says which;
//     see Generate). Another layer's squashed tree is not copied to build
//     the one above it: that one is merged onto it in place, and the layer
//     keeps none. Warm on go-toolchain, that spares copying the 25,000
//     nodes under the top layer (0.1 s). Should a layer's be read after
//     all, squashedAgain builds it.
func squashLayers(layers []*image.Layer, whiteouts bool, index filetree.IndexReader, reads func(i int) bool) error {
	var lower filetree.ReadWriter // the squashed tree under layer i
	merged := false               // whether layer i is to be merged onto lower in place
	for i, l := range layers {
		tree := l.Tree.(filetree.ReadWriter)
		var sq filetree.ReadWriter
		var err error
		switch {
		case i == 0 && !whiteouts:
			sq = tree
		case merged:
			sq, err = lower, lower.Merge(tree)
		default:
			sq, err = squash(lower, tree)
		}
		if err != nil {
			return fmt.Errorf("failed to squash tree %d: %w", i, err)
		}
		lower = sq
		merged = i < len(layers)-1 && sq != tree && !reads(i)
		if !merged {
			l.SquashedTree = sq
			l.SquashedSearchContext = filetree.NewSearchContext(sq, index)
		}
	}
	return nil
}

// squashedAgain gives layer i of layers, whose squashed tree squashLayers
// merged into the next one's, its squashed tree: built from the layers'
// trees, each squashed onto the one under it as stereoscope does.
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
	layers[i].SquashedTree = sq
	layers[i].SquashedSearchContext = filetree.NewSearchContext(sq, index)
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
