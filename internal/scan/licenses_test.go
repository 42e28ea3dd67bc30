package scan

import (
	"strings"
	"testing"

	"github.com/aquasecurity/trivy/pkg/licensing"

	"github.com/lotse/lotse/test/fixture"
)

// Once a scanner is open, trivy's license classification (of the LICENSE
// packed in a jar, for one) names nothing and builds no classifier: the
// linknamed variables are trivy's.
func TestTrivyClassifiesNoLicense(t *testing.T) {
	skipLicenseClassification()
	lf, err := licensing.Classify("META-INF/LICENSE", strings.NewReader(fixture.MITLicense), 0.9)
	if err != nil {
		t.Fatal(err)
	}
	if lf != nil && len(lf.Findings) > 0 {
		t.Fatalf("trivy classified the MIT license as %v: its classifier is still built", lf.Findings.Names())
	}
	if trivyClassifier == nil {
		t.Fatal("no classifier set")
	}
}
