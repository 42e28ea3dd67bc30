package ci

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/lotse/lotse/internal/atomicfile"
	"github.com/lotse/lotse/internal/gcpace"
	"github.com/lotse/lotse/internal/oci"
	"github.com/lotse/lotse/internal/sbom"
	"github.com/lotse/lotse/internal/scan"
	"github.com/lotse/lotse/internal/sign"
	"github.com/lotse/lotse/internal/vuln"
)

// releaseFlags are release's own flags.
type releaseFlags struct {
	to           string
	tags         []string
	dotEnv       string
	sbomFile     string
	scanFile     string
	gitlabReport string
}

func (a *app) releaseCmd() *cobra.Command {
	var (
		rf registryFlags
		df dbFlags
		gf gateFlags
		sf signFlags
		lf releaseFlags
	)
	cmd := &cobra.Command{
		Use:   "release SRC --to DST",
		Short: "SBOM, scan, gate, publish, sign and attest in one step",
		Long: `Release an image: read SRC once, write its SBOM, scan it, and gate on the scan
before anything reaches DST; then publish it by digest, sign it, attest the
SBOM (cyclonedx) and the scan result (vuln), and only then set the tags.
Writes every report: the CycloneDX SBOM, trivy's JSON report, GitLab's
container-scanning report, and the dotenv file with LOTSE_IMAGE and
LOTSE_DIGEST.

A failing gate exits 3 and pushes nothing. A release that fails after the
gate leaves at most an untagged manifest in DST, never a tag.`,
		Example: `  lotse release oci:build/image --to harbor.example.com/team/app --tag $CI_COMMIT_SHORT_SHA \
      --fail-on critical --key env://COSIGN_PRIVATE_KEY --dotenv release.env`,
		Args: exactArgs(1, "one SRC"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.release(cmd, args[0], &rf, &df, &gf, &sf, &lf)
		},
	}
	a.addRegistryFlags(cmd.Flags(), &rf)
	a.addDBFlags(cmd.Flags(), &df)
	addLayerCacheFlag(cmd.Flags(), &df)
	a.addGateFlags(cmd.Flags(), &gf)
	a.addSignFlags(cmd.Flags(), &sf, false)
	cmd.Flags().StringVar(&lf.to, "to", "", "destination repository in Harbor or any OCI registry")
	cmd.Flags().StringArrayVar(&lf.tags, "tag", nil, "tag to set in DST (repeatable)")
	cmd.Flags().StringVar(&lf.dotEnv, "dotenv", "", "write LOTSE_IMAGE and LOTSE_DIGEST to FILE")
	cmd.Flags().StringVar(&lf.sbomFile, "sbom-file", "gl-sbom-image.cdx.json", "CycloneDX SBOM file (artifacts:reports:cyclonedx)")
	cmd.Flags().StringVar(&lf.scanFile, "scan-file", "trivy-report.json", "trivy JSON report file (attested as the vuln predicate)")
	cmd.Flags().StringVar(&lf.gitlabReport, "gitlab-report", "gl-container-scanning-report.json", "GitLab container-scanning report file")
	return cmd
}

