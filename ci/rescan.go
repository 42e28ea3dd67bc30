package ci

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lotse/lotse/internal/atomicfile"
	"github.com/lotse/lotse/internal/intoto"
	"github.com/lotse/lotse/internal/oci"
	"github.com/lotse/lotse/internal/scan"
	"github.com/lotse/lotse/internal/sign"
	"github.com/lotse/lotse/internal/vuln"
)

func (a *app) rescanCmd() *cobra.Command {
	var (
		rf           registryFlags
		df           dbFlags
		gf           gateFlags
		sf           signFlags
		vf           verifyFlags
		format       string
		output       string
		gitlabReport string
	)
	cmd := &cobra.Command{
		Use:   "rescan IMAGE",
		Short: "Scan a released image's attested SBOM with today's vulnerability DB and attest the result",
		Long: `Re-scan a released image without reading it: take the SBOM that lotse release
attested (cyclonedx), verified with --verify-key or the keyless flags as
'lotse verify' checks them, scan its packages with the current vulnerability
DB exactly as 'lotse scan --sbom' does (.trivyignore or --ignore-file
included), and attest the result as a new vuln attestation signed with --key
or keylessly, as 'lotse release' does. Its scanFinishedOn is now: lotsed's
scan gate reads the newest vuln attestation, so a stage's gates.maxScanAge
is met again, and the gate judges today's findings.

IMAGE may be a tag: it is resolved to its digest once, and the SBOM is read
from and the result attested to that digest. Writes the same reports as
'lotse scan'. --offline, as with release: no DB download, no transparency-log
entry for the attestation, and a key-signed SBOM is verified without one.

With --fail-on, findings at or above it exit 3 after the result is attested:
the attestation records what is known now, whether it passes or not. Not
attesting a failing scan would leave the older, cleaner one as the newest.`,
		Example: `  # a scheduled pipeline, e.g. nightly, for what runs in production
  lotse rescan harbor.example.com/team/app@sha256:... --verify-key keys/cosign.pub \
      --key env://COSIGN_PRIVATE_KEY --gitlab-report gl-container-scanning-report.json
  lotse rescan harbor.example.com/team/app:1.2.3 \
      --certificate-identity 'https://gitlab.com/team/app//.gitlab-ci.yml@refs/heads/main' \
      --certificate-oidc-issuer https://gitlab.com --fail-on critical`,
		Args: exactArgs(1, "one IMAGE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := scan.ParseFormat(format)
			if err != nil {
				return &UsageError{Err: err}
			}
			opts, err := gf.options(cmd)
			if err != nil {
				return err
			}
			vo, err := vf.verifyOptions(cmd.Flags())
			if err != nil {
				return err
			}
			if vo.Key != "" {
				vo.Offline = df.offline
			}
			if sf.key == "" && a.env.get("SIGSTORE_ID_TOKEN") == "" {
				return usagef("no signing key: give --key (a file, env://VAR or a KMS URI) or set SIGSTORE_ID_TOKEN (GitLab id_tokens, aud sigstore)")
			}
			if _, err := a.readSigningKey(sf.key); err != nil {
				return err
			}
			src, err := oci.ParseSource(args[0], rf.insecure)
			if err != nil {
				return &UsageError{Err: err}
			}
			if src.Kind != oci.Registry {
				return usagef("rescan needs a registry reference, not %s", args[0])
			}
			if err := rf.resolve(a, cmd.InOrStdin()); err != nil {
				return err
			}
			sf.offline = df.offline // --offline: no DB download and no transparency log, as with release
			return a.rescan(cmd.Context(), src, rescanJob{rf: &rf, df: &df, gf: &gf, sf: &sf, vo: vo, opts: opts, format: f, output: output, gitlabReport: gitlabReport})
		},
	}
	a.addRegistryFlags(cmd.Flags(), &rf)
	a.addDBFlags(cmd.Flags(), &df)
	a.addGateFlags(cmd.Flags(), &gf)
	a.addSignFlags(cmd.Flags(), &sf, false)
	a.addVerifyFlagsAs(cmd.Flags(), &vf, "verify-key")
	cmd.Flags().StringVar(&format, "format", "table", "table, json or sarif")
	cmd.Flags().StringVarP(&output, "output", "o", "", "write the report to FILE instead of standard output")
	cmd.Flags().StringVar(&gitlabReport, "gitlab-report", "", "also write GitLab's container-scanning report (schema 15.x) to FILE")
	return cmd
}

// rescanJob is what rescan's flags decided.
type rescanJob struct {
	rf           *registryFlags
	df           *dbFlags
	gf           *gateFlags
	sf           *signFlags
	vo           sign.VerifyOptions // what a valid SBOM attestation is
	opts         scan.Options
	format       scan.Format
	output       string
	gitlabReport string
}

