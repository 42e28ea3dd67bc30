package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/lotse/lotse/test/fixture"
)

// A shape is an application image: base layers and an application layer on
// top. Release 1 and release 2 of it differ only in the application layer,
// as two releases of one app from CI do.
type shape struct {
	name string
	base []v1.Layer
	app  []fixture.File
}

// shapeNames are the bench images, in the order the table shows them.
var shapeNames = []string{"debian-files", "alpine-python", "node", "java", "go-distroless", "large", "go-toolchain"}

// shapes builds the bench images: a Debian rootfs of many files owned by
// many packages; Alpine with Python site-packages; Debian with node_modules;
// a Java service (fat jar with nested jars, a WAR, a jar only the Java DB
// names); a Go binary on a distroless-like base (a dpkg status only); and
// the large image (Debian, then largeMB MiB of data layers); and the image
// issue 16 was measured on: a many-file Debian rootfs and the whole Go
// toolchain this bench runs with (GOROOT: its Go binaries, sources and
// packages, about 15,000 files). As in real images, some packages carry
// their license only as text (a free-form Debian copyright file, a
// node_modules LICENSE, a jar's META-INF/LICENSE), which syft names with
// its license scanner.
func shapes(ctx context.Context, dir string, largeMB int) ([]shape, error) {
	layer := func(files []fixture.File) v1.Layer {
		l, err := fixture.Layer(files...)
		if err != nil {
			panic(err)
		}
		return l
	}
	debian := layer(fixture.DebianFiles(fixture.DebianPackages))
	jars, err := fixture.JavaFiles()
	if err != nil {
		return nil, err
	}
	// Libraries that ship their license text (META-INF/LICENSE), as most
	// of Maven Central's do: syft names them with its license scanner.
	for i := range 20 {
		m := fixture.Maven{Group: "org.example.lib", Artifact: fmt.Sprintf("lib%d", i), Version: fmt.Sprintf("1.%d.0", i)}
		b, err := fixture.LicensedJar(m, fixture.MITLicense)
		if err != nil {
			return nil, err
		}
		jars = append(jars, fixture.File{Path: fmt.Sprintf("app/lib/%s-%s.jar", m.Artifact, m.Version), Data: b})
	}
	gobin, err := fixture.GoBinary(ctx, mkdir(dir, "gobuild"))
	if err != nil {
		return nil, err
	}
	large, err := fixture.LargeImage(largeMB, 300, 1)
	if err != nil {
		return nil, err
	}
	largeLayers, err := large.Layers()
	if err != nil {
		return nil, err
	}
	goroot, err := gorootFiles(ctx, "usr/local/go")
	if err != nil {
		return nil, err
	}
	return []shape{
		{name: "debian-files", base: []v1.Layer{layer(fixture.ManyFileDebian(400, 25))},
			app: []fixture.File{{Path: "srv/app/run.sh", Mode: 0o755, Data: []byte("#!/bin/sh\nexec /srv/app/app\n")}}},
		{name: "alpine-python", base: []v1.Layer{layer(fixture.AlpineFiles()), layer(fixture.PythonSitePackages(200))},
			app: []fixture.File{{Path: "app/main.py", Data: []byte("import requests\n")}}},
		{name: "node", base: []v1.Layer{debian},
			app: append(fixture.NodeModules(400), fixture.File{Path: "app/server.js", Data: []byte("require('lodash');\n")})},
		{name: "java", base: []v1.Layer{debian}, app: jars},
		{name: "go-distroless", base: []v1.Layer{debian},
			app: []fixture.File{{Path: fixture.GoBinaryPath, Mode: 0o755, Data: gobin}}},
		{name: "large", base: largeLayers,
			app: []fixture.File{{Path: "srv/app/run.sh", Mode: 0o755, Data: []byte("#!/bin/sh\n")}}},
		{name: "go-toolchain", base: []v1.Layer{layer(fixture.ManyFileDebian(400, 25)), layer(goroot)},
			app: []fixture.File{{Path: "srv/app/run.sh", Mode: 0o755, Data: []byte("#!/bin/sh\n")}}},
	}, nil
}

