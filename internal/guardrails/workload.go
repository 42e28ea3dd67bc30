package guardrails

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// workload is an object with a pod template.
type workload struct {
	kind, namespace, name string
	// metas are the metadata mappings whose annotations exempt the
	// workload: the object's, a CronJob's job template's, the pod template's.
	metas []*yaml.Node
	spec  *yaml.Node // the pod spec
	// longRunning is false for pods that run to completion (Jobs, CronJobs,
	// Pods with restartPolicy Never or OnFailure): probes do not apply.
	longRunning bool
}

// podTemplate finds the pod spec of obj: Pod, Deployment, StatefulSet,
// DaemonSet, ReplicaSet, ReplicationController, Job, CronJob and Argo
// Rollouts' Rollout. ok is false for other objects and for workloads without
// an inline pod spec (a Rollout with workloadRef).
func podTemplate(obj *yaml.Node) (w workload, ok bool) {
	kind := str(get(obj, "kind"))
	meta := get(obj, "metadata")
	w = workload{kind: kind, namespace: str(get(meta, "namespace")), name: str(get(meta, "name")), metas: []*yaml.Node{meta}, longRunning: true}
	if w.name == "" {
		w.name = str(get(meta, "generateName"))
	}
	var tmpl *yaml.Node
	switch kind {
	case "Pod":
		w.spec = get(obj, "spec")
		rp := str(get(w.spec, "restartPolicy"))
		w.longRunning = rp == "" || rp == "Always"
	case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController":
		tmpl = path(obj, "spec", "template")
	case "Rollout":
		if !strings.HasPrefix(str(get(obj, "apiVersion")), "argoproj.io/") {
			return w, false
		}
		tmpl = path(obj, "spec", "template")
	case "Job":
		tmpl, w.longRunning = path(obj, "spec", "template"), false
	case "CronJob":
		jt := path(obj, "spec", "jobTemplate")
		w.metas = append(w.metas, get(jt, "metadata"))
		tmpl, w.longRunning = path(jt, "spec", "template"), false
	default:
		return w, false
	}
	if tmpl != nil {
		w.metas = append(w.metas, get(tmpl, "metadata"))
		w.spec = get(tmpl, "spec")
	}
	if w.spec == nil || w.spec.Kind != yaml.MappingNode {
		return w, false
	}
	return w, true
}

// findings collects what one workload violates.
type findings struct {
	c    *Checker
	base Finding
	out  []Finding
}

func (fs *findings) add(rule string, line int, container string, init bool, detail, format string, args ...any) {
	r, ok := fs.c.rules[rule]
	if !ok {
		return
	}
	f := fs.base
	f.Line, f.Container, f.Init, f.Detail = line, container, init, detail
	f.Rule, f.Severity, f.Message = rule, r.Severity, fmt.Sprintf(format, args...)
	fs.out = append(fs.out, f)
}

// checkWorkload applies every enabled rule to w.
func (c *Checker) checkWorkload(file string, doc int, w workload) []Finding {
	fs := &findings{c: c, base: Finding{File: file, Doc: doc, Kind: w.kind, Namespace: w.namespace, Name: w.name}}
	exempt := fs.exemptions(w)
	spec := w.spec
	for _, h := range []struct{ rule, field, ns string }{
		{RuleHostNetwork, "hostNetwork", "network"},
		{RuleHostPID, "hostPID", "process"},
		{RuleHostIPC, "hostIPC", "IPC"},
	} {
		if n := get(spec, h.field); isTrue(n) {
			fs.add(h.rule, n.Line, "", false, "", "%s is true: the pod shares the node's %s namespace", h.field, h.ns)
		}
	}
	for i, v := range items(get(spec, "volumes")) {
		hp := get(v, "hostPath")
		if hp == nil || hp.Kind != yaml.MappingNode {
			continue
		}
		name := str(get(v, "name"))
		if name == "" {
			name = fmt.Sprintf("volumes[%d]", i)
		}
		fs.add(RuleHostPath, lineOf(v), "", false, "volume "+name, "volume %q mounts %q of the node (hostPath)", name, str(get(hp, "path")))
	}
	podSC := get(spec, "securityContext")
	for i, ct := range items(get(spec, "containers")) {
		fs.container(ct, fmt.Sprintf("containers[%d]", i), podSC, false, w.longRunning)
	}
	for i, ct := range items(get(spec, "initContainers")) {
		// A native sidecar (restartPolicy Always) runs beside the main
		// containers and takes probes like them.
		sidecar := str(get(ct, "restartPolicy")) == "Always"
		fs.container(ct, fmt.Sprintf("initContainers[%d]", i), podSC, true, w.longRunning && sidecar)
	}
	for i := range fs.out {
		if reason, ok := exempt[fs.out[i].Rule]; ok {
			fs.out[i].Exemption = reason
		}
	}
	return fs.out
}

