package guardrails

import (
	"fmt"
	"strings"
)

// Severity is how bad a finding is, on GitLab's code quality scale from
// SeverityInfo up to SeverityBlocker. The zero value SeverityNone means "not
// set": in a [RulePolicy] it keeps the rule's default.
type Severity int

// The severities, in increasing order.
const (
	SeverityNone Severity = iota
	SeverityInfo
	SeverityMinor
	SeverityMajor
	SeverityCritical
	SeverityBlocker
)

// severityNames are GitLab's code quality severities, indexed by Severity.
func severityNames() []string {
	return []string{"", "info", "minor", "major", "critical", "blocker"}
}

// ParseSeverity parses info, minor, major, critical or blocker, in any case.
func ParseSeverity(s string) (Severity, error) {
	names := severityNames()
	for i, n := range names {
		if i > 0 && strings.EqualFold(s, n) {
			return Severity(i), nil
		}
	}
	return SeverityNone, fmt.Errorf("unknown severity %q (want one of %s)", s, strings.Join(names[1:], ", "))
}

// String returns the lowercase name, or "" for SeverityNone.
func (s Severity) String() string {
	names := severityNames()
	if s < 0 || int(s) >= len(names) {
		return fmt.Sprintf("Severity(%d)", int(s))
	}
	return names[s]
}

// MarshalText writes the name, as GitLab's code quality report wants it.
func (s Severity) MarshalText() ([]byte, error) {
	if s <= SeverityNone || s > SeverityBlocker {
		return nil, fmt.Errorf("severity %d has no name", int(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText reads a name written by MarshalText.
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// The rule ids. They appear in findings, in lotse.yaml and in exemption
// annotations (ExemptPrefix + id).
const (
	RuleResourcesRequests   = "resources-requests"
	RuleResourcesLimits     = "resources-limits"
	RuleProbes              = "probes"
	RuleRunAsNonRoot        = "run-as-non-root"
	RuleReadOnlyRootFS      = "read-only-root-filesystem"
	RulePrivilegeEscalation = "privilege-escalation"
	RulePrivileged          = "privileged"
	RuleImageDigest         = "image-digest"
	RuleImageRegistry       = "image-registry"
	RuleHostPath            = "host-path"
	RuleHostNetwork         = "host-network"
	RuleHostPID             = "host-pid"
	RuleHostIPC             = "host-ipc"
	RuleExemption           = "exemption"
)

// ExemptPrefix starts the annotation that exempts a workload from a rule:
// lotse.dev/exempt-<rule-id>: "<reason>". The reason is required.
const ExemptPrefix = "lotse.dev/exempt-"

// Rule is one check with its default severity.
type Rule struct {
	ID          string
	Severity    Severity // default; a Policy may override it
	Description string   // what the rule wants
	Fix         string   // how to satisfy it
}

// Rules returns every rule, in a fixed order.
func Rules() []Rule {
	return []Rule{
		{RuleResourcesRequests, SeverityMajor,
			"Every container requests CPU and memory, so that the scheduler can place the pod.",
			"set resources.requests.cpu and resources.requests.memory on every container and init container"},
		{RuleResourcesLimits, SeverityMajor,
			"Every container has CPU and memory limits, so that one pod cannot starve its node.",
			"set resources.limits.cpu and resources.limits.memory on every container and init container"},
		{RuleProbes, SeverityMajor,
			"Every container of a long-running workload has a liveness and a readiness probe (not init containers, not Jobs).",
			"add livenessProbe and readinessProbe (httpGet, tcpSocket, grpc or exec) to the container"},
		{RuleRunAsNonRoot, SeverityCritical,
			"Containers run as a non-root user: runAsNonRoot true on the container or the pod, and no runAsUser 0.",
			"set securityContext.runAsNonRoot: true on the pod (or the container) and use an image with a non-root USER"},
		{RuleReadOnlyRootFS, SeverityMajor,
			"Containers have a read-only root filesystem.",
			"set securityContext.readOnlyRootFilesystem: true on the container; mount an emptyDir where it must write"},
		{RulePrivilegeEscalation, SeverityCritical,
			"Containers cannot gain more privileges than their parent process.",
			"set securityContext.allowPrivilegeEscalation: false on the container"},
		{RulePrivileged, SeverityBlocker,
			"No container runs privileged.",
			"remove securityContext.privileged: true; grant single capabilities instead, if any"},
		{RuleImageDigest, SeverityMajor,
			"Images are pinned by digest, so that what was scanned and signed is what runs.",
			"reference the image as repository@sha256:... (lotse bump writes the digest)"},
		{RuleImageRegistry, SeverityCritical,
			"Images come from an allowed registry (guardrails.allowedRegistries in lotse.yaml; without a list the rule does nothing).",
			"publish the image to an allowed registry (lotse publish) and reference it there"},
		{RuleHostPath, SeverityCritical,
			"No volume mounts a path of the node.",
			"use an emptyDir, a configMap, a secret or a persistentVolumeClaim instead of hostPath"},
		{RuleHostNetwork, SeverityCritical,
			"Pods do not share the node's network namespace.",
			"remove hostNetwork: true; expose ports through a Service"},
		{RuleHostPID, SeverityCritical,
			"Pods do not share the node's process namespace.",
			"remove hostPID: true"},
		{RuleHostIPC, SeverityCritical,
			"Pods do not share the node's IPC namespace.",
			"remove hostIPC: true"},
		{RuleExemption, SeverityMajor,
			"Every exemption annotation names a known rule and gives a reason.",
			`write the reason as the value: lotse.dev/exempt-<rule-id>: "<why this workload needs it>"`},
	}
}

// RuleByID returns the rule with id.
func RuleByID(id string) (Rule, bool) {
	for _, r := range Rules() {
		if r.ID == id {
			return r, true
		}
	}
	return Rule{}, false
}

// RuleIDs returns the ids of all rules, in the order of Rules.
func RuleIDs() []string {
	rules := Rules()
	ids := make([]string, len(rules))
	for i, r := range rules {
		ids[i] = r.ID
	}
	return ids
}
