package promotion

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Marker is the hidden first line of a sticky comment; the service finds the
// comment to update by it. stage is empty for the comment on the app's
// source MR.
func Marker(app, stage string) string {
	if stage == "" {
		return "<!-- lotse:sticky app=" + app + " -->"
	}
	return "<!-- lotse:sticky app=" + app + " stage=" + stage + " -->"
}

// RenderComment renders the sticky comment of the GitOps MR that promotes
// the app into stage: where every stage is, the gates of the promotion with
// their reasons, the approvals (who counted, who did not and why) and the
// next step. now only computes ages and soak progress.
func RenderComment(p Policy, s State, stage string, now time.Time) string {
	var b strings.Builder
	b.WriteString(Marker(p.App, stage) + "\n")
	fmt.Fprintf(&b, "### lotse · %s → %s\n\n", p.App, stage)
	if p.Notice != "" {
		fmt.Fprintf(&b, "> ⚠️ %s\n\n", p.Notice)
	}
	stageTable(&b, p, s, "", "", now)
	ti := p.stageIndex(stage)
	if st := s.Stage(stage); ti >= 0 && st != nil && st.Promotion != nil {
		b.WriteString("\n")
		promotionDetails(&b, p, s, ti, st.Promotion, now)
	}
	return b.String()
}

// RenderSourceComment renders the sticky comment on the app's source MR that
// produced commit in project: where the change runs and how its latest
// promotion goes.
func RenderSourceComment(p Policy, s State, project, commit string, now time.Time) string {
	var b strings.Builder
	b.WriteString(Marker(p.App, "") + "\n")
	fmt.Fprintf(&b, "### lotse · %s: where `%s` is\n\n", p.App, short(commit))
	stageTable(&b, p, s, project, commit, now)
	for ti := len(p.Stages) - 1; ti >= 0; ti-- {
		if pr := sourcePromotion(s.Stage(p.Stages[ti].Name), project, commit); pr != nil {
			b.WriteString("\n")
			promotionDetails(&b, p, s, ti, pr, now)
			break
		}
	}
	return b.String()
}

// sourcePromotion returns the latest promotion into the stage of the version
// built from commit, or nil.
func sourcePromotion(st *StageState, project, commit string) *Promotion {
	if st == nil {
		return nil
	}
	for _, pr := range []*Promotion{st.Promotion, st.Previous} {
		if pr != nil && pr.SourceCommit == commit && pr.SourceProject == project {
			return pr
		}
	}
	return nil
}

func stageTable(b *strings.Builder, p Policy, s State, project, commit string, now time.Time) {
	if commit != "" {
		b.WriteString("| stage | image | since | health | this change |\n|---|---|---|---|---|\n")
	} else {
		b.WriteString("| stage | image | since | health |\n|---|---|---|---|\n")
	}
	for _, sp := range p.Stages {
		st := s.Stage(sp.Name)
		image, since, health := "—", "—", "—"
		var here string
		if st != nil && st.Current != nil {
			d := st.Current
			image = code(d.Image)
			since = d.LandedAt.UTC().Format("2006-01-02 15:04 UTC") + " (" + fmtDur(now.Sub(d.LandedAt)) + " ago)"
			health = "unknown"
			if d.Health != nil {
				health = healthWord(d.Health.Healthy) + reasonSuffix(cell(d.Health.Reason))
			}
			switch d.Sync {
			case SyncWaiting:
				health = "merged, waiting for ArgoCD sync"
			case SyncDegraded:
				health = "degraded" + reasonSuffix(cell(healthReason(d)))
			}
			if commit != "" && d.SourceCommit == commit {
				here = "✅ running"
			}
		}
		if commit != "" && here == "" {
			if pr := sourcePromotion(st, project, commit); pr != nil {
				here = phaseLabel(pr.Phase)
			} else if st != nil && slices.ContainsFunc(st.History, func(d Deployment) bool { return d.SourceCommit == commit }) {
				here = "ran here before"
			}
		}
		if commit != "" {
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", sp.Name, image, since, health, orDefault(here, "—"))
		} else {
			fmt.Fprintf(b, "| %s | %s | %s | %s |\n", sp.Name, image, since, health)
		}
	}
}