// exemptions reads the lotse.dev/exempt-<rule> annotations of w. Annotations
// that name no rule or give no reason are findings of the exemption rule and
// exempt nothing.
func (fs *findings) exemptions(w workload) map[string]string {
	exempt := map[string]string{}
	for _, meta := range w.metas {
		ann := get(meta, "annotations")
		if ann == nil || ann.Kind != yaml.MappingNode {
			continue
		}
		for i := 0; i+1 < len(ann.Content); i += 2 {
			k := ann.Content[i]
			id, ok := strings.CutPrefix(k.Value, ExemptPrefix)
			if k.Kind != yaml.ScalarNode || !ok {
				continue
			}
			reason := strings.TrimSpace(str(ann.Content[i+1]))
			_, known := RuleByID(id)
			switch {
			case !known || id == RuleExemption:
				fs.add(RuleExemption, k.Line, "", false, k.Value, "annotation %s names no rule that can be exempted (rules: %s)", k.Value, strings.Join(exemptable(), ", "))
			case reason == "":
				fs.add(RuleExemption, k.Line, "", false, k.Value, "annotation %s gives no reason, so it exempts nothing; write why the workload needs the exemption", k.Value)
			case notAReason(reason):
				fs.add(RuleExemption, k.Line, "", false, k.Value, "annotation %s gives no reason (%q), so it exempts nothing; write why the workload needs the exemption", k.Value, reason)
			default:
				if _, dup := exempt[id]; !dup {
					exempt[id] = reason
				}
			}
		}
	}
	return exempt
}

// notAReason reports values that switch an exemption on without saying why.
func notAReason(s string) bool {
	switch strings.ToLower(s) {
	case "true", "yes", "y", "on", "1", "exempt", "-", "n/a", "todo":
		return true
	}
	return false
}

// exemptable returns the ids of the rules an annotation can exempt.
func exemptable() []string {
	var ids []string
	for _, id := range RuleIDs() {
		if id != RuleExemption {
			ids = append(ids, id)
		}
	}
	return ids
}

