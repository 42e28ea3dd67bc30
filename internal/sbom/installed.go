package sbom

import (
	"slices"
	"strings"

	"github.com/CycloneDX/cyclonedx-go"
	stfile "github.com/anchore/stereoscope/pkg/file"
	"github.com/anchore/stereoscope/pkg/image"
	"github.com/anchore/syft/syft/artifact"
	"github.com/anchore/syft/syft/file"
	"github.com/anchore/syft/syft/pkg"
	syftsbom "github.com/anchore/syft/syft/sbom"
	"github.com/anchore/syft/syft/source"
	"github.com/spdx/tools-golang/spdx/v2/common"
	"github.com/spdx/tools-golang/spdx/v2/v2_3"
)

// InstalledByProperty is the CycloneDX property lotse adds to a language
// package (a Python distribution, a Go binary, a jar...) whose file an OS
// package manager installed, once per OS package that lists the file; its
// value is that package's bom-ref. In SPDX it is an annotation of the
// package, "lotse:installedBy: SPDXRef-..." (see annotateSPDX).
//
// `trivy image` does not report such a package as a language package: the
// distribution patches and versions it (Debian's python3-requests, a Go
// binary in a .deb), so the language advisories would be false findings.
// It decides per layer, from the package databases in the layer the file
// is read from. syft's CycloneDX keeps neither the files an OS package
// owns nor the databases' layers, so lotse records the outcome where its
// scan of the SBOM (lotse scan --sbom, lotse rescan) can read it.
const InstalledByProperty = "lotse:installedBy"

const dpkgStatus = "/var/lib/dpkg/status"

// Where apk and RPM keep their databases (trivy's apk and rpm analyzers
// read these paths).
var (
	apkDatabases = []string{"/lib/apk/db/installed", "/usr/lib/apk/db/installed"}
	rpmDatabases = []string{
		"/usr/lib/sysimage/rpm/Packages", "/var/lib/rpm/Packages",
		"/usr/lib/sysimage/rpm/Packages.db", "/var/lib/rpm/Packages.db",
		"/usr/lib/sysimage/rpm/rpmdb.sqlite", "/var/lib/rpm/rpmdb.sqlite",
	}
)

// installedBy finds, for each package that is not an OS package, the OS
// packages that installed the file it was found in (its first location, as
// the CycloneDX records it), in the layer that file is read from. That
// layer must hold the database entry listing the file, as in trivy's
// analysis, which sees one layer at a time:
//   - a Debian package lists its files in its md5sums file (configuration
//     files excluded), which must be in that layer, beside dpkg's status
//     file (a later layer that rewrites only the md5sums file leaves the
//     package's files unmarked: more findings than trivy's, never fewer);
//   - apk and RPM list every package's files in one database, which that
//     layer must contain.
//
// A later layer that rewrites the file without the package manager (pip
// over an apt-installed package) makes it a language package again.
// hasFile says whether a layer (by diff ID) itself holds a path; nil when
// the layers cannot be read, which marks nothing.
func installedBy(s *syftsbom.SBOM, hasFile func(layer, path string) bool) map[artifact.ID][]artifact.ID {
	var layers []string
	if m, ok := s.Source.Metadata.(source.ImageMetadata); ok {
		for _, l := range m.Layers {
			layers = append(layers, l.Digest)
		}
	}
	holding := func(paths []string) []string {
		var out []string
		if hasFile == nil {
			return nil
		}
		for _, l := range layers {
			for _, p := range paths {
				if hasFile(l, p) {
					out = append(out, l)
					break
				}
			}
		}
		return out
	}
	var apkLayers, rpmLayers []string
	apkDone, rpmDone := false, false
	owners := map[file.Coordinates][]artifact.ID{}
	add := func(p pkg.Package, files []string, in []string) {
		for _, f := range files {
			f = "/" + strings.TrimPrefix(f, "/")
			for _, l := range in {
				c := file.Coordinates{RealPath: f, FileSystemID: l}
				owners[c] = append(owners[c], p.ID())
			}
		}
	}
	for _, p := range s.Artifacts.Packages.Sorted() {
		switch m := p.Metadata.(type) {
		case pkg.DpkgDBEntry:
			var files []string
			for _, f := range m.Files {
				if !f.IsConfigFile && f.Path != "" {
					files = append(files, f.Path)
				}
			}
			// trivy counts an md5sums file only beside dpkg's status
			// file: one planted in a layer apt did not run in does not
			// make a pip package the distribution's.
			var in []string
			for _, l := range p.Locations.ToSlice() {
				if strings.HasSuffix(l.RealPath, ".md5sums") && hasFile != nil && hasFile(l.FileSystemID, dpkgStatus) {
					in = append(in, l.FileSystemID)
				}
			}
			add(p, files, in)
		case pkg.ApkDBEntry:
			if !apkDone {
				apkLayers, apkDone = holding(apkDatabases), true
			}
			add(p, m.OwnedFiles(), apkLayers)
		case pkg.RpmDBEntry:
			if !rpmDone {
				rpmLayers, rpmDone = holding(rpmDatabases), true
			}
			add(p, m.OwnedFiles(), rpmLayers)
		}
	}
	if len(owners) == 0 {
		return nil
	}
	sorter := file.LocationSorter(layers)
	out := map[artifact.ID][]artifact.ID{}
	for _, p := range s.Artifacts.Packages.Sorted() {
		switch p.Type {
		case pkg.DebPkg, pkg.ApkPkg, pkg.RpmPkg:
			continue
		}
		locs := p.Locations.ToSlice(sorter)
		if len(locs) == 0 {
			continue
		}
		if o := owners[locs[0].Coordinates]; len(o) > 0 {
			out[p.ID()] = o
		}
	}
	return out
}

