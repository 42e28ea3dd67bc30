// Package guardrails checks rendered Kubernetes manifests against the rules a
// workload must follow before ArgoCD may deploy it: resource requests and
// limits, probes, a restricted security context, images pinned by digest from
// allowed registries, and no host namespaces or host paths.
//
// The package is pure: [Checker.Check] takes the bytes of a file (one or
// more YAML documents, as helm template prints them; kind: List is unpacked)
// and returns findings; rendering them as text, JSON or GitLab's code quality
// report returns bytes as well. It does no I/O and knows nothing of
// lotse.yaml: callers translate their configuration into a [Policy].
//
// Pod templates are found in Pod, Deployment, StatefulSet, DaemonSet,
// ReplicaSet, ReplicationController, Job, CronJob
// (spec.jobTemplate.spec.template) and Argo Rollouts' Rollout. The container
// rules apply to containers and init containers alike, except probes: init
// containers run to completion before the pod is ready, so they take no
// probes, and neither do Jobs, CronJobs and Pods with restartPolicy Never or
// OnFailure. Native sidecars (init containers with restartPolicy Always) are
// probed like containers.
//
// A workload is exempted from a rule by an annotation on the object, a
// CronJob's job template or the pod template:
//
//	metadata:
//	  annotations:
//	    lotse.dev/exempt-read-only-root-filesystem: "nginx writes its pid file to /run"
//
// The reason is required: an exemption without one (or with just "true")
// exempts nothing and is itself a finding of the rule exemption. Exempted
// findings stay in the report with their reason, for the audit trail, but
// never fail a gate and are left out of the code quality report.
//
// Values are read as Kubernetes reads them (YAML 1.1 booleans such as on and
// yes count; for duplicate keys the last wins), so a manifest cannot pass a
// check that the cluster would read differently.
package guardrails