// container applies the container rules to ct. Init containers get every
// rule but probes (unless they are sidecars): they are scheduled with their
// resources and run with the same privileges, but never serve traffic.
func (fs *findings) container(ct *yaml.Node, fallback string, podSC *yaml.Node, init, probes bool) {
	if ct.Kind != yaml.MappingNode {
		return
	}
	name := str(get(ct, "name"))
	if name == "" {
		name = fallback
	}
	add := func(rule string, n *yaml.Node, format string, args ...any) {
		fs.add(rule, lineOf(n, ct), name, init, "", format, args...)
	}

	res := get(ct, "resources")
	for _, r := range []struct{ rule, field string }{{RuleResourcesRequests, "requests"}, {RuleResourcesLimits, "limits"}} {
		m := get(res, r.field)
		var missing []string
		for _, q := range []string{"cpu", "memory"} {
			if str(get(m, q)) == "" {
				missing = append(missing, "resources."+r.field+"."+q)
			}
		}
		if len(missing) > 0 {
			add(r.rule, firstSet(m, res), "%s", notSet(missing))
		}
	}

	if probes {
		var missing []string
		for _, p := range []string{"livenessProbe", "readinessProbe"} {
			if n := get(ct, p); isNull(n) || n.Kind != yaml.MappingNode {
				missing = append(missing, p)
			}
		}
		if len(missing) > 0 {
			add(RuleProbes, nil, "%s", notSet(missing))
		}
	}

	sc := get(ct, "securityContext")
	nonRoot, where := get(sc, "runAsNonRoot"), "container"
	if isNull(nonRoot) {
		nonRoot, where = get(podSC, "runAsNonRoot"), "pod"
	}
	user := get(sc, "runAsUser")
	if isNull(user) {
		user = get(podSC, "runAsUser")
	}
	switch {
	case isZero(user):
		add(RuleRunAsNonRoot, user, "securityContext.runAsUser is 0: the container runs as root")
	case isNull(nonRoot):
		add(RuleRunAsNonRoot, nil, "securityContext.runAsNonRoot is not set on the container or the pod")
	case !isTrue(nonRoot):
		add(RuleRunAsNonRoot, nonRoot, "securityContext.runAsNonRoot is %s on the %s, want true", valueText(nonRoot), where)
	}
	if n := get(sc, "readOnlyRootFilesystem"); !isTrue(n) {
		add(RuleReadOnlyRootFS, firstSet(n, sc), "%s", wantBool("readOnlyRootFilesystem", n, true))
	}
	if n := get(sc, "allowPrivilegeEscalation"); !isFalse(n) {
		add(RulePrivilegeEscalation, firstSet(n, sc), "%s", wantBool("allowPrivilegeEscalation", n, false))
	}
	if n := get(sc, "privileged"); isTrue(n) {
		add(RulePrivileged, n, "securityContext.privileged is true: the container has every capability of the node")
	}

	imgN := get(ct, "image")
	ref := str(imgN)
	if ref == "" {
		add(RuleImageDigest, imgN, "the container has no image")
		return
	}
	img := parseImage(ref)
	switch {
	case img.digest == "":
		add(RuleImageDigest, imgN, "image %q is not pinned by digest (want %s@sha256:...)", ref, img.repository)
	case !img.pinned():
		add(RuleImageDigest, imgN, "image %q has a malformed digest (want sha256: and 64 hex characters)", ref)
	}
	if len(fs.c.registries) > 0 && !img.allowedBy(fs.c.registries) {
		add(RuleImageRegistry, imgN, "image %q is not from an allowed registry (%s)", ref, strings.Join(fs.c.registries, ", "))
	}
}

// firstSet returns the first node that is not nil.
func firstSet(ns ...*yaml.Node) *yaml.Node {
	for _, n := range ns {
		if n != nil {
			return n
		}
	}
	return nil
}

// notSet says that fields are not set: "a is not set", "a and b are not set".
func notSet(fields []string) string {
	if len(fields) == 1 {
		return fields[0] + " is not set"
	}
	return strings.Join(fields[:len(fields)-1], ", ") + " and " + fields[len(fields)-1] + " are not set"
}

// wantBool describes a securityContext field that is not the wanted value.
func wantBool(field string, n *yaml.Node, want bool) string {
	if isNull(n) {
		return fmt.Sprintf("securityContext.%s is not set (want %t)", field, want)
	}
	return fmt.Sprintf("securityContext.%s is %s, want %t", field, valueText(n), want)
}

// valueText shows a value in a message: a scalar as written, else its kind.
func valueText(n *yaml.Node) string {
	switch {
	case n.Kind != yaml.ScalarNode:
		return "not a boolean"
	case quoted(n):
		return fmt.Sprintf("%q (a string)", n.Value)
	}
	return n.Value
}
