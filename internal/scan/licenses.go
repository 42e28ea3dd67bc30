package scan

import (
	"sync"
	_ "unsafe" // go:linkname

	classifier "github.com/google/licenseclassifier/v2"
)

// trivy classifies the license file packed in every jar (and the license
// files of a few other package types) with google/licenseclassifier, whose
// classifier takes about a second of CPU and a few hundred MB to build,
// once per process, on the first such file. What it finds becomes the
// packages' licenses, which reach none of lotse's outputs: lotse reports
// vulnerabilities, and syft's SBOM carries the licenses. No trivy option
// turns the classification off, so lotse gives trivy's once-built
// classifier (trivy's pkg/licensing cf, behind classifierOnce) an empty
// one before any scan: it names no license, at no cost.
//
// A trivy that renames the two variables fails the link;
// TestTrivyClassifiesNoLicense checks that trivy's Classify then finds
// nothing in a license text.

//go:linkname trivyClassifier github.com/aquasecurity/trivy/pkg/licensing.cf
var trivyClassifier *classifier.Classifier

//go:linkname trivyClassifierOnce github.com/aquasecurity/trivy/pkg/licensing.classifierOnce
var trivyClassifierOnce sync.Once

// skipLicenseClassification makes trivy's license classification a no-op
// in this process. It is idempotent.
func skipLicenseClassification() {
	trivyClassifierOnce.Do(func() { trivyClassifier = classifier.NewClassifier(1) })
}
