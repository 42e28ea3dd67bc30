package oci

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/configfile"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// Credential is a user name and password for one registry host.
type Credential struct {
	Registry string // host[:port], as in an image reference
	Username string
	Password string
}

// Keychain resolves credentials: the explicit ones first (flags, CI
// variables), then the docker config file at dockerConfig (a config.json
// path; empty or missing means none), then anonymous.
func Keychain(creds []Credential, dockerConfig string) (authn.Keychain, error) {
	static := staticKeychain{}
	for _, c := range creds {
		if c.Registry == "" || c.Username == "" {
			continue
		}
		reg, err := name.NewRegistry(c.Registry)
		if err != nil {
			return nil, fmt.Errorf("bad registry %q for credentials: %w", c.Registry, err)
		}
		static[reg.RegistryStr()] = authn.AuthConfig{Username: c.Username, Password: c.Password}
	}
	chain := []authn.Keychain{static}
	if dockerConfig != "" {
		f, err := os.Open(dockerConfig)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("read docker config: %w", err)
		default:
			defer f.Close()
			cf, err := config.LoadFromReader(f)
			if err != nil {
				return nil, fmt.Errorf("read docker config %s: %w", dockerConfig, err)
			}
			chain = append(chain, dockerKeychain{cf})
		}
	}
	return authn.NewMultiKeychain(chain...), nil
}

type staticKeychain map[string]authn.AuthConfig

func (k staticKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if c, ok := k[r.RegistryStr()]; ok {
		return authn.FromConfig(c), nil
	}
	return authn.Anonymous, nil
}

type dockerKeychain struct{ cf *configfile.ConfigFile }

func (k dockerKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	key := r.RegistryStr()
	if key == name.DefaultRegistry {
		key = authn.DefaultAuthKey
	}
	c, err := k.cf.GetAuthConfig(key)
	if err != nil {
		return nil, fmt.Errorf("docker config credentials for %s: %w", r.RegistryStr(), err)
	}
	if c.Username == "" && c.Password == "" && c.Auth == "" && c.IdentityToken == "" && c.RegistryToken == "" {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(authn.AuthConfig{
		Username:      c.Username,
		Password:      c.Password,
		Auth:          c.Auth,
		IdentityToken: c.IdentityToken,
		RegistryToken: c.RegistryToken,
	}), nil
}
