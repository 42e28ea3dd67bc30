package idtoken

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
)

// parseClaims decodes a verified payload. Claim names match exactly (no case
// folding); a known claim of the wrong JSON type makes the token malformed.
func parseClaims(payload []byte) (*Claims, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(payload, &m); err != nil {
		return nil, invalid(ErrMalformed, "claims are not a JSON object: %v", err)
	}
	p := claimParser{m: m}
	c := &Claims{
		Issuer:    p.str("iss"),
		Subject:   p.str("sub"),
		Audience:  p.audience(),
		ID:        p.str("jti"),
		IssuedAt:  p.time("iat"),
		NotBefore: p.time("nbf"),
		Expiry:    p.time("exp"),

		NamespaceID:          p.id("namespace_id"),
		NamespacePath:        p.str("namespace_path"),
		ProjectID:            p.id("project_id"),
		ProjectPath:          p.str("project_path"),
		ProjectVisibility:    p.str("project_visibility"),
		UserID:               p.id("user_id"),
		UserLogin:            p.str("user_login"),
		UserEmail:            p.str("user_email"),
		PipelineID:           p.id("pipeline_id"),
		PipelineSource:       p.str("pipeline_source"),
		JobID:                p.id("job_id"),
		Ref:                  p.str("ref"),
		RefType:              p.str("ref_type"),
		RefPath:              p.str("ref_path"),
		RefProtected:         p.bool("ref_protected"),
		Environment:          p.str("environment"),
		EnvironmentProtected: p.bool("environment_protected"),
		DeploymentTier:       p.str("deployment_tier"),
		EnvironmentAction:    p.str("environment_action"),
		RunnerID:             p.id("runner_id"),
		RunnerEnvironment:    p.str("runner_environment"),
		SHA:                  p.str("sha"),
		CIConfigRefURI:       p.str("ci_config_ref_uri"),
		CIConfigSHA:          p.str("ci_config_sha"),
	}
	if p.err != nil {
		return nil, p.err
	}
	return c, nil
}

// claimParser reads claims and keeps the first error.
type claimParser struct {
	m   map[string]json.RawMessage
	err error
}

func (p *claimParser) fail(name, format string, args ...any) {
	if p.err == nil {
		p.err = invalid(ErrMalformed, "claim %s: %s", name, fmt.Sprintf(format, args...))
	}
}

// raw returns a claim's JSON, nil when it is absent or null.
func (p *claimParser) raw(name string) json.RawMessage {
	r := bytes.TrimSpace(p.m[name])
	if len(r) == 0 || string(r) == "null" {
		return nil
	}
	return r
}

func (p *claimParser) str(name string) string {
	r := p.raw(name)
	if r == nil {
		return ""
	}
	var s string
	if err := json.Unmarshal(r, &s); err != nil {
		p.fail(name, "not a string")
	}
	return s
}

// id reads a numeric id sent as a string ("20", GitLab's form) or a number.
func (p *claimParser) id(name string) int64 {
	r := p.raw(name)
	if r == nil {
		return 0
	}
	s := string(r)
	if r[0] == '"' {
		if err := json.Unmarshal(r, &s); err != nil {
			p.fail(name, "not a string")
			return 0
		}
		if s == "" {
			return 0
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		p.fail(name, "%s is not an id", quoteShort(s))
		return 0
	}
	return n
}

// bool reads "true"/"false" (GitLab's form) or a JSON boolean.
func (p *claimParser) bool(name string) bool {
	r := p.raw(name)
	if r == nil {
		return false
	}
	var b bool
	if json.Unmarshal(r, &b) == nil {
		return b
	}
	switch p.str(name) {
	case "true":
		return true
	case "false", "":
		return false
	default:
		p.fail(name, "%s is not \"true\" or \"false\"", quoteShort(string(r)))
		return false
	}
}

// time reads a NumericDate (seconds since the epoch, maybe fractional).
func (p *claimParser) time(name string) time.Time {
	r := p.raw(name)
	if r == nil {
		return time.Time{}
	}
	var f float64
	if err := json.Unmarshal(r, &f); err != nil || math.IsNaN(f) || f < 1 || f > 1e11 {
		p.fail(name, "%s is not a time in seconds", quoteShort(string(r)))
		return time.Time{}
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC()
}

// audience reads aud as a string or an array of strings.
func (p *claimParser) audience() []string {
	r := p.raw("aud")
	if r == nil {
		return nil
	}
	if r[0] == '[' {
		var a []string
		if err := json.Unmarshal(r, &a); err != nil {
			p.fail("aud", "not an array of strings")
		}
		return a
	}
	return []string{p.str("aud")}
}
