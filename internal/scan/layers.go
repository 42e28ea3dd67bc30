package scan

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"

	"github.com/aquasecurity/trivy/pkg/cache"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/aquasecurity/trivy/pkg/version/app"
)

// layerCache is trivy's analysis cache for one image scan: in memory, and
// for each layer also in a layercache shared between jobs. trivy names a
// layer's analysis by the layer's diff ID and its analyzers' versions; the
// entries also carry trivy's version and the Java DB's state, because
// trivy's jar analyzer names jars through the Java DB while it analyses.
type layerCache struct {
	*cache.MemoryCache
	lc     Cache
	prefix string

	mu       sync.Mutex
	hits     int
	analysed int
	putErr   error
}

// newLayerCache backs one scan's analyses with lc. Offline without a Java
// DB, jars are analysed without one ("none"). Online
// without one yet, trivy downloads it during the analysis, so what the
// layers' analyses depend on is not known before: the layer cache is not
// used for that scan.
func newLayerCache(lc Cache, javaDBDir string, noJavaDB bool) *layerCache {
	stamp := "none"
	if !noJavaDB {
		b, err := os.ReadFile(filepath.Join(javaDBDir, "metadata.json"))
		if err != nil {
			lc = nil
		}
		sum := sha256.Sum256(b)
		stamp = hex.EncodeToString(sum[:8])
	}
	return &layerCache{MemoryCache: cache.NewMemoryCache(), lc: lc, prefix: "trivy/" + app.Version() + "/javadb-" + stamp + "/"}
}

// MissingBlobs reports the layers neither in memory nor in the layer cache;
// what the layer cache holds is loaded into memory for the applier.
func (c *layerCache) MissingBlobs(ctx context.Context, artifactID string, blobIDs []string) (bool, []string, error) {
	missingArtifact, missing, err := c.MemoryCache.MissingBlobs(ctx, artifactID, blobIDs)
	if err != nil {
		return false, nil, err
	}
	var still []string
	for _, id := range missing {
		if c.lc == nil {
			still = append(still, id)
			continue
		}
		if b, ok := c.lc.Get(c.prefix + id); ok {
			var info ftypes.BlobInfo
			if json.Unmarshal(b, &info) == nil && info.SchemaVersion == ftypes.BlobJSONSchemaVersion {
				if err := c.MemoryCache.PutBlob(ctx, id, info); err != nil {
					return false, nil, err
				}
				c.mu.Lock()
				c.hits++
				c.mu.Unlock()
				continue
			}
		}
		still = append(still, id)
	}
	return missingArtifact, still, nil
}

// PutBlob keeps a layer's analysis in memory and in the layer cache. A
// failed cache write does not fail the scan; Result.Warnings names it.
func (c *layerCache) PutBlob(ctx context.Context, id string, info ftypes.BlobInfo) error {
	if err := c.MemoryCache.PutBlob(ctx, id, info); err != nil {
		return err
	}
	c.mu.Lock()
	c.analysed++
	c.mu.Unlock()
	if c.lc == nil {
		return nil
	}
	b, err := json.Marshal(info)
	if err == nil {
		err = c.lc.Put(c.prefix+id, b)
	}
	if err != nil {
		c.mu.Lock()
		if c.putErr == nil {
			c.putErr = err
		}
		c.mu.Unlock()
	}
	return nil
}