func phaseLabel(ph Phase) string {
	switch ph {
	case PhaseChecking:
		return "🔎 checking gates"
	case PhaseWaiting:
		return "⏳ waiting for gates"
	case PhaseOpening:
		return "📝 opening merge request"
	case PhaseAwaitingApproval:
		return "👀 awaiting approval"
	case PhaseMerging:
		return "🔀 merging"
	case PhaseMerged:
		return "🔀 merged, landing"
	case PhaseLanded:
		return "✅ landed"
	case PhaseBlocked:
		return "⛔ blocked"
	case PhaseTampered:
		return "🚫 tampered, closed"
	case PhaseSuperseded:
		return "⏭ superseded"
	case PhaseCancelled:
		return "✖ cancelled"
	}
	return string(ph)
}

func promotionDetails(b *strings.Builder, p Policy, s State, ti int, pr *Promotion, now time.Time) {
	target := p.Stages[ti]
	what := "Promotion"
	from := " from " + pr.From
	if pr.Rollback {
		what, from = "Rollback", ""
	}
	fmt.Fprintf(b, "**%s** of %s%s to %s: **%s**", what, code(pr.Image), from, target.Name, phaseLabel(pr.Phase))
	if pr.MR != nil {
		fmt.Fprintf(b, " in !%d", pr.MR.IID)
	}
	fmt.Fprintf(b, " (started %s", pr.StartedAt.UTC().Format("2006-01-02 15:04 UTC"))
	if pr.Trigger.ID != 0 {
		fmt.Fprintf(b, " by %s", cell(pr.Trigger.String()))
	}
	b.WriteString(")\n")
	if pr.Reason != "" {
		fmt.Fprintf(b, "\n> %s\n", cell(pr.Reason))
	}
	gateRows(b, p, s, target, pr, now)
	approvals(b, p, target, pr)
	fmt.Fprintf(b, "\n**Next step:** %s\n", nextStep(p, target, pr, s, now))
}

func gateRows(b *strings.Builder, p Policy, s State, target StagePolicy, pr *Promotion, now time.Time) {
	type row struct {
		name string
		g    Gate
		wait string // reason shown while pending
	}
	checking := "not checked yet"
	if pr.Phase == PhaseChecking {
		checking = "being checked"
	}
	var rows []row
	if pr.Gates.Signature.Status != GateNotRequired {
		rows = append(rows, row{"signature", pr.Gates.Signature, checking})
	}
	if pr.Gates.Scan.Status != GateNotRequired {
		name := "scan"
		if target.MaxSeverity != nil {
			name = "scan (nothing at or above " + target.MaxSeverity.String() + ")"
		}
		rows = append(rows, row{name, pr.Gates.Scan, checking})
	}
	if pr.Gates.Soak.Status != GateNotRequired {
		rows = append(rows, row{"soak " + fmtDur(target.Soak) + " in " + orDefault(pr.From, "the previous stage"), pr.Gates.Soak, soakProgress(s, target, pr, now)})
	}
	if pr.Gates.Health.Status != GateNotRequired {
		rows = append(rows, row{"health of " + orDefault(pr.From, "the previous stage"), pr.Gates.Health, "waiting for ArgoCD to report " + pr.From + " healthy"})
	}
	if len(rows) == 0 {
		b.WriteString("\n**Gates:** none required\n")
		return
	}
	b.WriteString("\n| gate | status | reason |\n|---|---|---|\n")
	for _, r := range rows {
		reason := r.g.Reason
		if r.g.Status == GatePending && reason == "" {
			reason = r.wait
			if pr.Phase.IsTerminal() {
				reason = "not evaluated"
			}
		}
		fmt.Fprintf(b, "| %s | %s | %s |\n", r.name, gateLabel(r.g.Status), cell(reason))
	}
}

func gateLabel(g GateStatus) string {
	switch g {
	case GatePassed:
		return "✅ passed"
	case GateFailed:
		return "❌ failed"
	case GateSkipped:
		return "⏭ skipped"
	case GatePending:
		return "⏳ pending"
	}
	return string(g)
}

