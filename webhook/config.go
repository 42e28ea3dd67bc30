// Package webhook is lotsed, the webhook service: GitLab and ArgoCD
// deliveries are authenticated, stored durably and acknowledged; workers
// lease them, turn them into promotion events, run the promotion state
// machine and carry out its actions against GitLab; an API, metrics and a
// board page show where every release is.
package webhook

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is lotsed's configuration. Every field comes from a flag, a
// LOTSE_* variable, or the --config file, in that order of precedence;
// secrets may also come from a file named by LOTSE_*_FILE.
type Config struct {
	Listen             string
	DatabaseURL        string
	WebhookSecret      string // X-Gitlab-Token
	SigningSecret      string // Standard Webhooks whsec_ secret
	SignatureTolerance time.Duration
	ArgoCDToken        string
	APIReadToken       string
	APIAdminToken      string
	GitLabURL          string
	GitLabToken        string
	GitOpsProject      string
	BotUser            string
	Operators          []string
	Writers            []string // users besides lotse's whose pushes to the default branch are landings
	PublicKey          string   // cosign public key for the signature gate: file, env://, KMS
	PublicURL          string   // where lotsed is reachable, for links in comments
	ReleaseAudience    string   // aud of the ID tokens POST /api/v1/releases accepts; default PublicURL
	IDTokenIssuer      string   // iss of GitLab's ID tokens (its external URL); default GitLabURL
	Workers            int
	MaxAttempts        int
	MaxBody            int64
	UnverifiedBudget   int64        // bytes of signed deliveries' bodies read at once before their signatures are checked
	TrustedProxies     []*net.IPNet // whose X-Forwarded-For names the client
	ReadTimeout        time.Duration
	WriteTimeout       time.Duration
	IdleTimeout        time.Duration
	Tick               time.Duration
	Retention          time.Duration // processed deliveries are kept this long; 0: forever
	DORAFixWindow      time.Duration // a deployment followed by the next within this time failed (DORA); 0: off
	LogLevel           string
	Insecure           bool // registries over plain HTTP (signature gate)
	SignOffline        bool // signatures carry no transparency-log entry
	RegistryUser       string
	RegistryPassword   string
	// SigningKey is lotsed's own private key for promotion records (file,
	// env://VAR or KMS URI); empty: records go to the audit log only.
	SigningKey         string
	SigningKeyPassword string // decrypts a file or env:// SigningKey; default COSIGN_PASSWORD
}

// option is one configuration setting: its flag and file key, variable,
// default and help, and how to set it. The table below is the one place
// that lists them, for loading and for --help.
type option struct {
	key    string
	def    string
	secret bool
	help   string
	set    func(c *Config, v string) error
}

func (o option) env() string {
	return "LOTSE_" + strings.ToUpper(strings.ReplaceAll(o.key, "-", "_"))
}

func str(p func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *p(c) = v; return nil }
}

