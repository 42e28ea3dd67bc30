package ci

import (
	"fmt"
	"sort"
	"strings"
)

// dotenv renders variables for GitLab's artifacts:reports:dotenv: KEY=VALUE
// lines, no quotes, no spaces in values.
func dotenv(vars map[string]string) ([]byte, error) {
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		v := vars[k]
		if strings.ContainsAny(v, " \t\r\n") {
			return nil, fmt.Errorf("dotenv value of %s contains white space", k)
		}
		fmt.Fprintf(&b, "%s=%s\n", k, v)
	}
	return []byte(b.String()), nil
}