// soakProgress says how long the promoted version has soaked so far.
func soakProgress(s State, target StagePolicy, pr *Promotion, now time.Time) string {
	st := s.Stage(pr.From)
	if st == nil || st.Current == nil || st.Current.Image != pr.Image {
		return "not running in " + pr.From
	}
	el := now.Sub(st.Current.LandedAt)
	if el > target.Soak {
		el = target.Soak
	}
	return "soaking: " + fmtDur(el) + " of " + fmtDur(target.Soak)
}

func approvals(b *strings.Builder, p Policy, target StagePolicy, pr *Promotion) {
	if target.Mode != ModeApproval {
		return
	}
	counted, rejected := fourEyes(p, target, pr)
	fmt.Fprintf(b, "\n**Approvals:** %d of %d counted", len(counted), target.Approvals)
	if pr.MR == nil {
		b.WriteString(" (no merge request yet)\n")
		return
	}
	b.WriteString("\n")
	for _, u := range counted {
		fmt.Fprintf(b, "- ✅ %s\n", cell(u.String()))
	}
	for _, r := range rejected {
		fmt.Fprintf(b, "- ❌ %s: %s, does not count\n", cell(r.User.String()), cell(r.Reason))
	}
}

// nextStep says what happens next to the promotion, in one sentence.
func nextStep(p Policy, target StagePolicy, pr *Promotion, s State, now time.Time) string {
	switch pr.Phase {
	case PhaseChecking:
		return "lotse checks the gates of " + code(pr.Image) + "."
	case PhaseWaiting:
		var parts []string
		if pr.Gates.Soak.Status == GatePending {
			parts = append(parts, "the version to soak in "+pr.From+" ("+soakProgress(s, target, pr, now)+")")
		}
		if pr.Gates.Health.Status == GatePending {
			parts = append(parts, "ArgoCD to report "+pr.From+" healthy")
		}
		if len(parts) == 0 {
			return "lotse opens the merge request."
		}
		return "waiting for " + strings.Join(parts, " and ") + "; lotse then opens the merge request."
	case PhaseOpening:
		return "lotse opens the merge request."
	case PhaseAwaitingApproval:
		if authorsUnknown(pr) {
			return "waiting to learn who wrote the change (" + cell(orDefault(pr.AuthorsErr, "recorded by name only")) + "): lotse reads it again every tick; until then no approval counts."
		}
		counted, _ := fourEyes(p, target, pr)
		n := target.Approvals - len(counted)
		return fmt.Sprintf("%d more approval%s needed from someone who is not the merge request author, an author of the change, the operator who asked for it, or lotse's user; lotse then merges.", n, plural(n))
	case PhaseMerging:
		if pr.RetryMerge {
			return fmt.Sprintf("GitLab is still checking whether the merge request can be merged; lotse asks again (attempt %d of %d).", pr.MergeAttempts+1, p.mergeAttempts())
		}
		return "lotse merges the merge request."
	case PhaseMerged:
		return "merged; waiting for the commit to land in " + target.Name + "."
	case PhaseLanded:
		if st := s.Stage(target.Name); target.ManualSync && st != nil && st.Current != nil && st.Current.Image == pr.Image && st.Current.Sync == SyncWaiting {
			return "merged; it runs in " + target.Name + " once ArgoCD syncs it (a manual sync) and reports it healthy."
		}
		ti := p.stageIndex(target.Name)
		if !pr.Rollback && ti >= 0 && ti+1 < len(p.Stages) {
			return "running in " + target.Name + "; next: " + p.Stages[ti+1].Name + "."
		}
		return "running in " + target.Name + "."
	case PhaseBlocked:
		return "fix what blocks it, then an operator comments `/lotse retry`."
	case PhaseTampered:
		return "an operator comments `/lotse retry` to open a clean merge request; protect the `lotse/*` branches so that nobody else can push to them."
	case PhaseSuperseded:
		return "none: a newer version took its place."
	case PhaseCancelled:
		return "none: the merge request was closed; an operator can start again with `/lotse promote " + target.Name + "`."
	}
	return "none."
}

func healthReason(d *Deployment) string {
	if d.Health == nil {
		return ""
	}
	return d.Health.Reason
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
