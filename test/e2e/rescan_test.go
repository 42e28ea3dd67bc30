package e2e

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lotse/lotse/ci"
	"github.com/lotse/lotse/internal/promotion"
	"github.com/lotse/lotse/internal/sign"
	"github.com/lotse/lotse/test/fixture"
	"github.com/lotse/lotse/test/gitlabsim"
)

// lotse runs one lotse command line in process, as a CI job would.
func (w *world) lotse(args ...string) (int, string) {
	env := map[string]string{"COSIGN_PASSWORD": keyPassword, "HOME": w.t.TempDir()}
	var out bytes.Buffer
	code := ci.Run(context.Background(), ci.Info{Version: "e2e"}, args, func(k string) string { return env[k] }, &out, &out)
	return code, out.String()
}

// A version released long ago reaches production's gates with the scan
// made at its release: production's gates.maxScanAge blocks it. A
// scheduled `lotse rescan` attests a scan with today's DB; an operator's
// `/lotse retry production` passes the gate and lotse opens the MR.
func TestStaleScanBlocksUntilRescanned(t *testing.T) {
	w := newWorld(t)
	// production wants a scan of the last day; staging takes any age.
	yaml := strings.ReplaceAll(lotseYAML, "REGISTRY", w.registry)
	yaml = strings.Replace(yaml, "gates: {signature: true, maxSeverity: high}", "gates: {signature: true, maxSeverity: high, maxScanAge: 24h}", 1)
	_, err := w.sim.Commit(gitopsProject, "mallory", gitlabsim.CommitSpec{Branch: "main", Message: "production: fresh scans only",
		Files: map[string]string{"lotse.yaml": yaml}})
	must(t, err)

	// The image as lotse release left it: signed, its SBOM attested, and a
	// scan (one MEDIUM finding) made on 2026-01-01.
	alp, err := fixture.AlpineImage()
	must(t, err)
	img := w.release(alp, "aged", true, "MEDIUM")
	sbomFile := filepath.Join(t.TempDir(), "sbom.cdx.json")
	if code, out := w.lotse("sbom", img, "-o", sbomFile); code != 0 {
		t.Fatalf("lotse sbom: %d\n%s", code, out)
	}
	must(t, sign.Attest(context.Background(), img, sign.CycloneDX, sbomFile, sign.Options{Key: filepath.Join(w.keys, "cosign.key"), Offline: true}))

	base := w.startLotsed(filepath.Join(t.TempDir(), "lotsed.db"))
	w.bumpDev(img)
	eventually(t, "the image to land in staging", 30*time.Second, func() (bool, string) {
		return w.valuesDigest("staging") == digestOf(img), w.describeStatuses()
	})
	stale := "older than the stage's maxScanAge 24h; re-scan with lotse rescan"
	eventually(t, "production to be blocked on the scan's age", 30*time.Second, func() (bool, string) {
		for _, a := range auditOf(t, base, promotion.AuditBlocked) {
			if a.Stage == "production" && strings.Contains(a.Detail, "scan: scan attestation is ") && strings.Contains(a.Detail, stale) {
				return true, ""
			}
		}
		return false, w.describeStatuses()
	})
	if _, ok := w.openMR("production"); ok {
		t.Fatal("a production MR was opened for an image with a stale scan")
	}
	// A retry without a new scan changes nothing.
	stagingMR := w.stagingMR()
	_, err = w.client("alice").CreateNote(context.Background(), gitopsProject, stagingMR, "/lotse retry production")
	must(t, err)
	time.Sleep(1500 * time.Millisecond)
	if _, ok := w.openMR("production"); ok {
		t.Fatal("a retry without a rescan opened the production MR")
	}

	// The scheduled pipeline: lotse rescan with today's (fixture) DB.
	cache := t.TempDir()
	must(t, fixture.WriteVulnDB(cache, time.Now()))
	code, out := w.lotse("rescan", img, "--verify-key", filepath.Join(w.keys, "cosign.pub"), "--key", filepath.Join(w.keys, "cosign.key"),
		"--offline", "--cache-dir", cache, "--fail-on", "high")
	if code != 0 || !strings.Contains(out, "attested vuln: "+img+" (3 finding(s)") {
		t.Fatalf("lotse rescan: exit %d\n%s", code, out)
	}
	_, err = w.client("alice").CreateNote(context.Background(), gitopsProject, stagingMR, "/lotse retry production")
	must(t, err)
	eventually(t, "lotse's production MR after the rescan", 30*time.Second, func() (bool, string) {
		mr, ok := w.openMR("production")
		return ok && mr.Author.Username == "lotse-bot" && strings.Contains(mr.Title, digestOf(img)[:19]), w.describeStatuses()
	})
	if st := w.statuses()["lotse/production"]; st == "failed" {
		t.Errorf("production status still failed: %s", w.describeStatuses())
	}
}

// stagingMR is the IID of lotse's (merged) staging MR, where operators
// write ChatOps commands for any stage.
func (w *world) stagingMR() int64 {
	for iid := 1; iid < 50; iid++ {
		mr, err := w.sim.MergeRequest(gitopsProject, iid)
		if err != nil {
			break
		}
		if mr.SourceBranch == "lotse/shop/staging" {
			return int64(iid)
		}
	}
	w.t.Fatal(fmt.Sprintf("no staging MR; statuses %s", w.describeStatuses()))
	return 0
}
