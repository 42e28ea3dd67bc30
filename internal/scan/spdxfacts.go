package scan

import (
	"encoding/json"
	"slices"
	"strings"

	"github.com/aquasecurity/trivy/pkg/types"
	"github.com/package-url/packageurl-go"
)

// spdxFacts reads, from an SPDX JSON document syft wrote (lotse's SPDX is
// syft's), the facts syftFacts reads from syft's CycloneDX, where SPDX
// records them: the file a package was found in (the file its
// "evident-by" relationship names), an OS package's maintainer or vendor
// (its supplier) and an RPM's release, and the OS packages lotse marked as having installed a
// language package's file (an annotation "lotse:installedBy: SPDXRef-...";
// see sbom.InstalledByProperty). It returns nil for other documents.
//
// trivy's SPDX decoder keeps no identifier of a package but its purl, so
// the facts are keyed by purl (spdxKey), and only for the purls that name
// one package in the document. A jar inside another (a Spring Boot fat
// jar's BOOT-INF/lib) is evident by the outer jar only, where trivy names
// the inner one: such jars, which share their file with another package,
// get no file.
func spdxFacts(data []byte) map[string]componentFacts {
	var doc struct {
		SPDXVersion  string `json:"spdxVersion"`
		CreationInfo struct {
			Creators []string `json:"creators"`
		} `json:"creationInfo"`
		Packages []struct {
			SPDXID      string `json:"SPDXID"`
			Version     string `json:"versionInfo"`
			Supplier    string `json:"supplier"`
			Annotations []struct {
				Comment string `json:"comment"`
			} `json:"annotations"`
			ExternalRefs []struct {
				Type    string `json:"referenceType"`
				Locator string `json:"referenceLocator"`
			} `json:"externalRefs"`
		} `json:"packages"`
		Files []struct {
			SPDXID   string `json:"SPDXID"`
			FileName string `json:"fileName"`
		} `json:"files"`
		Relationships []struct {
			From    string `json:"spdxElementId"`
			To      string `json:"relatedSpdxElement"`
			Type    string `json:"relationshipType"`
			Comment string `json:"comment"`
		} `json:"relationships"`
	}
	if err := json.Unmarshal(data, &doc); err != nil || !strings.HasPrefix(doc.SPDXVersion, "SPDX-") ||
		!slices.Contains(doc.CreationInfo.Creators, "Organization: Anchore, Inc") {
		return nil
	}
	files := map[string]string{}
	for _, f := range doc.Files {
		files[f.SPDXID] = f.FileName
	}
	evident := map[string]string{} // package SPDXID -> its first evident-by file
	packagesOf := map[string]int{} // file -> packages evident by it
	for _, r := range doc.Relationships {
		if r.Type != "OTHER" || !strings.HasPrefix(r.Comment, "evident-by:") {
			continue
		}
		name, ok := files[r.To]
		if !ok {
			continue
		}
		if _, seen := evident[r.From]; !seen {
			evident[r.From] = name
			packagesOf[name]++
		}
	}
	facts := map[string]componentFacts{}
	count := map[string]int{}
	keyOf := map[string]string{} // SPDXID -> key
	for _, p := range doc.Packages {
		var purl *packageurl.PackageURL
		for _, r := range p.ExternalRefs {
			if r.Type == "purl" {
				if u, err := packageurl.FromString(r.Locator); err == nil {
					purl = &u
				}
			}
		}
		if purl == nil {
			continue
		}
		key := spdxKey(purl.ToString())
		keyOf[p.SPDXID] = key
		if count[key]++; count[key] > 1 {
			continue
		}
		// A Debian package's supplier is its maintainer, an RPM's its
		// vendor, which tell a third-party package (restoreRepositories,
		// which for an RPM also needs its release: the end of its
		// version). An RPM's module stream is trivy's own annotation,
		// which lotse's SPDX carries and trivy's decoder reads.
		f := componentFacts{syft: true, publisher: spdxPublisher(p.Supplier), purlType: purl.Type}
		if purl.Type == packageurl.TypeRPM {
			if i := strings.LastIndexByte(p.Version, '-'); i >= 0 {
				f.release = p.Version[i+1:]
			}
		}
		if path, ok := evident[p.SPDXID]; ok && (purl.Type != packageurl.TypeMaven || packagesOf[path] == 1) {
			f.path = printable(strings.TrimPrefix(path, "/"))
		}
		facts[key] = f
	}
	for key, n := range count {
		if n > 1 {
			delete(facts, key) // which package is which is not known
		}
	}
	// lotse's mark (sbom.InstalledByProperty): the OS packages that
	// installed a language package's file, by SPDX ID.
	for _, p := range doc.Packages {
		f, ok := facts[keyOf[p.SPDXID]]
		if !ok {
			continue
		}
		for _, a := range p.Annotations {
			owner, ok := strings.CutPrefix(a.Comment, installedByProperty+": ")
			if ok && keyOf[owner] != "" {
				f.installedBy = append(f.installedBy, keyOf[owner])
			}
		}
		facts[keyOf[p.SPDXID]] = f
	}
	return facts
}

// spdxKey keys the facts of the package with purl (canonical).
func spdxKey(purl string) string { return "lotse-spdx-purl:" + purl }

// keySPDXPackages gives the packages trivy decoded from an SPDX document
// the keys of their facts (spdxKey) as their bom-refs, for the passes that
// read facts by bom-ref; the returned function takes them away again, so
// that reports show no bom-ref the document did not have.
func keySPDXPackages(bom *types.SBOM, facts map[string]componentFacts) (unkey func()) {
	each := func(f func(ref *string, purl *packageurl.PackageURL)) {
		for i := range bom.Packages {
			for j := range bom.Packages[i].Packages {
				p := &bom.Packages[i].Packages[j]
				f(&p.Identifier.BOMRef, p.Identifier.PURL)
			}
		}
		for i := range bom.Applications {
			for j := range bom.Applications[i].Packages {
				p := &bom.Applications[i].Packages[j]
				f(&p.Identifier.BOMRef, p.Identifier.PURL)
			}
		}
	}
	each(func(ref *string, purl *packageurl.PackageURL) {
		if *ref != "" || purl == nil {
			return
		}
		if key := spdxKey(purl.ToString()); hasKey(facts, key) {
			*ref = key
		}
	})
	return func() {
		each(func(ref *string, _ *packageurl.PackageURL) {
			if strings.HasPrefix(*ref, spdxKey("")) {
				*ref = ""
			}
		})
	}
}

// spdxPublisher is the maintainer an SPDX supplier names ("Person: Debian
// (debian@example.org)"), as syft's CycloneDX writes it ("Debian
// <debian@example.org>").
func spdxPublisher(supplier string) string {
	s, ok := strings.CutPrefix(supplier, "Person: ")
	if !ok {
		if s, ok = strings.CutPrefix(supplier, "Organization: "); !ok {
			return ""
		}
	}
	if i := strings.LastIndex(s, " ("); i >= 0 && strings.HasSuffix(s, ")") {
		s = s[:i] + " <" + s[i+2:len(s)-1] + ">"
	}
	return s
}

func hasKey(facts map[string]componentFacts, key string) bool {
	_, ok := facts[key]
	return ok
}