// gorootFiles reads the Go toolchain the bench runs with (go env GOROOT)
// as files under prefix: regular files only, with their modes.
func gorootFiles(ctx context.Context, prefix string) ([]fixture.File, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOROOT").Output()
	if err != nil {
		return nil, fmt.Errorf("go env GOROOT: %w", err)
	}
	root := strings.TrimSpace(string(out))
	var files []fixture.File
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		files = append(files, fixture.File{Path: path.Join(prefix, filepath.ToSlash(rel)), Mode: int64(info.Mode().Perm()), Data: data})
		return nil
	})
	return files, err
}

// release is the image of release n of s: its application layer carries
// the release number.
func (s shape) release(n int) (v1.Image, error) {
	app, err := fixture.Layer(append(slices.Clone(s.app), fixture.File{Path: "etc/app-release", Data: fmt.Appendf(nil, "%d\n", n)})...)
	if err != nil {
		return nil, err
	}
	return fixture.Image(append(slices.Clone(s.base), app)...)
}

// pushShapes writes release 1 and 2 of every shape to REG/src/NAME:1 and :2.
func pushShapes(ctx context.Context, reg, dir string, largeMB int) error {
	ss, err := shapes(ctx, dir, largeMB)
	if err != nil {
		return err
	}
	for _, s := range ss {
		for n := 1; n <= 2; n++ {
			img, err := s.release(n)
			if err != nil {
				return err
			}
			ref, err := name.NewTag(fmt.Sprintf("%s/src/%s:%d", reg, s.name, n))
			if err != nil {
				return err
			}
			if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
				return err
			}
		}
	}
	return nil
}

// run times `lotse release` against the chain on every shape, cold (no
// cache of earlier analyses: lotse's CACHE/layers and trivy's CACHE/fanal
// removed) and warm (release 2 right after release 1, both caches kept:
// only the application layer is new), and compares what both sides found.
func run(ctx context.Context, lotse, tools string, runs, largeMB int) error {
	if tools == "" {
		return fmt.Errorf("-tools is required")
	}
	var err error
	if lotse, err = filepath.Abs(lotse); err != nil {
		return err
	}
	if tools, err = filepath.Abs(tools); err != nil {
		return err
	}
	b, reg, stop, err := startFixtures(ctx, tools, largeMB)
	if err != nil {
		return err
	}
	defer stop()
	if lotse, b.tools, err = install(b.dir, lotse, tools); err != nil {
		return err
	}
	cache := filepath.Join(b.dir, "cache")
	clear := func(sub string) error { return os.RemoveAll(filepath.Join(cache, sub)) }

	fmt.Printf("\n%-14s %7s  %-11s %7s %7s %8s %8s  %-22s %s\n", "image", "MiB", "side", "wall s", "cpu s", "peak MiB", "anon MiB", "findings", "components")
	for _, im := range shapeNames {
		src1, src2 := fmt.Sprintf("%s/src/%s:1", reg, im), fmt.Sprintf("%s/src/%s:2", reg, im)
		ref, _ := name.NewTag(src1)
		size, err := layersMiB(ref)
		if err != nil {
			return err
		}
		var chainCold, chainWarm, lotseCold, lotseWarm, fromSBOM []outcome
		for r := range runs {
			dst := func(side string, n int) string { return fmt.Sprintf("%s/%s/%s%d-%d", reg, side, im, r, n) }
			if err := clear("fanal"); err != nil {
				return err
			}
			o, err := b.chain(src1, dst("chain", 1), cache)
			if err != nil {
				return err
			}
			chainCold = append(chainCold, o)
			if o, err = b.chain(src2, dst("chain", 2), cache); err != nil {
				return err
			}
			chainWarm = append(chainWarm, o)
			if err := clear("layers"); err != nil {
				return err
			}
			if o, err = b.lotse(lotse, src1, dst("lotse", 1)); err != nil {
				return err
			}
			lotseCold = append(lotseCold, o)
			if o, err = b.sbomScan(lotse); err != nil {
				return err
			}
			fromSBOM = append(fromSBOM, o)
			if o, err = b.lotse(lotse, src2, dst("lotse", 2)); err != nil {
				return err
			}
			lotseWarm = append(lotseWarm, o)
		}
		row := func(label, side string, os []outcome, ref []outcome) {
			u := median(os)
			last := os[len(os)-1]
			f, c := fmt.Sprint(len(last.findings)), fmt.Sprint(len(last.components))
			d := fmt.Sprint(len(last.deps))
			if ref != nil {
				f += " " + same(last.findings, ref[len(ref)-1].findings)
				if fp, rfp := last.fingerprints, ref[len(ref)-1].fingerprints; fp != nil && rfp != nil && !slices.Equal(fp, rfp) {
					f += ", fingerprints differ"
				}
				c += " " + same(last.components, ref[len(ref)-1].components)
				d += " " + same(last.deps, ref[len(ref)-1].deps)
			}
			c += ", dependencies " + d
			fmt.Printf("%-14s %7s  %-11s %7.2f %7.2f %8.0f %8.0f  %-22s %s\n", label, "", side, u.wall.Seconds(), u.cpu.Seconds(), float64(u.rssKB)/1024, float64(u.anonKB)/1024, f, c)
		}
		ratio := func(kind string, l, c []outcome, target string) {
			lu, cu := median(l), median(c)
			fmt.Printf("%-14s %7s  %-11s %7.3f %7.3f %8.2f %8.2f  %s\n", "", "", "ratio "+kind, lu.wall.Seconds()/cu.wall.Seconds(), lu.cpu.Seconds()/cu.cpu.Seconds(), float64(lu.rssKB)/float64(cu.rssKB), float64(lu.anonKB)/float64(cu.anonKB), target)
		}
		fmt.Printf("%-14s %7.1f\n", im, size)
		row("", "chain cold", chainCold, nil)
		row("", "lotse cold", lotseCold, chainCold)
		ratio("cold", lotseCold, chainCold, "target: wall <= 0.45, cpu <= 0.75, peak <= 1")
		row("", "from SBOM", fromSBOM, chainCold)
		row("", "chain warm", chainWarm, nil)
		row("", "lotse warm", lotseWarm, chainWarm)
		ratio("warm", lotseWarm, chainWarm, "target: wall <= 0.25")
	}
	fmt.Printf("\nmedians of %d runs; chain = syft + trivy image + crane copy + cosign sign + 2 x cosign attest, run in a row;\n"+
		"peak MiB is the largest single process's peak RSS, anon MiB its largest sampled anonymous set (heap, stacks); warm = release 2 after release 1 (only the application layer differs),\n"+
		"trivy's CACHE/fanal and lotse's CACHE/layers kept; findings (and, from the image, their fingerprints), components (with their hashes, licenses, CPEs and properties) and dependencies compared with the chain's (trivy, syft);\n"+
		"from SBOM = lotse scan --sbom of lotse's cold SBOM alone (the findings a release could take from its SBOM, issue 16)\n", runs)
	return nil
}

