package scan

import (
	"slices"
	"strings"
	_ "unsafe" // go:linkname

	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/aquasecurity/trivy/pkg/types"
	"github.com/package-url/packageurl-go"
)

// installedByProperty is the CycloneDX property lotse's SBOM gives a
// language package whose file an OS package manager installed, naming the
// OS package (sbom.InstalledByProperty).
const installedByProperty = "lotse:installedBy"

// trivyDefaultSystemFiles are files trivy's image analysis treats as
// installed by the OS in every image (distroless drops dpkg's file lists).
//
//go:linkname trivyDefaultSystemFiles github.com/aquasecurity/trivy/pkg/fanal/handler/sysfile.defaultSystemFiles
var trivyDefaultSystemFiles []string

// dropSystemInstalled removes the language packages that `trivy image`
// does not report because an OS package installed their file (its
// system-file filter): Debian's python3-requests is patched and versioned
// by Debian, not by requests' advisories. lotse's SBOM names the OS
// packages that installed a package's file (see sbom.installedBy); a
// Debian package from a third-party repository does not count, as in
// trivy's dpkg analyzer. An SBOM from elsewhere carries no such facts:
// only trivy's fixed list of files applies to it.
func dropSystemInstalled(bom *types.SBOM, facts map[string]componentFacts) {
	if facts == nil {
		return
	}
	system := func(p ftypes.Package) bool {
		if slices.ContainsFunc(trivyDefaultSystemFiles, func(f string) bool {
			return p.FilePath != "" && strings.TrimPrefix(f, "/") == p.FilePath
		}) {
			return true
		}
		for _, ref := range facts[p.Identifier.BOMRef].installedBy {
			owner, ok := facts[ref]
			if !ok {
				continue // not in the document: nothing says who it is
			}
			if owner.purlType == packageurl.TypeDebian && trivyDpkgThirdParty(owner.publisher) {
				continue
			}
			return true
		}
		return false
	}
	for i := range bom.Applications {
		app := &bom.Applications[i]
		app.Packages = slices.DeleteFunc(app.Packages, system)
	}
	bom.Applications = slices.DeleteFunc(bom.Applications, func(a ftypes.Application) bool { return len(a.Packages) == 0 })
}
