package gitops

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lotse/lotse/internal/trust"
	"github.com/lotse/lotse/internal/vuln"
)

// Config is a parsed and validated lotse.yaml, the file at the root of the
// GitOps repository that tells lotse which apps it promotes through which
// stages:
//
//	version: 1
//	gitlab:
//	  project: platform/gitops      # this GitOps repository
//	  defaultBranch: main           # optional, default main
//	signing:
//	  publicKey: keys/cosign.pub    # path in this repository, or a KMS URI
//	apps:
//	  - name: shop
//	    sourceProject: team/shop    # the project that builds the image
//	    image: harbor.example.com/team/shop
//	    values: apps/{app}/envs/{stage}/values.yaml
//	    set:                        # values path: part of the image reference
//	      image.repository: repository
//	      image.tag: tag
//	      image.digest: digest
//	    stages: [dev, staging, production]   # optional, default all
//	    releases: {allowUnprotectedRefs: false}  # optional: lotsed's release endpoint
//	stages:
//	  - name: dev
//	    promotion: commit
//	  - name: staging
//	    promotion: merge-request
//	    gates: {signature: true, maxSeverity: high, soak: 30m, health: true}
//	  - name: production
//	    promotion: approval
//	    approvals: 2
//	    gates: {signature: true, maxSeverity: medium, maxScanAge: 24h, soak: 1h, health: true}
//	    labels: [promotion, production]
//	guardrails:                     # optional: lotse guardrails check, see Guardrails
//	  allowedRegistries: [harbor.example.com]
//	  stages: {dev: {rules: {image-digest: {enabled: false}}}}
//
// Choices beyond the first sketch, each for a reason:
//   - set is required: charts name their image fields differently, and a
//     guessed default would write keys a chart ignores.
//   - approvals is required (and at least 1) for approval stages and refused
//     elsewhere, so a count never sits where it has no effect.
//   - a stage with gates.signature needs signing.publicKey.
//   - gates.maxScanAge needs gates.maxSeverity: the age is that of the scan
//     the scan gate reads, and a stage without one reads none.
//   - two apps may not set the same path in the same values file for the same
//     stage, since each promotion would undo the other's.
//   - {app} in a set path is replaced by the app's name ([App.SetPath]), so
//     several apps can share one values file per stage: values:
//     envs/{stage}/values.yaml with apps.{app}.image.tag: tag.
//
// The JSON schema in [Schema] describes the same file for editors.
type Config struct {
	Version int
	GitLab  GitLab
	Signing Signing
	Apps    []App
	Stages  []Stage // in promotion order
	// Guardrails is the policy of lotse guardrails check.
	Guardrails Guardrails
	// Freezes are windows in which no promotion into their stages is
	// merged.
	Freezes []Freeze
}

// GitLab says where the GitOps repository lives.
type GitLab struct {
	Project       string // project path, e.g. platform/gitops
	DefaultBranch string // branch ArgoCD watches; "main" when not set
}

// Signing configures the signature gate: a public key, or keyless
// signatures by an identity (exactly one of the two).
type Signing struct {
	// PublicKey is a path in the GitOps repository or a KMS URI
	// (awskms://..., gcpkms://..., hashivault://...).
	PublicKey string
	// Keyless verifies Fulcio-certificate signatures by issuer and
	// identity; its TrustedRoot is a path in the GitOps repository.
	Keyless *trust.Keyless
}

// App is one deployable image and where lotse writes it.
type App struct {
	Name          string
	SourceProject string   // GitLab project that builds the image
	Image         string   // image repository, without tag or digest
	Values        string   // values file path template with {app} and {stage}
	Set           []Target // in file order
	Stages        []string // the stages the app goes through, in order
	// Releases governs releases handed to lotsed (POST /api/v1/releases)
	// with the app pipeline's GitLab CI ID token.
	Releases Releases
}

// Releases is what lotsed demands of a release it commits for an app.
type Releases struct {
	// AllowUnprotectedRefs accepts releases from pipelines of unprotected
	// branches and tags (the token's ref_protected false). Default false:
	// only protected refs, which need Maintainer-granted rights to push,
	// may release.
	AllowUnprotectedRefs bool
}

// Target says which part of the image reference a values path receives.
type Target struct {
	Path string // dotted values path, see Edit; {app} is replaced, see App.SetPath
	Part Part
}

// Stage is one step of the promotion path.
type Stage struct {
	Name      string
	Promotion Promotion
	Approvals int // distinct approvers required; only for PromotionApproval
	Gates     Gates
	Labels    []string // merge request labels
	// Sync is how ArgoCD syncs the stage: SyncAuto (the default) or
	// SyncManual. A version that lands in a manual stage runs only once
	// ArgoCD reports it Synced and Healthy.
	Sync Sync
	// Pipeline: the latest pipeline GitLab ran for the exact commit lotse
	// merges must have succeeded (the guardrails job runs there). Required
	// by default on approval stages; "pipeline: optional" turns it off,
	// "pipeline: required" on for other stages.
	Pipeline bool
	// Tier is the GitLab environment tier of the stage's deployments:
	// production, staging, testing, development or other. Empty: from the
	// stage's position (see TierAt).
	Tier string
	// URL is the external URL of the stage's GitLab environment, with
	// {app} standing for the app's name; empty: none.
	URL string
}

// The GitLab environment tiers.
var Tiers = []string{"production", "staging", "testing", "development", "other"}

// TierAt is the tier of stage i of n when lotse.yaml names none: the last
// stage is production, the first development, any other staging.
func TierAt(i, n int) string {
	switch {
	case i == n-1:
		return "production"
	case i == 0:
		return "development"
	}
	return "staging"
}