// layerFiles answers installedBy's question from the image's layers.
func layerFiles(si *image.Image) func(layer, path string) bool {
	return func(layer, path string) bool {
		for _, l := range si.Layers {
			if l.Metadata.Digest != layer || l.Tree == nil {
				continue
			}
			ok, _, err := l.Tree.File(stfile.Path(path))
			return ok && err == nil
		}
		return false
	}
}

// addInstalledBy adds InstalledByProperty to the components of bom, which
// cyclonedxhelpers.ToFormatModel made of s: its first components are s's
// packages, in the order of Sorted.
func addInstalledBy(bom *cyclonedx.BOM, s *syftsbom.SBOM, by map[artifact.ID][]artifact.ID) {
	if len(by) == 0 || bom.Components == nil {
		return
	}
	comps := *bom.Components
	ref := map[artifact.ID]string{}
	sorted := s.Artifacts.Packages.Sorted()
	for i, p := range sorted {
		if i < len(comps) && comps[i].Name == p.Name && comps[i].Version == p.Version {
			ref[p.ID()] = comps[i].BOMRef
		}
	}
	for i, p := range sorted {
		owners := by[p.ID()]
		if len(owners) == 0 || ref[p.ID()] == "" {
			continue
		}
		var props []cyclonedx.Property
		if comps[i].Properties != nil {
			props = *comps[i].Properties
		}
		for _, o := range owners {
			if r := ref[o]; r != "" {
				props = append(props, cyclonedx.Property{Name: InstalledByProperty, Value: r})
			}
		}
		comps[i].Properties = &props
	}
}

// annotateSPDX adds to lotse's SPDX what lotse adds to its CycloneDX. It
// annotates the SPDX packages of by's language packages with the SPDX IDs of the OS packages that installed their files: an
// annotation "lotse:installedBy: SPDXRef-..." per OS package (SPDX has no
// properties; trivy's decoder reads an annotation "name: value" as one and
// ignores this one). It also gives a modular RPM its module stream, which
// syft's SPDX leaves out, as trivy's own SPDX does: an annotation
// "Modularitylabel: nodejs:10:...", which trivy's decoder reads, so that
// the RPM is matched by its module stream (nodejs:10, not nodejs). A
// package's SPDX ID ends with its syft ID.
func annotateSPDX(doc *v2_3.Document, s *syftsbom.SBOM, by map[artifact.ID][]artifact.ID) {
	pkgs := map[artifact.ID]*v2_3.Package{}
	for _, p := range doc.Packages {
		id := string(p.PackageSPDXIdentifier)
		if i := strings.LastIndexByte(id, '-'); i >= 0 {
			pkgs[artifact.ID(id[i+1:])] = p
		}
	}
	tool := common.Annotator{Annotator: s.Descriptor.Name + "-" + s.Descriptor.Version, AnnotatorType: "Tool"}
	created := ""
	if doc.CreationInfo != nil {
		created = doc.CreationInfo.Created
	}
	annotate := func(p *v2_3.Package, comment string) {
		p.Annotations = append(p.Annotations, v2_3.Annotation{Annotator: tool, AnnotationDate: created, AnnotationType: "OTHER", AnnotationComment: comment})
	}
	for p := range s.Artifacts.Packages.Enumerate() {
		if m, ok := p.Metadata.(pkg.RpmDBEntry); ok && m.ModularityLabel != nil && *m.ModularityLabel != "" {
			if sp := pkgs[p.ID()]; sp != nil {
				annotate(sp, trivyModularityLabel+": "+*m.ModularityLabel)
			}
		}
	}
	for id, owners := range by {
		p := pkgs[id]
		if p == nil {
			continue
		}
		for _, o := range owners {
			if op := pkgs[o]; op != nil {
				annotate(p, InstalledByProperty+": SPDXRef-"+string(op.PackageSPDXIdentifier))
			}
		}
	}
	for _, p := range doc.Packages {
		slices.SortFunc(p.Annotations, func(a, b v2_3.Annotation) int { return strings.Compare(a.AnnotationComment, b.AnnotationComment) })
	}
}

// trivyModularityLabel is the name trivy's SBOMs give an RPM's module
// stream (trivy's core.PropertyModularitylabel), which its decoder reads
// from an SPDX annotation "Modularitylabel: ...".
const trivyModularityLabel = "Modularitylabel"