// release runs the steps as a pipeline. The SBOM (syft, the slow part) runs
// beside scan → gate → publish → sign → attest scan; the SBOM attestation and
// the tags follow when both are done. Nothing is pushed unless the gate
// passed, and no tag is set unless everything was signed and attested.
func (a *app) release(cmd *cobra.Command, srcArg string, rf *registryFlags, df *dbFlags, gf *gateFlags, sf *signFlags, lf *releaseFlags) error {
	// Check everything that can be checked before touching anything.
	if lf.to == "" {
		return usagef("--to DST is required")
	}
	dst, err := oci.ParseRepository(lf.to, rf.insecure)
	if err != nil {
		return &UsageError{Err: err}
	}
	if err := oci.CheckTags(lf.tags); err != nil {
		return &UsageError{Err: err}
	}
	scanOpts, err := gf.options(cmd)
	if err != nil {
		return err
	}
	if sf.key == "" && a.env.get("SIGSTORE_ID_TOKEN") == "" {
		return usagef("no signing key: give --key (a file, env://VAR or a KMS URI) or set SIGSTORE_ID_TOKEN (GitLab id_tokens, aud sigstore)")
	}
	// syft's license scanner (loaded from lotse's snapshot; compiled, in
	// half a second, by a lotse built with another licensecheck) starts
	// while the image is unpacked, unless the layer cache holds what it
	// would find.
	layers, err := a.openLayerCache(df)
	if err != nil {
		return err
	}
	defer a.closeLayerCache(cmd.Context(), layers)
	cat := a.newCataloger(layers)
	if err := rf.resolve(a, cmd.InOrStdin()); err != nil {
		return err
	}
	ctx := cmd.Context()
	start := a.now()
	// The signature and both attestations use one decrypted key. Decrypting
	// it (scrypt) takes 0.16 s of a core; it starts now, beside
	// reading the image, and the scan lane waits for it before anything is
	// pushed (a wrong password fails there).
	keyPEM, err := a.readSigningKey(sf.key)
	if err != nil {
		return err
	}
	var (
		key      *sign.Key
		keyErr   error
		keyReady = make(chan struct{})
	)
	if keyPEM != nil {
		go func() {
			defer close(keyReady)
			key, keyErr = sign.LoadKey(keyPEM, []byte(a.env.get("COSIGN_PASSWORD")))
		}()
	} else {
		close(keyReady)
	}
	defer func() {
		<-keyReady
		if key != nil {
			key.Close()
		}
	}()

	img, err := a.load(ctx, srcArg, rf, dst.RegistryStr())
	if err != nil {
		return err
	}
	// The local copy and the unpacked layers are removed once both lanes
	// are done, in the background while the SBOM is attested and the tags
	// are set (they need only the manifest, which Push has read); at the
	// latest on return. Closing the cataloger first waits until the
	// catalog of the layer cataloged last, written in the background, is
	// in the layer cache (see coldTailGOGC).
	tail := make(chan struct{})
	removeCopies := sync.OnceFunc(func() {
		cat.Close()
		close(tail)
		img.close()
	})
	defer removeCopies()
	a.log.DebugContext(ctx, "image read", "took", a.now().Sub(start))
	// A warm release runs the collector at warmGOGC, a cold one at
	// coldGOGC, and then from its SBOM's cataloging on at coldTailGOGC
	// when it has a layer cache (see ci/gc.go).
	var cold *gcpace.Phase
	if layers != nil && lowerLayersCached(img.cachedLayers(layers)) {
		done := make(chan struct{})
		defer close(done)
		if gcpace.SetUntil(warmGOGC, done) != nil {
			a.log.DebugContext(ctx, "lower layers cached: the collector runs at a higher percentage", "gogc", warmGOGC)
		}
	} else if cold = gcpace.SetUntil(coldGOGC, tail); cold != nil {
		a.log.DebugContext(ctx, "a cold release: the collector runs at a lower percentage", "gogc", coldGOGC)
	}
	cataloged := func() {
		if cold != nil && layers != nil {
			cold.Set(coldTailGOGC)
			a.log.DebugContext(ctx, "layers cataloged: the collector runs at a lower percentage", "gogc", coldTailGOGC)
		}
	}
	opts, err := a.ociOptions(rf, dst.RegistryStr())
	if err != nil {
		return err
	}
	var sbomLayers sbom.Cache
	if layers != nil { // no typed nil in the interfaces
		sbomLayers, scanOpts.Layers = layers, layers
	}
	sc, err := a.openScanner(ctx, df, rf)
	if err != nil {
		return err
	}
	defer sc.Close()
	sf.offline = df.offline // --offline: no DB download and no transparency log
	so := a.signOptions(sf, rf, dst.RegistryStr())

	var (
		doc     *sbom.SBOM
		res     *scan.Result
		gateErr error
		d       name.Digest
	)
	err = a.section("release", "Release "+srcArg+" to "+dst.String(), func() error {
		// Each layer is read and decompressed once, and what the image
		// claims about it (digest, diff ID) checked, before the SBOM and
		// the scan read it from disk; nothing is analysed, cached, reported
		// or published on a false claim.
		t := a.now()
		unpacked, err := img.unpack(ctx, cat, layers, outlineCataloged)
		if err != nil {
			return err
		}
		a.log.DebugContext(ctx, "layers unpacked", "took", a.now().Sub(t))
		// The SBOM's view of the layers is taken before the scan lane
		// starts: trivy reads an outlined layer whose analysis is not
		// cached in full, and the SBOM would otherwise read that layer
		// in full too, or not, as the two lanes happened to start.
		linked, dir := img.forSBOM(unpacked, "sbom")
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error {
			t := a.now()
			var err error
			doc, err = cat.Generate(gctx, linked, srcArg, dir, sbomLayers)
			if errors.Is(err, sbom.ErrOutlined) {
				// A layer read as its outline is needed after all (its
				// cached catalog was lost, or syft read one of its files
				// from a layer above): read the outlined layers in full
				// and catalog again.
				a.log.InfoContext(ctx, "reading outlined layers in full", "why", err.Error())
				if err = unpacked.Fill(gctx); err != nil {
					return err
				}
				linked, dir = img.forSBOM(unpacked, "sbom-filled")
				doc, err = cat.Generate(gctx, linked, srcArg, dir, sbomLayers)
			}
			if err != nil {
				return err
			}
			cataloged()
			a.log.DebugContext(ctx, "sbom done", "took", a.now().Sub(t))
			b, err := doc.Bytes(sbom.CycloneDXJSON)
			if err != nil {
				return err
			}
			return atomicfile.Write(lf.sbomFile, b)
		})
		g.Go(func() error {
			t := a.now()
			var err error
			scanOpts.RepoTags, scanOpts.RepoDigests = img.repoNames()
			if res, err = sc.Image(gctx, unpacked, srcArg, scanOpts); err != nil {
				return err
			}
			sc.Close()
			a.log.DebugContext(ctx, "scan done", "took", a.now().Sub(t))
			if err := a.writeScanReports(ctx, res, lf, dst, img.dir); err != nil {
				return err
			}
			if gateErr = gate(res.Report, gf); gateErr != nil {
				return nil // the SBOM is still written for GitLab
			}
			select {
			case <-keyReady:
			case <-gctx.Done():
				return gctx.Err()
			}
			if keyErr != nil {
				return keyErr
			}
			if key != nil {
				so.Key = key.Ref()
			}
			t = a.now()
			if d, err = oci.Push(gctx, img.art, dst, opts); err != nil {
				return fmt.Errorf("publish: %w", err)
			}
			a.log.InfoContext(ctx, "published", "image", d.String(), "took", a.now().Sub(t))
			if err := sign.Sign(gctx, d.String(), so); err != nil {
				return fmt.Errorf("published %s untagged, but %w", d, err)
			}
			if err := sign.Attest(gctx, d.String(), sign.Vuln, filepath.Join(img.dir, "vuln-predicate.json"), so); err != nil {
				return fmt.Errorf("published %s untagged, but %w", d, err)
			}
			return nil
		})
		return g.Wait()
	})
	if err != nil {
		return err
	}
	go removeCopies()
	printf(a.stdout, "sbom     %d packages -> %s\n", doc.Len(), lf.sbomFile)
	printf(a.stdout, "scan     %s -> %s\n", vuln.Summary(res.Report.Findings), lf.gitlabReport)
	if layers != nil {
		sl := doc.Layers()
		how := "sbom"
		if sl.Whole {
			how = "sbom, the image whole" // see sbom.LayerStats
		}
		if sl.Outlined > 0 {
			how += fmt.Sprintf(", %d read as outlines", sl.Outlined)
		}
		printf(a.stdout, "layers   %d cached, %d analysed (%s); %d cached, %d analysed (scan); cache %s\n",
			sl.Cached, sl.Cataloged, how, res.Layers.Cached, res.Layers.Analysed, layers.Dir())
		ll := doc.Licenses()
		built := ""
		if ll.Built {
			built = "; license scanner built"
		}
		printf(a.stdout, "licenses texts: %d from the cache, %d scanned%s\n", ll.Cached, ll.Scanned, built)
	}
	a.printWarnings(res)
	if err := a.printGate(res.Report, gf); err != nil {
		printf(a.stdout, "gate     failed: nothing was published\n")
		return err
	}
	t := a.now()
	if err := sign.Attest(ctx, d.String(), sign.CycloneDX, lf.sbomFile, so); err != nil {
		return fmt.Errorf("published %s untagged, but %w", d, err)
	}
	if err := oci.Tag(ctx, img.art, dst, lf.tags, opts); err != nil {
		return fmt.Errorf("published and signed %s, but %w", d, err)
	}
	a.log.DebugContext(ctx, "sbom attested and tagged", "took", a.now().Sub(t))
	if err := a.writeDotenv(lf.dotEnv, d); err != nil {
		return err
	}
	printf(a.stdout, "image    %s\n", d)
	if len(lf.tags) > 0 {
		printf(a.stdout, "tags     %s\n", strings.Join(lf.tags, ", "))
	}
	printf(a.stdout, "signed   signature, vuln and cyclonedx attestations\n")
	a.log.InfoContext(ctx, "released", "image", d.String(), "took", a.now().Sub(start).Round(time.Millisecond))
	return nil
}

