package ci

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lotse/lotse/internal/atomicfile"
	"github.com/lotse/lotse/internal/gitops"
	"github.com/lotse/lotse/internal/guardrails"
	"github.com/lotse/lotse/internal/writeback"
)

func (a *app) guardrailsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "guardrails",
		Short: "Check rendered Kubernetes manifests against the deployment guardrails",
		Args:  exactArgs(0, "a subcommand"),
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var (
		stage, configFile, format, codeQuality, failOn, stdinName string
	)
	check := &cobra.Command{
		Use:   "check [PATH...|-]",
		Short: "Check manifests: resources, probes, security context, images, host access",
		Long: `Check rendered Kubernetes manifests (files; directories, recursively, their
*.yaml and *.yml files; or - for stdin, like the output of helm template) and
fail (exit 3) when a finding at or above --fail-on is not exempted.

Every container and init container of every Pod, Deployment, StatefulSet,
DaemonSet, ReplicaSet, Job, CronJob and Argo Rollout needs CPU and memory
requests and limits, runAsNonRoot, readOnlyRootFilesystem,
allowPrivilegeEscalation false, no privileged, and an image pinned by digest
from an allowed registry; containers of long-running workloads (not init
containers, not Jobs) need liveness and readiness probes; pods use no hostPath
volumes, hostNetwork, hostPID or hostIPC.

Rules:
` + ruleTable() + `
lotse.yaml (--config; default ./lotse.yaml when there is one) sets allowed
registries and rule severities or switches rules off, globally and per stage
(--stage). A workload is exempted from a rule by the annotation
lotse.dev/exempt-<rule>: "<reason>" on the object or its pod template; the
reason is required.

Exit codes: 0 passed, 1 unreadable input or lotse.yaml, 2 bad command line,
3 findings at or above --fail-on (default major; none only reports).`,
		Example: `  helm template shop charts/shop -f values-production.yaml | lotse guardrails check - --stage production --codequality gl-code-quality-report.json
  lotse guardrails check rendered/ --fail-on critical --format json`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("want PATH... (files or directories) or - for stdin")
			}
			stdin := 0
			for _, p := range args {
				if p == "-" {
					stdin++
				}
			}
			if stdin > 1 {
				return usagef("- (stdin) can be given once")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "text" && format != "json" {
				return usagef("--format: unknown format %q (want text or json)", format)
			}
			th := guardrails.SeverityNone
			if failOn != "none" {
				var err error
				if th, err = guardrails.ParseSeverity(failOn); err != nil {
					return usagef("--fail-on: %v, or none", err)
				}
			}
			policy, err := a.guardrailsPolicy(configFile, stage)
			if err != nil {
				return err
			}
			checker, err := guardrails.NewChecker(policy)
			if err != nil {
				return err
			}
			var rep guardrails.Report
			for _, p := range args {
				if err := a.checkPath(cmd.InOrStdin(), checker, p, stdinName, &rep); err != nil {
					return err
				}
			}
			if codeQuality != "" {
				out, err := rep.CodeQuality()
				if err != nil {
					return err
				}
				if err := atomicfile.Write(codeQuality, out); err != nil {
					return err
				}
			}
			switch format {
			case "json":
				out, err := rep.JSON()
				if err != nil {
					return err
				}
				if _, err := a.stdout.Write(out); err != nil {
					return fmt.Errorf("write report: %w", err)
				}
			default:
				if _, err := a.stdout.Write(rep.Text(th)); err != nil {
					return fmt.Errorf("write report: %w", err)
				}
			}
			if bad := rep.AtOrAbove(th); len(bad) > 0 {
				return &GateError{Reason: fmt.Sprintf("%d guardrail finding(s) at or above %s", len(bad), th)}
			}
			return nil
		},
	}
	fl := check.Flags()
	fl.StringVar(&stage, "stage", "", "stage whose rule settings in lotse.yaml apply (needs lotse.yaml)")
	fl.StringVar(&configFile, "config", "", "lotse.yaml with the guardrails settings (default ./lotse.yaml when there is one)")
	fl.StringVar(&format, "format", "text", "output on stdout: text or json")
	fl.StringVar(&codeQuality, "codequality", "", "write GitLab's code quality report (artifacts:reports:codequality) to this file")
	fl.StringVar(&failOn, "fail-on", "major", "exit 3 when a finding at or above this severity is not exempted: info, minor, major, critical, blocker, or none")
	fl.StringVar(&stdinName, "stdin-name", "stdin", "file name of - (stdin) in findings and the code quality report")
	cmd.AddCommand(check)
	return cmd
}

