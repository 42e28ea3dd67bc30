package ci

import (
	"bufio"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/pflag"

	"github.com/lotse/lotse/internal/oci"
)

// registryFlags are the registry options every image command takes.
type registryFlags struct {
	insecure      bool
	user          string
	passwordStdin bool
	platform      string
	password      string // resolved: from stdin or LOTSE_REGISTRY_PASSWORD
}

func (a *app) addRegistryFlags(fs *pflag.FlagSet, rf *registryFlags) {
	fs.BoolVar(&rf.insecure, "insecure", false, "allow plain-HTTP registries and skip TLS verification")
	fs.StringVar(&rf.user, "registry-user", a.env.get("LOTSE_REGISTRY_USER"), "user for the target registry (env LOTSE_REGISTRY_USER; password from LOTSE_REGISTRY_PASSWORD or --registry-password-stdin)")
	fs.BoolVar(&rf.passwordStdin, "registry-password-stdin", false, "read the registry password from standard input")
	fs.StringVar(&rf.platform, "platform", "linux/amd64", "platform to analyse in a multi-platform image (os/arch[/variant])")
}

// resolve reads the password once, from stdin or the environment.
func (rf *registryFlags) resolve(a *app, stdin io.Reader) error {
	if rf.passwordStdin {
		if stdin == nil {
			return usagef("--registry-password-stdin: no standard input")
		}
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && err != io.EOF {
			return fmt.Errorf("read registry password: %w", err)
		}
		rf.password = strings.TrimRight(line, "\r\n")
	} else {
		rf.password = a.env.get("LOTSE_REGISTRY_PASSWORD")
	}
	if rf.user != "" && rf.password == "" {
		return usagef("--registry-user %s given without a password (LOTSE_REGISTRY_PASSWORD or --registry-password-stdin)", rf.user)
	}
	return nil
}

// ociOptions builds registry access: the explicit user for the given hosts,
// GitLab's CI_REGISTRY_USER/CI_REGISTRY_PASSWORD for CI_REGISTRY, then the
// docker config (DOCKER_CONFIG or ~/.docker/config.json).
func (a *app) ociOptions(rf *registryFlags, hosts ...string) (oci.Options, error) {
	var creds []oci.Credential
	if rf.user != "" {
		for _, h := range hosts {
			creds = append(creds, oci.Credential{Registry: h, Username: rf.user, Password: rf.password})
		}
	}
	if reg, u, p := a.env.get("CI_REGISTRY"), a.env.get("CI_REGISTRY_USER"), a.env.get("CI_REGISTRY_PASSWORD"); reg != "" && u != "" {
		creds = append(creds, oci.Credential{Registry: reg, Username: u, Password: p})
	}
	kc, err := oci.Keychain(creds, a.dockerConfigPath())
	if err != nil {
		return oci.Options{}, err
	}
	plat, err := v1.ParsePlatform(rf.platform)
	if err != nil {
		return oci.Options{}, usagef("--platform %q: %v", rf.platform, err)
	}
	return oci.Options{Keychain: kc, Insecure: rf.insecure, Platform: plat, UserAgent: "lotse/" + a.info.Version}, nil
}

// credentialsFor returns the user and password that apply to host, for
// tools that take them directly (cosign, the DB download).
func (a *app) credentialsFor(rf *registryFlags, host string) (string, string) {
	if rf.user != "" {
		return rf.user, rf.password
	}
	if reg := a.env.get("CI_REGISTRY"); reg != "" && registryHost(reg) == registryHost(host) {
		return a.env.get("CI_REGISTRY_USER"), a.env.get("CI_REGISTRY_PASSWORD")
	}
	return "", ""
}

func registryHost(s string) string {
	if r, err := name.NewRegistry(s); err == nil {
		return r.RegistryStr()
	}
	return s
}

func (a *app) dockerConfigPath() string {
	if d := a.env.get("DOCKER_CONFIG"); d != "" {
		return filepath.Join(d, "config.json")
	}
	if h := a.env.get("HOME"); h != "" {
		return filepath.Join(h, ".docker", "config.json")
	}
	return ""
}
