package ci

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/lotse/lotse/internal/oci"
	"github.com/lotse/lotse/internal/sbom"
	"github.com/lotse/lotse/internal/scan"
	"github.com/lotse/lotse/internal/sign"
	"github.com/lotse/lotse/internal/vuln"
)

func (a *app) releaseCmd() *cobra.Command {
	var (
		rf           registryFlags
		df           dbFlags
		gf           gateFlags
		sf           signFlags
		to           string
		tags         []string
		dotEnv       string
		sbomFile     string
		scanFile     string
		gitlabReport string
	)
	cmd := &cobra.Command{
		Use:   "release SRC --to DST",
		Short: "SBOM, scan, gate, publish, sign and attest in one step",
		Long: `Release an image: read SRC once, write its SBOM, scan it, and gate on the scan
before anything reaches DST; then publish it by digest, sign it, and attest the
SBOM (cyclonedx) and the scan result (vuln). Writes every report: the
CycloneDX SBOM, trivy's JSON report, GitLab's container-scanning report, and
the dotenv file with LOTSE_IMAGE and LOTSE_DIGEST.

A failing gate exits 3 and pushes nothing.`,
		Example: `  lotse release oci:build/image --to harbor.example.com/team/app --tag $CI_COMMIT_SHORT_SHA \
      --fail-on critical --key env://COSIGN_PRIVATE_KEY --dotenv release.env`,
		Args: exactArgs(1, "one SRC"),
		RunE: func(cmd *cobra.Command, args []string) error {
			// Check everything that can be checked before touching anything.
			if to == "" {
				return usagef("--to DST is required")
			}
			dst, err := oci.ParseRepository(to, rf.insecure)
			if err != nil {
				return &UsageError{Err: err}
			}
			if _, _, err := gf.threshold(); err != nil {
				return err
			}
			scanOpts, err := gf.options(cmd)
			if err != nil {
				return err
			}
			if sf.key == "" && a.env.get("SIGSTORE_ID_TOKEN") == "" {
				return usagef("no signing key: give --key (a file, env://VAR or a KMS URI) or set SIGSTORE_ID_TOKEN (GitLab id_tokens, aud sigstore)")
			}
			if err := rf.resolve(a, cmd.InOrStdin()); err != nil {
				return err
			}
			ctx := cmd.Context()
			start := a.now()

			img, err := a.load(ctx, args[0], &rf)
			if err != nil {
				return err
			}
			defer img.close()
			a.log.DebugContext(ctx, "image read", "took", a.now().Sub(start))
			// The destination needs the explicit credentials too.
			opts, err := a.ociOptions(&rf, dst.RegistryStr())
			if err != nil {
				return err
			}
			sc, err := a.openScanner(ctx, &df, &rf)
			if err != nil {
				return err
			}
			defer sc.Close()
			a.log.DebugContext(ctx, "vulnerability DB open", "took", a.now().Sub(start))

			// SBOM and scan read the local copy side by side.
			var (
				doc *sbom.SBOM
				res *scan.Result
			)
			err = a.section("analyse", "SBOM and vulnerability scan of "+args[0], func() error {
				g, gctx := errgroup.WithContext(ctx)
				g.Go(func() error {
					t := a.now()
					var err error
					doc, err = sbom.Generate(gctx, img.art.Image, args[0], sbom.Tool{Name: "lotse", Version: a.info.Version}, filepath.Join(img.dir, "sbom"))
					a.log.DebugContext(ctx, "sbom done", "took", a.now().Sub(t))
					return err
				})
				g.Go(func() error {
					t := a.now()
					var err error
					res, err = sc.Image(gctx, img.art.Image, args[0], scanOpts)
					a.log.DebugContext(ctx, "scan done", "took", a.now().Sub(t))
					return err
				})
				return g.Wait()
			})
			if err != nil {
				return err
			}
			sc.Close()

			// Reports first: GitLab shows them whether the gate passes or not.
			sbomBytes, err := doc.Bytes(sbom.CycloneDXJSON)
			if err != nil {
				return err
			}
			var trivyJSON bytes.Buffer
			if err := res.Write(ctx, &trivyJSON, scan.FormatJSON); err != nil {
				return err
			}
			shown := dst.String()
			if len(tags) > 0 {
				shown += ":" + tags[0]
			}
			if err := writeFileAtomic(sbomFile, sbomBytes); err != nil {
				return err
			}
			if err := writeFileAtomic(scanFile, trivyJSON.Bytes()); err != nil {
				return err
			}
			if err := a.writeGitLabReport(gitlabReport, res.Report, shown); err != nil {
				return err
			}
			printf(a.stdout, "sbom     %d packages -> %s\n", doc.Len(), sbomFile)
			printf(a.stdout, "scan     %s -> %s\n", vuln.Summary(res.Report.Findings), gitlabReport)
			if err := a.gate(res.Report, &gf); err != nil {
				printf(a.stdout, "gate     failed: nothing was published\n")
				return err
			}

			t := a.now()
			d, err := a.push(ctx, img.art, dst, tags, opts, "")
			if err != nil {
				return err
			}
			a.log.DebugContext(ctx, "pushed", "took", a.now().Sub(t))
			t = a.now()
			sf.offline = df.offline // --offline: no DB download and no transparency log
			so := a.signOptions(&sf, &rf, dst.RegistryStr())
			err = a.section("sign", "Sign and attest "+d.String(), func() error {
				if err := sign.Sign(ctx, d.String(), so); err != nil {
					return err
				}
				if err := sign.Attest(ctx, d.String(), sign.CycloneDX, sbomFile, so); err != nil {
					return err
				}
				return sign.Attest(ctx, d.String(), sign.Vuln, scanFile, so)
			})
			if err != nil {
				return fmt.Errorf("published %s but %w", d, err)
			}
			a.log.DebugContext(ctx, "signed and attested", "took", a.now().Sub(t))
			if dotEnv != "" {
				b, err := dotenv(map[string]string{"LOTSE_IMAGE": d.String(), "LOTSE_DIGEST": d.DigestStr()})
				if err != nil {
					return err
				}
				if err := writeFileAtomic(dotEnv, b); err != nil {
					return err
				}
			}
			printf(a.stdout, "image    %s\n", d)
			if len(tags) > 0 {
				printf(a.stdout, "tags     %s\n", strings.Join(tags, ", "))
			}
			printf(a.stdout, "signed   signature, cyclonedx and vuln attestations\n")
			a.log.InfoContext(ctx, "released", "image", d.String(), "took", a.now().Sub(start).Round(time.Millisecond))
			return nil
		},
	}
	a.addRegistryFlags(cmd.Flags(), &rf)
	a.addDBFlags(cmd.Flags(), &df)
	a.addGateFlags(cmd.Flags(), &gf)
	a.addSignFlags(cmd.Flags(), &sf, false)
	cmd.Flags().StringVar(&to, "to", "", "destination repository in Harbor or any OCI registry")
	cmd.Flags().StringArrayVar(&tags, "tag", nil, "tag to set in DST (repeatable)")
	cmd.Flags().StringVar(&dotEnv, "dotenv", "", "write LOTSE_IMAGE and LOTSE_DIGEST to FILE")
	cmd.Flags().StringVar(&sbomFile, "sbom-file", "gl-sbom-image.cdx.json", "CycloneDX SBOM file (artifacts:reports:cyclonedx)")
	cmd.Flags().StringVar(&scanFile, "scan-file", "trivy-report.json", "trivy JSON report file (the vuln attestation's predicate)")
	cmd.Flags().StringVar(&gitlabReport, "gitlab-report", "gl-container-scanning-report.json", "GitLab container-scanning report file")
	return cmd
}
