package promotion

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/lotse/lotse/internal/vuln"
)

// Mode is how a new image reaches a stage.
type Mode string

// The promotion modes, as in lotse.yaml.
const (
	// ModeCommit stages are written directly to the default branch by
	// `lotse bump` in CI; lotsed opens no merge request for them.
	ModeCommit Mode = "commit"
	// ModeMergeRequest stages get a merge request that lotsed merges once the
	// gates pass.
	ModeMergeRequest Mode = "merge-request"
	// ModeApproval stages get a merge request that lotsed merges once the
	// gates pass and StagePolicy.Approvals valid approvers approved it.
	ModeApproval Mode = "approval"
)

// DefaultMergeAttempts is how many times lotsed asks GitLab to merge an MR
// whose mergeability is still being computed before it gives up, when
// Policy.MergeAttempts is zero.
const DefaultMergeAttempts = 10

// Policy is what the engine knows about one app: its stages in promotion
// order and who may do what. The service derives it from lotse.yaml and its
// own configuration.
type Policy struct {
	App       string
	Stages    []StagePolicy // in promotion order, e.g. dev, staging, production
	Bot       User          // lotse's own GitLab user: its approvals never count, its notes are ignored
	Operators []User        // users allowed to run ChatOps commands; empty: nobody
	// Writers are the users besides Bot whose pushes to the default branch
	// count as landings (the user of the CI token that bumps commit
	// stages). Any other change of a stage is out-of-band.
	Writers []User
	// Notice is shown in every sticky comment: what the service found wrong
	// in GitLab's settings (e.g. unprotected lotse/* branches).
	Notice string
	// Freezes are lotse.yaml's freeze windows in force around now: no
	// promotion into their stages is merged while one is active.
	Freezes []FreezeWindow
	// MergeAttempts bounds the MergeMR calls while GitLab still computes
	// mergeability; 0 means DefaultMergeAttempts.
	MergeAttempts int
}

// StagePolicy is one stage of the promotion path and its gates.
type StagePolicy struct {
	Name             string
	Mode             Mode
	Approvals        int            // distinct valid approvers required; ModeApproval only
	RequireSignature bool           // the image must carry a valid signature
	MaxSeverity      *vuln.Severity // the scan attestation must have no finding at or above it; nil: no scan gate
	MaxScanAge       time.Duration  // with MaxSeverity: how old the scan may be; 0: any age
	Soak             time.Duration  // time the version must have been in the previous stage
	RequireHealthy   bool           // ArgoCD must report the previous stage healthy for the version
	// RequirePipeline: the latest pipeline for the commit lotse merges
	// must have succeeded.
	RequirePipeline bool
	// ManualSync: ArgoCD syncs the stage by hand; a version that lands there
	// runs only once ArgoCD reports it Synced and Healthy.
	ManualSync bool
	// Tier is the GitLab environment tier of the stage's deployments;
	// empty: production for the last stage, development for the first,
	// staging otherwise.
	Tier string
	// URL is the external URL of the stage's GitLab environment; empty:
	// none.
	URL string
}

// FreezeWindow is a time in which no promotion into Stages (all stages
// when empty) is merged.
type FreezeWindow struct {
	Stages      []string
	Reason      string
	From, Until time.Time
}

// ErrInvalidPolicy is wrapped by the errors of Policy.Validate.
var ErrInvalidPolicy = errors.New("invalid promotion policy")

// Validate checks that the policy can drive the engine: an app name, at
// least one stage, unique non-empty stage names, known modes, a positive
// approval count exactly on approval stages and no negative soak.
func (p Policy) Validate() error {
	if p.App == "" {
		return fmt.Errorf("%w: no app name", ErrInvalidPolicy)
	}
	if len(p.Stages) == 0 {
		return fmt.Errorf("%w: app %s has no stages", ErrInvalidPolicy, p.App)
	}
	seen := make(map[string]bool, len(p.Stages))
	for i, st := range p.Stages {
		if st.Name == "" {
			return fmt.Errorf("%w: stage %d has no name", ErrInvalidPolicy, i)
		}
		if seen[st.Name] {
			return fmt.Errorf("%w: stage %s appears twice", ErrInvalidPolicy, st.Name)
		}
		seen[st.Name] = true
		switch st.Mode {
		case ModeCommit, ModeMergeRequest:
			if st.Approvals != 0 {
				return fmt.Errorf("%w: stage %s: approvals only apply to approval stages", ErrInvalidPolicy, st.Name)
			}
		case ModeApproval:
			if st.Approvals < 1 {
				return fmt.Errorf("%w: stage %s: an approval stage needs at least 1 approval", ErrInvalidPolicy, st.Name)
			}
		default:
			return fmt.Errorf("%w: stage %s: unknown mode %q", ErrInvalidPolicy, st.Name, st.Mode)
		}
		if st.Soak < 0 {
			return fmt.Errorf("%w: stage %s: negative soak %v", ErrInvalidPolicy, st.Name, st.Soak)
		}
	}
	if p.MergeAttempts < 0 {
		return fmt.Errorf("%w: negative merge attempts", ErrInvalidPolicy)
	}
	return nil
}

// stageIndex returns the position of the stage called name, or -1.
func (p Policy) stageIndex(name string) int {
	return slices.IndexFunc(p.Stages, func(s StagePolicy) bool { return s.Name == name })
}

// IsOperator reports whether user may run ChatOps commands. lotse's own user
// never may. People are compared by GitLab user ID: usernames can be
// changed by their owners.
func (p Policy) IsOperator(u User) bool {
	return u.ID != 0 && !u.Is(p.Bot) && slices.ContainsFunc(p.Operators, u.Is)
}

// IsWriter reports whether u's pushes to the default branch count as
// landings: lotse's own user or a configured writer.
func (p Policy) IsWriter(u User) bool {
	return u.ID != 0 && (u.Is(p.Bot) || slices.ContainsFunc(p.Writers, u.Is))
}

func (p Policy) mergeAttempts() int {
	if p.MergeAttempts == 0 {
		return DefaultMergeAttempts
	}
	return p.MergeAttempts
}

// needsCheck reports whether the stage needs the service to check anything
// (signature or scan) before the promotion may go on.
func (st StagePolicy) needsCheck() bool { return st.RequireSignature || st.MaxSeverity != nil }