// writeScanReports writes trivy's JSON report, GitLab's container-scanning
// report, and into predicateDir the vuln attestation's predicate.
func (a *app) writeScanReports(ctx context.Context, res *scan.Result, lf *releaseFlags, dst name.Repository, predicateDir string) error {
	var trivyJSON bytes.Buffer
	if err := res.Write(ctx, &trivyJSON, scan.FormatJSON); err != nil {
		return err
	}
	if err := atomicfile.Write(lf.scanFile, trivyJSON.Bytes()); err != nil {
		return err
	}
	var pred bytes.Buffer
	if err := res.WriteVulnPredicate(ctx, &pred); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(predicateDir, "vuln-predicate.json"), pred.Bytes(), 0o600); err != nil {
		return err
	}
	shown := dst.String()
	if len(lf.tags) > 0 {
		shown += ":" + lf.tags[0]
	}
	return a.writeGitLabReport(lf.gitlabReport, res.Report, shown)
}

// readSigningKey reads the PEM of a file or env:// key, so that a missing
// file or an empty variable is a usage error before anything is read or
// pushed; nil for keyless signing and KMS URIs, which are checked when they
// are used.
func (a *app) readSigningKey(key string) ([]byte, error) {
	switch {
	case key == "":
		return nil, nil
	case strings.HasPrefix(key, "env://"):
		v := strings.TrimPrefix(key, "env://")
		pem := []byte(a.env.get(v))
		if len(pem) == 0 {
			return nil, usagef("--key %s: the variable %s is empty", key, v)
		}
		return pem, nil
	case strings.Contains(key, "://"):
		return nil, nil // a KMS URI
	default:
		pem, err := os.ReadFile(key)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, usagef("--key: %v", err)
			}
			return nil, fmt.Errorf("--key: %w", err)
		}
		return pem, nil
	}
}
