package scan

import (
	"cmp"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/aquasecurity/trivy/pkg/dependency/parser/java/jar"
	"github.com/aquasecurity/trivy/pkg/digest"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/aquasecurity/trivy/pkg/javadb"
	"github.com/aquasecurity/trivy/pkg/types"
	"github.com/package-url/packageurl-go"
)

// componentFacts is what a syft CycloneDX component says that trivy's SBOM
// decoder does not read: the file a package was found in (syft's
// virtualPath for a jar, else its first location), a jar's SHA-1, and for
// an OS package who published it (a Debian or Alpine package's maintainer,
// an RPM's vendor) and, for an RPM, its release and module stream. syft
// says whether syft wrote the component.
type componentFacts struct {
	path, sha1         string
	publisher, release string
	modularity         string // an RPM's module stream (nodejs:18:...)
	purlType           string // deb, rpm, pypi...: what kind of package it is
	syft               bool
	// installedBy are the bom-refs of the OS packages that installed a
	// language package's file, as lotse records them (installedByProperty).
	installedBy []string
}

// syftFacts reads the facts of every component of a CycloneDX JSON
// document, by bom-ref. It returns nil for other documents.
func syftFacts(data []byte) map[string]componentFacts {
	var doc struct {
		BOMFormat  string         `json:"bomFormat"`
		Components []cdxComponent `json:"components"`
	}
	if err := json.Unmarshal(data, &doc); err != nil || doc.BOMFormat != "CycloneDX" {
		return nil
	}
	facts := map[string]componentFacts{}
	var walk func([]cdxComponent)
	walk = func(cs []cdxComponent) {
		for _, c := range cs {
			walk(c.Components)
			if c.BOMRef == "" {
				continue
			}
			var f componentFacts
			var location, virtual string
			for _, p := range c.Properties {
				switch p.Name {
				case "syft:location:0:path":
					location = p.Value
				case "syft:metadata:virtualPath":
					virtual = p.Value
				case "syft:metadata:release":
					f.release = p.Value
				case "syft:metadata:modularityLabel":
					f.modularity = p.Value
				case "syft:package:type":
					f.syft = true
				case installedByProperty:
					f.installedBy = append(f.installedBy, p.Value)
				}
			}
			f.publisher = c.Publisher
			if u, err := packageurl.FromString(c.Purl); err == nil {
				f.purlType = u.Type
			}
			// trivy names a jar inside another by joining the paths:
			// app.jar/BOOT-INF/lib/x.jar, where syft writes app.jar:BOOT-INF/lib/x.jar.
			f.path = strings.TrimPrefix(location, "/")
			if virtual != "" {
				f.path = strings.TrimPrefix(strings.ReplaceAll(virtual, ":", "/"), "/")
			}
			// Whoever wrote the SBOM chose these paths, and reports print
			// them: no lines of their own in lotse's output.
			f.path = printable(f.path)
			hashes := c.Hashes
			for _, r := range c.ExternalReferences {
				hashes = append(hashes, r.Hashes...)
			}
			for _, h := range hashes {
				if h.Alg == "SHA-1" && f.sha1 == "" && isSHA1(h.Content) {
					f.sha1 = h.Content
				}
			}
			facts[c.BOMRef] = f
		}
	}
	walk(doc.Components)
	return facts
}

// digestSHA1 is the hex SHA-1 a package digest ("sha1:...") holds, or "".
func digestSHA1(d digest.Digest) string {
	if d.Algorithm() != digest.SHA1 || !isSHA1(d.Encoded()) {
		return ""
	}
	return strings.ToLower(d.Encoded())
}

func isSHA1(s string) bool {
	if len(s) != 40 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

type cdxHash struct {
	Alg     string `json:"alg"`
	Content string `json:"content"`
}

type cdxComponent struct {
	BOMRef     string `json:"bom-ref"`
	Purl       string `json:"purl"`
	Publisher  string `json:"publisher"`
	Properties []struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	} `json:"properties"`
	Hashes             []cdxHash `json:"hashes"`
	ExternalReferences []struct {
		Hashes []cdxHash `json:"hashes"`
	} `json:"externalReferences"`
	Components []cdxComponent `json:"components"`
}