// ruleTable lists the rules with their default severities for the help.
func ruleTable() string {
	var b strings.Builder
	for _, r := range guardrails.Rules() {
		fmt.Fprintf(&b, "  %-26s %-8s %s\n", r.ID, r.Severity, r.Description)
	}
	return b.String()
}

// guardrailsPolicy reads the guardrails settings of lotse.yaml for stage.
// Without --config a missing ./lotse.yaml means the default policy.
func (a *app) guardrailsPolicy(file, stage string) (guardrails.Policy, error) {
	explicit := file != ""
	if !explicit {
		file = writeback.ConfigFile
	}
	data, err := os.ReadFile(file)
	switch {
	case err != nil && !explicit && errors.Is(err, fs.ErrNotExist):
		if stage != "" {
			return guardrails.Policy{}, usagef("--stage %s needs lotse.yaml: there is none here; give --config FILE", stage)
		}
		a.log.Debug("no lotse.yaml: default guardrails policy")
		return guardrails.Policy{}, nil
	case err != nil:
		return guardrails.Policy{}, fmt.Errorf("read lotse.yaml: %w", err)
	}
	cfg, err := gitops.ParseConfig(data, file)
	var ve *gitops.ValidationError
	if errors.As(err, &ve) {
		printf(a.stderr, "%s\n", ve.Error())
		return guardrails.Policy{}, fmt.Errorf("%s: %d problem(s)", file, len(ve.Problems))
	}
	if err != nil {
		return guardrails.Policy{}, err
	}
	if stage != "" {
		if _, err := cfg.Stage(stage); err != nil {
			return guardrails.Policy{}, usagef("--stage: %v in %s", err, file)
		}
	}
	a.log.Debug("guardrails policy", "config", file, "stage", stage)
	return guardrailsPolicy(cfg.Guardrails, stage)
}

// guardrailsPolicy maps the lotse.yaml settings of stage to a Policy.
func guardrailsPolicy(g gitops.Guardrails, stage string) (guardrails.Policy, error) {
	p := guardrails.Policy{AllowedRegistries: g.AllowedRegistries, Rules: map[string]guardrails.RulePolicy{}}
	for id, r := range g.ForStage(stage) {
		var rp guardrails.RulePolicy
		rp.Disabled = r.Enabled != nil && !*r.Enabled
		if r.Severity != "" {
			sev, err := guardrails.ParseSeverity(r.Severity)
			if err != nil {
				return guardrails.Policy{}, fmt.Errorf("lotse.yaml: guardrails rule %s: %w", id, err)
			}
			rp.Severity = sev
		}
		p.Rules[id] = rp
	}
	return p, nil
}

// checkPath checks a file, the *.yaml and *.yml files under a directory
// (hidden directories skipped), or stdin for "-", adding to rep.
func (a *app) checkPath(stdin io.Reader, c *guardrails.Checker, p, stdinName string, rep *guardrails.Report) error {
	check := func(name string, data []byte) error {
		r, err := c.Check(name, data)
		if err != nil {
			return err
		}
		rep.Merge(r)
		return nil
	}
	if p == "-" {
		data, err := io.ReadAll(stdin)
		if err != nil {
			return fmt.Errorf("read stdin: %w", err)
		}
		return check(stdinName, data)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("read manifests: %w", err)
	}
	if !fi.IsDir() {
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("read manifests: %w", err)
		}
		return check(filepath.ToSlash(p), data)
	}
	n := 0
	err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir() && path != p && strings.HasPrefix(d.Name(), "."):
			return filepath.SkipDir
		case d.IsDir():
			return nil
		}
		if ext := filepath.Ext(path); ext != ".yaml" && ext != ".yml" {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		n++
		return check(filepath.ToSlash(path), data)
	})
	var de *guardrails.DecodeError
	switch {
	case errors.As(err, &de):
		return err
	case err != nil:
		return fmt.Errorf("read manifests: %w", err)
	case n == 0:
		return fmt.Errorf("read manifests: no *.yaml or *.yml files in %s", p)
	}
	return nil
}