func options() []option {
	return []option{
		{key: "listen", def: ":8080", help: "address to listen on", set: str(func(c *Config) *string { return &c.Listen })},
		{key: "database-url", def: "lotsed.db", help: "SQLite file (embedded, default) or postgres://user:pass@host/db for several replicas", secret: true,
			set: str(func(c *Config) *string { return &c.DatabaseURL })},
		{key: "webhook-secret", secret: true, help: "the GitLab webhook's secret token (X-Gitlab-Token); this or --webhook-signing-secret is required",
			set: str(func(c *Config) *string { return &c.WebhookSecret })},
		{key: "webhook-signing-secret", secret: true, help: "the GitLab webhook's signing token (whsec_...): Standard Webhooks signatures are then required",
			set: str(func(c *Config) *string { return &c.SigningSecret })},
		{key: "signature-tolerance", def: "5m", help: "how old a signed delivery's webhook-timestamp may be",
			set: func(c *Config, v string) error { return parseDuration(&c.SignatureTolerance, v) }},
		{key: "argocd-token", secret: true, help: "bearer token ArgoCD notifications send to /webhooks/argocd (empty: endpoint off)",
			set: str(func(c *Config) *string { return &c.ArgoCDToken })},
		{key: "api-read-token", secret: true, help: "bearer token for reading /api/v1, /metrics and /board",
			set: str(func(c *Config) *string { return &c.APIReadToken })},
		{key: "api-admin-token", secret: true, help: "bearer token for changing things through /api/v1 (re-queue events); also reads",
			set: str(func(c *Config) *string { return &c.APIAdminToken })},
		{key: "gitlab-url", help: "GitLab base URL, e.g. https://gitlab.example.com", set: str(func(c *Config) *string { return &c.GitLabURL })},
		{key: "gitlab-token", secret: true, help: "token of lotse's GitLab user (Maintainer on the GitOps project)",
			set: str(func(c *Config) *string { return &c.GitLabToken })},
		{key: "gitops-project", help: "path of the GitOps project, e.g. platform/gitops", set: str(func(c *Config) *string { return &c.GitOpsProject })},
		{key: "bot-user", help: "lotse's GitLab username (default: the token's user); its approvals never count, only its merge requests are merged",
			set: str(func(c *Config) *string { return &c.BotUser })},
		{key: "operators", help: "comma-separated GitLab usernames allowed to use /lotse commands in MR notes (resolved to user IDs at start and on reload)",
			set: func(c *Config, v string) error { c.Operators = splitList(v); return nil }},
		{key: "writers", help: "comma-separated GitLab usernames, besides lotse's own, whose pushes to the default branch count as landings (the user of a CI token that runs lotse bump); any other change of a stage is out-of-band",
			set: func(c *Config, v string) error { c.Writers = splitList(v); return nil }},
		{key: "public-key", help: "cosign public key for the signature and scan gates (file, env://VAR or KMS URI; default: lotse.yaml signing.publicKey)",
			set: str(func(c *Config) *string { return &c.PublicKey })},
		{key: "public-url", help: "lotsed's external URL, for links in comments and commit statuses", set: str(func(c *Config) *string { return &c.PublicURL })},
		{key: "release-audience", help: "the aud app pipelines ask for in id_tokens to hand releases to POST /api/v1/releases (default: public-url; neither: the endpoint is off)",
			set: str(func(c *Config) *string { return &c.ReleaseAudience })},
		{key: "id-token-issuer", help: "the iss of GitLab's CI ID tokens, GitLab's external URL, when it differs from gitlab-url (the keys are read from gitlab-url)",
			set: str(func(c *Config) *string { return &c.IDTokenIssuer })},
		{key: "workers", def: "4", help: "deliveries processed at the same time", set: func(c *Config, v string) error { return parseInt(&c.Workers, v, 1) }},
		{key: "max-attempts", def: "8", help: "attempts before a delivery is parked as dead", set: func(c *Config, v string) error { return parseInt(&c.MaxAttempts, v, 1) }},
		{key: "max-body", def: "26214400", help: "largest accepted webhook body in bytes (GitLab sends at most 25 MB)",
			set: func(c *Config, v string) error {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil || n < 1024 {
					return fmt.Errorf("want a number of bytes >= 1024, got %q", v)
				}
				c.MaxBody = n
				return nil
			}},
		{key: "unverified-body-budget", def: "67108864", help: "bytes of signed deliveries' bodies read at the same time before their signatures are checked (each counts its Content-Length, or max-body); beyond it lotsed answers 503 with Retry-After without reading; at least max-body",
			set: func(c *Config, v string) error {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil || n < 1024 {
					return fmt.Errorf("want a number of bytes >= 1024, got %q", v)
				}
				c.UnverifiedBudget = n
				return nil
			}},
		{key: "trusted-proxies", help: "comma-separated CIDRs (or addresses) of the reverse proxies whose X-Forwarded-For names the client in the logs; empty: the connection's peer is the client",
			set: func(c *Config, v string) error {
				nets, err := parseCIDRs(splitList(v))
				c.TrustedProxies = nets
				return err
			}},
		{key: "read-timeout", def: "60s", help: "how long reading a request, headers and body, may take",
			set: func(c *Config, v string) error { return parseDuration(&c.ReadTimeout, v) }},
		{key: "write-timeout", def: "120s", help: "how long a request may take from the end of its headers to the end of the answer (a release runs its gates in it)",
			set: func(c *Config, v string) error { return parseDuration(&c.WriteTimeout, v) }},
		{key: "idle-timeout", def: "60s", help: "how long an idle keep-alive connection stays open",
			set: func(c *Config, v string) error { return parseDuration(&c.IdleTimeout, v) }},
		{key: "tick", def: "30s", help: "how often timers (soak time, merge retries) are checked", set: func(c *Config, v string) error { return parseDuration(&c.Tick, v) }},
		{key: "retention", def: "168h", help: "how long processed deliveries are kept (they deduplicate GitLab's re-sends, which go back 2 days); 0 keeps them",
			set: func(c *Config, v string) error {
				if v == "0" {
					c.Retention = 0
					return nil
				}
				if err := parseDuration(&c.Retention, v); err != nil || c.Retention < 48*time.Hour {
					return fmt.Errorf("want 0 or a duration of at least 48h (GitLab re-sends for 2 days), got %q", v)
				}
				return nil
			}},
		{key: "dora-fix-window", def: "24h", help: "DORA change failure rate: a deployment that ran and was followed by the next deployment of its stage within this time counts as failed (fixed forward); 0 turns it off",
			set: func(c *Config, v string) error {
				if v == "0" {
					c.DORAFixWindow = 0
					return nil
				}
				return parseDuration(&c.DORAFixWindow, v)
			}},
		{key: "log-level", def: "info", help: "debug, info, warn or error", set: str(func(c *Config) *string { return &c.LogLevel })},
		{key: "sign-offline", def: "false", help: "releases are signed without a transparency log (lotse --offline): do not look for log entries when verifying",
			set: func(c *Config, v string) error {
				b, err := strconv.ParseBool(v)
				c.SignOffline = b
				return err
			}},
		{key: "registry-user", help: "user for the registry holding the released images (signature and scan gates; default: anonymous)",
			set: str(func(c *Config) *string { return &c.RegistryUser })},
		{key: "registry-password", secret: true, help: "its password or token", set: str(func(c *Config) *string { return &c.RegistryPassword })},
		{key: "signing-key", help: "lotsed's own cosign private key (file, env://VAR or KMS URI) that signs the promotion record attached to every image promoted into an approval stage; without it the record is only written to the audit log",
			set: str(func(c *Config) *string { return &c.SigningKey })},
		{key: "signing-key-password", secret: true, help: "the password of the signing key (default: COSIGN_PASSWORD)",
			set: str(func(c *Config) *string { return &c.SigningKeyPassword })},
		{key: "insecure", def: "false", help: "allow plain-HTTP registries when verifying signatures",
			set: func(c *Config, v string) error {
				b, err := strconv.ParseBool(v)
				c.Insecure = b
				return err
			}},
	}
}