func (a *app) rescan(ctx context.Context, src oci.Source, j rescanJob) error {
	host := src.Ref.Context().RegistryStr()
	oo, err := a.ociOptions(j.rf, host)
	if err != nil {
		return err
	}
	d, err := oci.Resolve(ctx, src.Ref, oo)
	if err != nil {
		return err
	}
	image := d.String()
	u, p := a.credentialsFor(j.rf, host)
	j.vo.Options = sign.Options{Offline: j.vo.Offline, Insecure: j.rf.insecure, Username: u, Password: p}
	out, err := sign.VerifyAttestation(ctx, image, sign.CycloneDX, j.vo)
	if err != nil {
		return fmt.Errorf("rescan reads the SBOM that lotse release attested: cyclonedx attestation: %w", err)
	}
	bom, n, err := attestedSBOM(out)
	if err != nil {
		return fmt.Errorf("cyclonedx attestation of %s: %w", image, err)
	}
	a.log.DebugContext(ctx, "sbom attestation verified", "image", image, "attestations", n, "bytes", len(bom))
	sc, err := a.openScanner(ctx, j.df, j.rf)
	if err != nil {
		return err
	}
	defer sc.Close()
	var res *scan.Result
	if err := a.section("rescan", "Vulnerability scan of the attested SBOM of "+image, func() error {
		res, err = sc.SBOM(ctx, bytes.NewReader(bom), image, j.opts)
		return err
	}); err != nil {
		return err
	}
	sc.Close()
	var rep bytes.Buffer
	if err := res.Write(ctx, &rep, j.format); err != nil {
		return err
	}
	if j.output == "" || j.output == "-" {
		if _, err := a.stdout.Write(rep.Bytes()); err != nil {
			return err
		}
	} else if err := atomicfile.Write(j.output, rep.Bytes()); err != nil {
		return err
	}
	if j.gitlabReport != "" {
		if err := a.writeGitLabReport(j.gitlabReport, res.Report, image); err != nil {
			return err
		}
	}
	// The truth is attested whatever the gate says; see the command's help.
	if err := a.attestScan(ctx, image, res, a.signOptions(j.sf, j.rf, host)); err != nil {
		return err
	}
	printf(a.stderr, "attested vuln: %s (%d finding(s): %s)\n", image, len(res.Report.Findings), vuln.Summary(res.Report.Findings))
	a.log.InfoContext(ctx, "rescanned", "image", image, "findings", len(res.Report.Findings))
	return a.printGate(res.Report, j.gf)
}

// attestScan attests res as image's vuln attestation, as release does.
func (a *app) attestScan(ctx context.Context, image string, res *scan.Result, so sign.Options) error {
	dir, err := os.MkdirTemp("", "lotse-rescan")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var pred bytes.Buffer
	if err := res.WriteVulnPredicate(ctx, &pred); err != nil {
		return err
	}
	file := filepath.Join(dir, "vuln-predicate.json")
	if err := os.WriteFile(file, pred.Bytes(), 0o600); err != nil {
		return err
	}
	return sign.Attest(ctx, image, sign.Vuln, file, so)
}

// attestedSBOM picks the SBOM to scan out of cosign's verify-attestation
// output for cyclonedx: the one with the newest metadata.timestamp, among
// equally new ones the one listing the most components (an image is
// attested once by lotse release; several SBOMs come from re-releases with
// newer syft versions). n is how many there were.
func attestedSBOM(out []byte) (bom []byte, n int, err error) {
	sts, err := intoto.Read(out)
	if err != nil {
		return nil, 0, err
	}
	var (
		bestAt time.Time
		bestN  int
	)
	for _, st := range sts {
		if !strings.Contains(st.PredicateType, "cyclonedx") {
			continue
		}
		var doc struct {
			BOMFormat string `json:"bomFormat"`
			Metadata  struct {
				Timestamp string `json:"timestamp"`
			} `json:"metadata"`
			Components []json.RawMessage `json:"components"`
		}
		if err := json.Unmarshal(st.Predicate, &doc); err != nil || doc.BOMFormat != "CycloneDX" {
			return nil, 0, fmt.Errorf("attestation %d is not a CycloneDX SBOM", n+1)
		}
		n++
		at, _ := time.Parse(time.RFC3339Nano, doc.Metadata.Timestamp) // no time: oldest
		if bom == nil || at.After(bestAt) || at.Equal(bestAt) && len(doc.Components) > bestN {
			bom, bestAt, bestN = st.Predicate, at, len(doc.Components)
		}
	}
	if bom == nil {
		return nil, 0, errors.New("no CycloneDX SBOM among the verified attestations")
	}
	return bom, n, nil
}

// attestedScan describes the vuln attestation that lotsed's scan gate
// reads: the newest scan. Empty for other types or output it cannot read
// (verify has verified it; describing it is extra).
func attestedScan(t sign.AttestationType, out []byte) string {
	if t != sign.Vuln {
		return ""
	}
	s, n, err := vuln.NewestAttested(out)
	if err != nil {
		return ""
	}
	when := "no scan time"
	if !s.ScannedAt.IsZero() {
		when = "scanned " + s.ScannedAt.UTC().Format(time.RFC3339)
	}
	found := fmt.Sprintf("%d finding(s)", s.Findings)
	if s.Findings > 0 {
		found += ", highest " + s.Highest.String()
	}
	return fmt.Sprintf(": newest of %d, %s, %s", n, when, found)
}
