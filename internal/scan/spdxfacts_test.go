package scan

import (
	"reflect"
	"strings"
	"testing"
)

// spdxFacts reads syft's SPDX: files from evident-by relationships (not
// for a jar that shares its file with another package), maintainers and
// vendors from suppliers, an RPM's release from its version, lotse's mark
// from annotations; a purl that names two packages gets no facts, and a
// document syft did not write none at all.
func TestSPDXFacts(t *testing.T) {
	doc := `{
 "spdxVersion": "SPDX-2.3",
 "creationInfo": {"creators": ["Organization: Anchore, Inc", "Tool: lotse-test"]},
 "packages": [
  {"SPDXID": "SPDXRef-Package-deb-gh", "supplier": "Person: GitHub (cli@github.com)",
   "externalRefs": [{"referenceType": "purl", "referenceLocator": "pkg:deb/debian/gh@2.40.0?arch=amd64"}]},
  {"SPDXID": "SPDXRef-Package-deb-python3-requests", "supplier": "Person: Debian Python Team (team+python@tracker.debian.org)",
   "externalRefs": [{"referenceType": "purl", "referenceLocator": "pkg:deb/debian/python3-requests@2.28.1"}]},
  {"SPDXID": "SPDXRef-Package-python-requests", "supplier": "NOASSERTION",
   "annotations": [{"comment": "lotse:installedBy: SPDXRef-Package-deb-python3-requests"}, {"comment": "other: x"}],
   "externalRefs": [{"referenceType": "purl", "referenceLocator": "pkg:pypi/requests@2.28.1"}]},
  {"SPDXID": "SPDXRef-Package-rpm-amazon", "supplier": "NOASSERTION", "versionInfo": "1:2.0-1.amzn2023.0.1",
   "externalRefs": [{"referenceType": "purl", "referenceLocator": "pkg:rpm/amazon/bash@2.0-1.amzn2023.0.1?epoch=1"}]},
  {"SPDXID": "SPDXRef-Package-java-app", "supplier": "NOASSERTION",
   "externalRefs": [{"referenceType": "purl", "referenceLocator": "pkg:maven/com.example/app@1.0"}]},
  {"SPDXID": "SPDXRef-Package-java-inner", "supplier": "NOASSERTION",
   "externalRefs": [{"referenceType": "purl", "referenceLocator": "pkg:maven/org.yaml/snakeyaml@1.33"}]},
  {"SPDXID": "SPDXRef-Package-java-lone", "supplier": "NOASSERTION",
   "externalRefs": [{"referenceType": "purl", "referenceLocator": "pkg:maven/org.example/lone@1.0"}]},
  {"SPDXID": "SPDXRef-Package-npm-twice-1", "externalRefs": [{"referenceType": "purl", "referenceLocator": "pkg:npm/lodash@4.17.20"}]},
  {"SPDXID": "SPDXRef-Package-npm-twice-2", "externalRefs": [{"referenceType": "purl", "referenceLocator": "pkg:npm/lodash@4.17.20"}]}
 ],
 "files": [
  {"SPDXID": "SPDXRef-File-metadata", "fileName": "/usr/lib/python3/dist-packages/requests-2.28.1.egg-info/PKG-INFO"},
  {"SPDXID": "SPDXRef-File-app", "fileName": "app/app.jar"},
  {"SPDXID": "SPDXRef-File-lone", "fileName": "opt/lib/lone.jar"}
 ],
 "relationships": [
  {"spdxElementId": "SPDXRef-Package-python-requests", "relatedSpdxElement": "SPDXRef-File-metadata", "relationshipType": "OTHER", "comment": "evident-by: indicates the package's existence is evident by the given file"},
  {"spdxElementId": "SPDXRef-Package-java-app", "relatedSpdxElement": "SPDXRef-File-app", "relationshipType": "OTHER", "comment": "evident-by: ..."},
  {"spdxElementId": "SPDXRef-Package-java-inner", "relatedSpdxElement": "SPDXRef-File-app", "relationshipType": "OTHER", "comment": "evident-by: ..."},
  {"spdxElementId": "SPDXRef-Package-java-lone", "relatedSpdxElement": "SPDXRef-File-lone", "relationshipType": "OTHER", "comment": "evident-by: ..."},
  {"spdxElementId": "SPDXRef-Package-java-lone", "relatedSpdxElement": "SPDXRef-File-metadata", "relationshipType": "CONTAINS"}
 ]
}`
	got := spdxFacts([]byte(doc))
	key := func(purl string) string { return spdxKey(purl) }
	want := map[string]componentFacts{
		key("pkg:deb/debian/gh@2.40.0?arch=amd64"):            {syft: true, purlType: "deb", publisher: "GitHub <cli@github.com>"},
		key("pkg:deb/debian/python3-requests@2.28.1"):         {syft: true, purlType: "deb", publisher: "Debian Python Team <team+python@tracker.debian.org>"},
		key("pkg:pypi/requests@2.28.1"):                       {syft: true, purlType: "pypi", path: "usr/lib/python3/dist-packages/requests-2.28.1.egg-info/PKG-INFO", installedBy: []string{key("pkg:deb/debian/python3-requests@2.28.1")}},
		key("pkg:rpm/amazon/bash@2.0-1.amzn2023.0.1?epoch=1"): {syft: true, purlType: "rpm", release: "1.amzn2023.0.1"},
		key("pkg:maven/com.example/app@1.0"):                  {syft: true, purlType: "maven"},
		key("pkg:maven/org.yaml/snakeyaml@1.33"):              {syft: true, purlType: "maven"},
		key("pkg:maven/org.example/lone@1.0"):                 {syft: true, purlType: "maven", path: "opt/lib/lone.jar"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("facts:\n got %+v\nwant %+v", got, want)
	}

	other := strings.Replace(doc, `"Organization: Anchore, Inc", `, "", 1)
	if f := spdxFacts([]byte(other)); f != nil {
		t.Errorf("a document syft did not write: %+v", f)
	}
}
