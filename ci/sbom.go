package ci

import (
	"github.com/spf13/cobra"

	"github.com/lotse/lotse/internal/atomicfile"
	"github.com/lotse/lotse/internal/gcpace"
	"github.com/lotse/lotse/internal/layercache"
	"github.com/lotse/lotse/internal/sbom"
)

func (a *app) sbomCmd() *cobra.Command {
	var (
		rf     registryFlags
		format string
		output string
	)
	cmd := &cobra.Command{
		Use:   "sbom IMAGE",
		Short: "Write the SBOM of an image (syft)",
		Long: `Write the software bill of materials of an image with syft.

IMAGE is a registry reference, oci:DIR[:TAG] (an OCI layout, as buildah and
kaniko write) or docker-archive:FILE.tar. The default format, cyclonedx-json,
is what GitLab's artifacts:reports:cyclonedx reads.`,
		Example: `  lotse sbom registry.example.com/team/app:1.2.3 -o gl-sbom-app.cdx.json
  lotse sbom oci:build/image --format spdx-json`,
		Args: exactArgs(1, "one IMAGE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			// The license scanner builds while the image is unpacked, if a
			// layer holds a file syft may scan for a license.
			cat := a.newCataloger(nil)
			f, err := sbom.ParseFormat(format)
			if err != nil {
				return &UsageError{Err: err}
			}
			if err := rf.resolve(a, cmd.InOrStdin()); err != nil {
				return err
			}
			ctx := cmd.Context()
			img, err := a.load(ctx, args[0], &rf, "")
			if err != nil {
				return err
			}
			defer img.close()
			defer cat.Close() // first: it removes the layers it unpacked into img.dir
			var doc *sbom.SBOM
			err = a.section("sbom", "SBOM of "+args[0], func() error {
				unpacked, err := img.unpack(ctx, cat, nil, noOutlines)
				if err != nil {
					return err
				}
				linked, dir := img.forSBOM(unpacked, "sbom")
				doc, err = cat.Generate(ctx, linked, args[0], dir, nil)
				return err
			})
			if err != nil {
				return err
			}
			b, err := doc.Bytes(f)
			if err != nil {
				return err
			}
			a.log.InfoContext(ctx, "sbom written", "image", args[0], "packages", doc.Len(), "format", f)
			if output == "" || output == "-" {
				_, err = a.stdout.Write(b)
				return err
			}
			return atomicfile.Write(output, b)
		},
	}
	a.addRegistryFlags(cmd.Flags(), &rf)
	cmd.Flags().StringVar(&format, "format", string(sbom.CycloneDXJSON), "cyclonedx-json, spdx-json or syft-json")
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to FILE instead of standard output")
	return cmd
}

// newCataloger prepares the SBOM cataloger. syft's license scanner is built
// for the first license text layers (the layer cache, or nil) does not
// hold, or ahead, while the image is unpacked, when a layer has a file syft
// may scan and the cache has not been through a cataloging
// (sbom.Cataloger.Foresee); the collector is relaxed while it compiles,
// when lotse's snapshot of it does not fit.
func (a *app) newCataloger(layers *layercache.Cache) *sbom.Cataloger {
	opts := []sbom.Option{sbom.WithBuildWindow(func(built <-chan struct{}) {
		gcpace.SetUntil(scannerGOGC, built)
	})}
	if layers != nil { // no typed nil in the interface
		opts = append(opts, sbom.WithLicenseCache(layers))
	}
	return sbom.NewCataloger(sbom.Tool{Name: "lotse", Version: a.info.Version}, opts...)
}