// URLFor is the stage's environment URL for app; empty when it has none.
func (s Stage) URLFor(app string) string {
	return strings.ReplaceAll(s.URL, "{app}", app)
}

// Sync is how ArgoCD syncs a stage.
type Sync string

// The sync modes.
const (
	SyncAuto   Sync = "auto"
	SyncManual Sync = "manual"
)

// Promotion is how a new image reaches a stage.
type Promotion string

// The promotion modes.
const (
	// PromotionCommit commits straight to the default branch.
	PromotionCommit Promotion = "commit"
	// PromotionMergeRequest opens a merge request that lotse merges once the
	// gates pass.
	PromotionMergeRequest Promotion = "merge-request"
	// PromotionApproval opens a merge request that needs Stage.Approvals
	// distinct approvers before lotse merges it.
	PromotionApproval Promotion = "approval"
)

// Gates are the checks an image must pass before it is promoted to a stage.
type Gates struct {
	Signature   bool           // the image must carry a valid signature
	MaxSeverity *vuln.Severity // the scan attestation must have no finding at or above it; nil: no gate
	Soak        time.Duration  // time the image must have run in the previous stage
	Health      bool           // the previous stage must be healthy in ArgoCD
	// MaxScanAge is how old the newest scan attestation may be (its
	// metadata.scanFinishedOn); 0: any age. It needs MaxSeverity.
	MaxScanAge time.Duration
}

// BranchName is the branch lotse uses to promote app to stage.
func BranchName(app, stage string) string { return "lotse/" + app + "/" + stage }

// App returns the app called name.
func (c *Config) App(name string) (*App, error) {
	for i := range c.Apps {
		if c.Apps[i].Name == name {
			return &c.Apps[i], nil
		}
	}
	names := make([]string, len(c.Apps))
	for i, a := range c.Apps {
		names[i] = a.Name
	}
	return nil, fmt.Errorf("app %q is not defined (apps: %s)", name, strings.Join(names, ", "))
}

// Stage returns the stage called name.
func (c *Config) Stage(name string) (*Stage, error) {
	for i := range c.Stages {
		if c.Stages[i].Name == name {
			return &c.Stages[i], nil
		}
	}
	return nil, fmt.Errorf("stage %q is not defined (stages: %s)", name, strings.Join(c.stageNames(), ", "))
}

func (c *Config) stageNames() []string {
	names := make([]string, len(c.Stages))
	for i, s := range c.Stages {
		names[i] = s.Name
	}
	return names
}

// StagesFor returns the stages app goes through, in promotion order.
func (c *Config) StagesFor(app string) ([]*Stage, error) {
	a, err := c.App(app)
	if err != nil {
		return nil, err
	}
	stages := make([]*Stage, 0, len(a.Stages))
	for _, name := range a.Stages {
		s, err := c.Stage(name)
		if err != nil {
			return nil, fmt.Errorf("app %q: %w", app, err)
		}
		stages = append(stages, s)
	}
	return stages, nil
}

// NextStage returns the stage app goes to after stage; ok is false when stage
// is the app's last one.
func (c *Config) NextStage(app, stage string) (next *Stage, ok bool, err error) {
	return c.stepStage(app, stage, 1)
}

// PrevStage returns the stage app comes from before stage; ok is false when
// stage is the app's first one.
func (c *Config) PrevStage(app, stage string) (prev *Stage, ok bool, err error) {
	return c.stepStage(app, stage, -1)
}

func (c *Config) stepStage(app, stage string, step int) (*Stage, bool, error) {
	stages, err := c.StagesFor(app)
	if err != nil {
		return nil, false, err
	}
	i := slices.IndexFunc(stages, func(s *Stage) bool { return s.Name == stage })
	if i < 0 {
		a, _ := c.App(app)
		return nil, false, fmt.Errorf("app %q does not go through stage %q (its stages: %s)", app, stage, strings.Join(a.Stages, ", "))
	}
	if i+step < 0 || i+step >= len(stages) {
		return nil, false, nil
	}
	return stages[i+step], true, nil
}

// ValuesPath returns the values file of the app for stage: the Values
// template with {app} and {stage} replaced.
func (a *App) ValuesPath(stage string) string {
	return strings.NewReplacer("{app}", a.Name, "{stage}", stage).Replace(a.Values)
}

// SetPath returns the values path of target t for this app: t.Path with
// {app} replaced by the app's name. {app} lets several apps share one values
// file, e.g. values: envs/{stage}/values.yaml with apps.{app}.image.tag.
func (a *App) SetPath(t Target) string {
	return strings.ReplaceAll(t.Path, "{app}", a.Name)
}

// Edits returns the values edits that point the app at ref, one per Set
// target, in order. ref must be an image of the app's repository. An app that
// sets the tag needs a reference with a tag: lotse does not derive a tag from
// a digest (a chart would render repository:sha256:... which no registry
// serves), so promote references like repository:tag@sha256:... for such apps.
func (a *App) Edits(ref ImageRef) ([]Edit, error) {
	if ref.Repository != a.Image {
		return nil, fmt.Errorf("app %q: image %s is not from the app's repository %s", a.Name, ref, a.Image)
	}
	edits := make([]Edit, 0, len(a.Set))
	for _, t := range a.Set {
		v, err := ref.Part(t.Part)
		if err != nil {
			return nil, fmt.Errorf("app %q sets %s to the %s: %w", a.Name, t.Path, t.Part, err)
		}
		edits = append(edits, Edit{Path: a.SetPath(t), Value: v})
	}
	return edits, nil
}
