package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/pprof/profile"

	"github.com/lotse/lotse/internal/atomicfile"
)

// pgo writes the profile that `go build` applies to lotse (cmd/lotse/default.pgo):
// the CPU profiles of `lotse release` on the bench's images (release 1,
// with no layer cache), runs times each, merged into one.
//
// A build with profile-guided optimisation inlines and lays out the hot paths
// it names: decompressing and indexing layers, syft's catalogers, trivy's
// analysis. Make it again when those change (it last gave 2-4 % on a cold
// release, once lotse stopped compiling licensecheck's scanner).
func pgo(ctx context.Context, lotse, out string, runs, largeMB int) error {
	var err error
	if lotse, err = filepath.Abs(lotse); err != nil {
		return err
	}
	b, reg, stop, err := startFixtures(ctx, "", largeMB)
	if err != nil {
		return err
	}
	defer stop()
	var profiles []*profile.Profile
	for r := range runs {
		for _, im := range shapeNames {
			path := filepath.Join(b.dir, fmt.Sprintf("cpu-%s%d.pprof", im, r))
			p := *b
			p.env = append(p.env[:len(p.env):len(p.env)], "LOTSE_CPUPROFILE="+path)
			src := reg + "/src/" + im + ":1"
			if err := os.RemoveAll(filepath.Join(b.dir, "cache", "layers")); err != nil {
				return err
			}
			if _, err := p.lotse(lotse, src, fmt.Sprintf("%s/pgo/%s%d", reg, im, r)); err != nil {
				return err
			}
			prof, err := readProfile(path)
			if err != nil {
				return err
			}
			profiles = append(profiles, prof)
		}
	}
	merged, err := profile.Merge(profiles)
	if err != nil {
		return fmt.Errorf("merge profiles: %w", err)
	}
	var buf bytes.Buffer
	if err := merged.Write(&buf); err != nil {
		return err
	}
	if err := atomicfile.Write(out, buf.Bytes()); err != nil {
		return err
	}
	fmt.Printf("wrote %s: %d releases, %d samples\n", out, len(profiles), len(merged.Sample))
	return nil
}

func readProfile(path string) (*profile.Profile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}