// restorePaths gives the language packages of an SBOM the files `trivy
// image` names them by. trivy's decoder puts every language package of a
// document it did not write into one application per ecosystem, without
// files. trivy's image analysis instead records, for the ecosystems it
// aggregates (Python, Node.js, Java, Ruby gems, Conda), each package's
// file (PkgPath in reports), and for the others (Go and Rust binaries,
// .NET, PHP...) one application per file, which reports name as their
// target. Applications that already have a file (trivy's own SBOMs) are
// left alone.
func restorePaths(bom *types.SBOM, facts map[string]componentFacts) {
	if facts == nil {
		return
	}
	var apps []ftypes.Application
	for _, app := range bom.Applications {
		if app.FilePath != "" {
			apps = append(apps, app)
			continue
		}
		if slices.Contains(ftypes.AggregatingTypes, app.Type) {
			for i := range app.Packages {
				if p := &app.Packages[i]; p.FilePath == "" {
					p.FilePath = facts[p.Identifier.BOMRef].path
				}
			}
			apps = append(apps, app)
			continue
		}
		byFile := map[string]int{}
		for _, p := range app.Packages {
			path := facts[p.Identifier.BOMRef].path
			i, ok := byFile[path]
			if !ok {
				i = len(apps)
				byFile[path] = i
				apps = append(apps, ftypes.Application{Type: app.Type, FilePath: path})
			}
			apps[i].Packages = append(apps[i].Packages, p)
		}
	}
	slices.SortStableFunc(apps, func(a, b ftypes.Application) int { return strings.Compare(a.FilePath, b.FilePath) })
	bom.Applications = apps
}

// javaDB is the part of trivy's Java DB client resolveJars uses.
type javaDB interface {
	Exists(groupID, artifactID string) (bool, error)
	SearchBySHA1(sha1 string) (jar.Properties, error)
	Close() error
}

// resolveJars names jars as trivy's jar analysis does when a jar does not
// name itself: syft writes a jar without pom.properties under its file
// name and without a version (or with Maven coordinates its manifest
// suggests), where trivy looks the jar's SHA-1 up in the Java DB whenever
// the coordinates it found are not known there. open is called once, and
// only when some jar needs it. It returns the files of the jars it looked
// up.
func resolveJars(bom *types.SBOM, facts map[string]componentFacts, open func() (javaDB, error)) (looked []string, err error) {
	var db javaDB
	defer func() {
		if db != nil {
			db.Close()
		}
	}()
	for ai := range bom.Applications {
		app := &bom.Applications[ai]
		if app.Type != ftypes.Jar {
			continue
		}
		for i := range app.Packages {
			p := &app.Packages[i]
			f := facts[p.Identifier.BOMRef]
			sha1 := f.sha1
			if sha1 == "" {
				// trivy's decoder keeps a component's first hash: an SPDX
				// package's checksum (syft's SPDX gives a jar its SHA-1
				// there), or a CycloneDX component's from another tool.
				sha1 = digestSHA1(p.Digest)
			}
			if sha1 == "" {
				continue
			}
			path := cmp.Or(f.path, p.FilePath, p.Name) // what a warning names it by
			if db == nil {
				if db, err = open(); err != nil {
					return looked, fmt.Errorf("the SBOM's jars need trivy's Java DB, to name them by SHA-1: %w", err)
				}
			}
			group, artifact, _ := strings.Cut(p.Name, ":")
			if p.Version != "" && p.Version != "UNKNOWN" {
				known, err := db.Exists(group, artifact)
				if err != nil {
					return looked, fmt.Errorf("Java DB: %w", err)
				}
				if known {
					continue
				}
			}
			looked = append(looked, path)
			props, err := db.SearchBySHA1(sha1)
			if errors.Is(err, jar.ArtifactNotFoundErr) {
				continue
			} else if err != nil {
				return looked, fmt.Errorf("Java DB: %w", err)
			}
			p.Name = props.GroupID + ":" + props.ArtifactID
			p.Version = props.Version
			p.ID = p.Name + ":" + p.Version
			purl := packageurl.NewPackageURL(packageurl.TypeMaven, props.GroupID, props.ArtifactID, props.Version, nil, "")
			p.Identifier.PURL = purl
		}
	}
	return looked, nil
}

// openJavaDB opens trivy's Java DB as its jar analysis does (downloading
// it online when it is missing or stale).
func openJavaDB() (javaDB, error) {
	db, err := javadb.NewClient()
	if err != nil {
		return nil, err
	}
	return db, nil
}