// same says whether two sorted key lists are equal, and if not how.
func same(got, want []string) string {
	if slices.Equal(got, want) {
		return "(identical)"
	}
	var only, missing int
	for _, g := range got {
		if _, ok := slices.BinarySearch(want, g); !ok {
			only++
		}
	}
	for _, w := range want {
		if _, ok := slices.BinarySearch(got, w); !ok {
			missing++
		}
	}
	return fmt.Sprintf("(DIFFER: +%d -%d)", only, missing)
}

// install copies lotse and the reference tools into dir/bin, as a CI
// image's layer puts them on a runner, and returns their new paths. Each
// side then starts from the same page cache state: the Go linker writes
// its output through a shared mapping, and a process run straight from
// that file maps tens of MiB more of its pages (lotse --version: 158 MiB
// peak RSS from the file go build wrote, 124 MiB from a copy).
func install(dir, lotse, tools string) (string, string, error) {
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(filepath.Join(bin, "tools"), 0o755); err != nil {
		return "", "", err
	}
	cp := func(src, dst string) error {
		in, err := os.Open(src)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	}
	if err := cp(lotse, filepath.Join(bin, "lotse")); err != nil {
		return "", "", err
	}
	for _, t := range []string{"syft", "trivy", "cosign", "crane"} {
		if err := cp(filepath.Join(tools, t), filepath.Join(bin, "tools", t)); err != nil {
			return "", "", err
		}
	}
	return filepath.Join(bin, "lotse"), filepath.Join(bin, "tools"), nil
}