func parseDuration(p *time.Duration, v string) error {
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return fmt.Errorf("want a positive duration such as 30s, got %q", v)
	}
	*p = d
	return nil
}

// parseCIDRs reads CIDRs; an address alone is the network of just it.
func parseCIDRs(list []string) ([]*net.IPNet, error) {
	var nets []*net.IPNet
	for _, v := range list {
		if ip := net.ParseIP(v); ip != nil {
			bits := 128
			if ip.To4() != nil {
				ip, bits = ip.To4(), 32
			}
			nets = append(nets, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
			continue
		}
		_, n, err := net.ParseCIDR(v)
		if err != nil {
			return nil, fmt.Errorf("want CIDRs such as 10.0.0.0/8 or addresses, got %q", v)
		}
		nets = append(nets, n)
	}
	return nets, nil
}

func parseInt(p *int, v string, min int) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < min {
		return fmt.Errorf("want a whole number >= %d, got %q", min, v)
	}
	*p = n
	return nil
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// LoadConfig builds the configuration from the --config file (YAML with the
// option names as keys), the environment and the flags, in rising
// precedence, and checks it.
func LoadConfig(file string, flags map[string]string, getenv func(string) string, readFile func(string) ([]byte, error)) (*Config, error) {
	values := map[string]string{}
	if file != "" {
		b, err := readFile(file)
		if err != nil {
			return nil, fmt.Errorf("--config: %w", err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("--config %s: %w", file, err)
		}
		known := map[string]bool{}
		for _, o := range options() {
			known[o.key] = true
		}
		for k, v := range m {
			if !known[k] {
				return nil, fmt.Errorf("--config %s: unknown setting %q (see lotsed --help)", file, k)
			}
			switch v := v.(type) {
			case []any:
				parts := make([]string, len(v))
				for i, p := range v {
					parts[i] = fmt.Sprint(p)
				}
				values[k] = strings.Join(parts, ",")
			default:
				values[k] = fmt.Sprint(v)
			}
		}
	}
	c := &Config{}
	for _, o := range options() {
		v, ok := values[o.key]
		if e := getenv(o.env()); e != "" {
			v, ok = e, true
		} else if f := getenv(o.env() + "_FILE"); f != "" && o.secret {
			b, err := readFile(f)
			if err != nil {
				return nil, fmt.Errorf("%s_FILE: %w", o.env(), err)
			}
			v, ok = strings.TrimRight(string(b), "\r\n"), true
		}
		if fv, set := flags[o.key]; set {
			v, ok = fv, true
		}
		if !ok {
			v = o.def
		}
		if v == "" && o.def == "" {
			continue
		}
		if err := o.set(c, v); err != nil {
			return nil, fmt.Errorf("%s: %w", o.key, err)
		}
	}
	return c, c.check()
}

func (c *Config) check() error {
	var problems []string
	if c.WebhookSecret == "" && c.SigningSecret == "" {
		problems = append(problems, "no webhook secret: set LOTSE_WEBHOOK_SECRET (the webhook's secret token) or LOTSE_WEBHOOK_SIGNING_SECRET (its signing token); lotsed does not accept unauthenticated webhooks")
	}
	if c.SigningSecret != "" {
		if _, err := signingKey(c.SigningSecret); err != nil {
			problems = append(problems, "webhook-signing-secret: "+err.Error())
		}
	}
	if c.APIReadToken != "" && c.APIReadToken == c.APIAdminToken {
		problems = append(problems, "api-read-token and api-admin-token must differ")
	}
	if c.DatabaseURL == "" {
		problems = append(problems, "database-url is empty: give a SQLite file (the default is lotsed.db) or a postgres:// URL")
	}
	if c.GitLabURL == "" || c.GitLabToken == "" || c.GitOpsProject == "" {
		problems = append(problems, "gitlab-url, gitlab-token and gitops-project are required (LOTSE_GITLAB_URL, LOTSE_GITLAB_TOKEN, LOTSE_GITOPS_PROJECT)")
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// Usage writes the options table for lotsed --help.
func Usage(w io.Writer) {
	opts := options()
	fmt.Fprintf(w, "Usage: lotsed [--config FILE] [--OPTION=VALUE ...]\n\n")
	fmt.Fprintf(w, "Every option is also a variable (LOTSE_...) and a key of the --config YAML file;\n")
	fmt.Fprintf(w, "flags win over variables, variables over the file. Secrets (*) may be read from\n")
	fmt.Fprintf(w, "a file named by the variable with _FILE appended, e.g. LOTSE_GITLAB_TOKEN_FILE.\n\n")
	for _, o := range opts {
		mark := ""
		if o.secret {
			mark = " (*)"
		}
		def := ""
		if o.def != "" && !o.secret {
			def = " (default " + o.def + ")"
		}
		fmt.Fprintf(w, "  --%-24s %s%s\n      %s%s\n", o.key, o.env(), mark, o.help, def)
	}
}

// Redacted describes the configuration for the startup log, without secrets.
func (c *Config) Redacted() []any {
	db := "sqlite"
	if strings.HasPrefix(c.DatabaseURL, "postgres") {
		db = "postgres"
	}
	return []any{"listen", c.Listen, "database", db, "gitlab", c.GitLabURL, "gitops_project", c.GitOpsProject,
		"workers", c.Workers, "signed_webhooks", c.SigningSecret != "", "argocd", c.ArgoCDToken != "",
		"releases", c.ReleaseAudience != "" || c.PublicURL != "", "signed_promotion_records", c.SigningKey != ""}
}
