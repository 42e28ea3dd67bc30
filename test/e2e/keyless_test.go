package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/lotse/lotse/internal/sign/sigstoretest"
	"github.com/lotse/lotse/test/fixture"
	"github.com/lotse/lotse/test/gitlabsim"
)

const (
	keylessIssuer = "https://gitlab.example.com"
	mainIdentity  = "https://gitlab.example.com/team/shop//.gitlab-ci.yml@refs/heads/main"
)

// Keyless in the gates: lotse.yaml's signing.keyless names the issuer and
// the exact identity, and a trusted root in the repository (a private
// Sigstore made in the test, with real certificates and log entries). An
// image signed by the main branch's pipeline passes staging's gates; one
// signed by main-evil, another project or another issuer is blocked.
func TestKeylessGates(t *testing.T) {
	w := newWorld(t)
	ss, err := sigstoretest.New()
	must(t, err)
	root, err := ss.TrustedRoot()
	must(t, err)
	yaml := strings.ReplaceAll(strings.Replace(lotseYAML, "  publicKey: keys/cosign.pub\n",
		"  keyless:\n    issuer: "+keylessIssuer+"\n    identity: "+mainIdentity+"\n    trustedRoot: keys/trusted_root.json\n", 1), "REGISTRY", w.registry)
	_, err = w.sim.Commit(gitopsProject, "lotse-bot", gitlabsim.CommitSpec{Branch: "main", Message: "keyless",
		Files: map[string]string{"lotse.yaml": yaml, "keys/trusted_root.json": string(root)}})
	must(t, err)
	base := w.startLotsed(filepath.Join(t.TempDir(), "lotsed.db"))

	img, err := fixture.Image()
	must(t, err)
	for i, tc := range []struct {
		identity, issuer string
		pass             bool
		reason           string
	}{
		{mainIdentity, keylessIssuer, true, ""},
		{mainIdentity + "-evil", keylessIssuer, false, "main-evil"},
		{"https://gitlab.example.com/team/other//.gitlab-ci.yml@refs/heads/main", keylessIssuer, false, "team/other"},
		{mainIdentity, "https://gitlab.evil.example", false, "gitlab.evil"},
	} {
		t.Run(tc.identity[strings.LastIndex(tc.identity, "/")+1:]+"-"+tc.issuer[8:], func(t *testing.T) {
			ref := w.releaseKeyless(ss, mutate.Annotations(img, map[string]string{"n": fmt.Sprint(i)}).(v1.Image), fmt.Sprintf("kl%d", i), tc.identity, tc.issuer)
			w.bumpDev(ref)
			if tc.pass {
				eventually(t, "the keyless-signed image to land in staging", 30*time.Second, func() (bool, string) {
					return w.valuesDigest("staging") == digestOf(ref), w.describeStatuses()
				})
				return
			}
			eventually(t, "the staging promotion to be blocked", 30*time.Second, func() (bool, string) {
				var status []struct {
					Stages []struct{ Stage, Promotion string }
				}
				apiGet(t, base, "/api/v1/status", &status)
				p := status[0].Stages[1].Promotion
				return strings.HasPrefix(p, "blocked") && strings.Contains(p, digestOf(ref)[7:19]), p
			})
			if w.valuesDigest("staging") == digestOf(ref) {
				t.Fatal("an image signed by the wrong identity reached staging")
			}
		})
	}
}

// releaseKeyless pushes img and signs and attests it keylessly as identity.
func (w *world) releaseKeyless(ss *sigstoretest.Sigstore, img v1.Image, tag, identity, issuer string) string {
	t := w.t
	ref, err := name.NewTag(w.registry + "/team/shop:" + tag)
	must(t, err)
	must(t, remote.Write(ref, img))
	d, err := img.Digest()
	must(t, err)
	digest := ref.Context().Digest(d.String()).String()
	must(t, ss.Sign(digest, identity, issuer))
	report := `{"scanner":{"result":{"SchemaVersion":2,"Results":[{"Target":"x","Vulnerabilities":[{"VulnerabilityID":"CVE-2024-0001","Severity":"LOW"}]}]}}}`
	must(t, ss.Attest(digest, identity, issuer, "vuln", []byte(report)))
	return digest
}
