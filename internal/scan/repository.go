package scan

import (
	_ "unsafe" // go:linkname

	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/aquasecurity/trivy/pkg/types"
	rpmdb "github.com/knqyf263/go-rpmdb/pkg"
	"github.com/package-url/packageurl-go"
)

// trivy's image analysis tells OS packages from the distribution's own
// repositories from third-party ones (Docker's, NVIDIA's, nginx.org's...):
// a Debian package by its maintainer, an RPM by its vendor. It matches only
// the former against the distribution's advisories, since those do not
// describe a third-party package of the same name. trivy's SBOM decoding
// drops both facts, so a scan of an SBOM would report, say, Debian's nginx
// advisories for nginx.org's nginx, which `trivy image` does not.
// restoreRepositories restores the class from what syft's CycloneDX
// records (the publisher), with trivy's own rules, reached by their link
// names so that they cannot drift: a trivy that renames them fails the
// link, and TestSBOMThirdPartyPackages checks the outcome.

//go:linkname trivyDpkgThirdParty github.com/aquasecurity/trivy/pkg/fanal/analyzer/pkg/dpkg.isThirdPartyPackage
func trivyDpkgThirdParty(maintainer string) bool

//go:linkname trivyRPMFromVendor github.com/aquasecurity/trivy/pkg/fanal/analyzer/pkg/rpm.packageProvidedByVendor
func trivyRPMFromVendor(pkg *rpmdb.PackageInfo) bool

// restoreRepositories sets the repository class of the Debian and RPM
// packages syft's CycloneDX describes, as trivy's dpkg and rpm analyzers
// set it, and an RPM's module stream, which trivy's decoder reads only
// from trivy's own properties. Packages of other documents are left
// alone: without the publisher, every RPM would look third-party.
func restoreRepositories(bom *types.SBOM, facts map[string]componentFacts) {
	for i := range bom.Packages {
		for j := range bom.Packages[i].Packages {
			p := &bom.Packages[i].Packages[j]
			f, ok := facts[p.Identifier.BOMRef]
			if !ok || !f.syft || p.Identifier.PURL == nil {
				continue
			}
			official := true
			switch p.Identifier.PURL.Type {
			case packageurl.TypeDebian:
				official = !trivyDpkgThirdParty(f.publisher)
			case packageurl.TypeRPM:
				official = trivyRPMFromVendor(&rpmdb.PackageInfo{Vendor: f.publisher, Release: f.release})
				// The module stream picks Red Hat's advisories for a
				// modular package (nodejs:18 rather than nodejs).
				if p.Modularitylabel == "" {
					p.Modularitylabel = f.modularity
				}
			default:
				continue // trivy's apk analyzer sets no class
			}
			p.Repository.Class = ftypes.RepositoryClassThirdParty
			if official {
				p.Repository.Class = ftypes.RepositoryClassOfficial
			}
		}
	}
}
