package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Deployment is one version's deployment in a stage as the promotion
// engine saw it: when it landed, ran, failed or was canceled. These are
// the facts of the DORA figures (package dora).
type Deployment struct {
	App, Stage string
	// Key identifies the deployment within its app and stage: the GitOps
	// commit that landed it.
	Key           string
	Image         string
	SourceProject string
	SourceCommit  string
	Rollback      bool   // it put an earlier version back
	Status        string // the latest: running, success, failed or canceled
	LandedAt      time.Time
	RunningAt     time.Time // the first time it ran; zero: never
	FailedAt      time.Time // the first time it failed; zero: never
	Failure       string    // why it failed first: degraded, rolled-back
	CanceledAt    time.Time // superseded before it ran
	// Ref is the source branch the GitLab deployment names.
	Ref string
	// SourceMR is the IID of the app's MR that brought SourceCommit.
	SourceMR int64
	// CommittedAt, MergedAt and FirstCommitAt are the source commit's
	// time, its MR's merge and the MR's first commit; zero: unknown.
	CommittedAt, MergedAt, FirstCommitAt time.Time
	// GitLabID is the id of the GitLab deployment in SourceProject; 0:
	// none yet.
	GitLabID int64
}

// DeploymentFilter selects deployments; zero fields select everything.
type DeploymentFilter struct {
	App, Stage string
	Since      time.Time // landed at or after it
}

const deploymentColumns = `app, stage, deploy_key, image, source_project, source_commit, is_rollback, status, landed_at, running_at,
failed_at, failure, canceled_at, ref, source_mr, committed_at, merged_at, first_commit_at, gitlab_id`

// RecordDeployment stores a deployment or adds to the stored one: Status
// becomes d's; the times, the failure, the source facts and the GitLab id
// are kept once set (the first running, failure and cancellation count),
// so recording a status again changes nothing.
func (db *DB) RecordDeployment(ctx context.Context, d Deployment) error {
	if d.App == "" || d.Stage == "" || d.Key == "" || d.Image == "" || d.LandedAt.IsZero() {
		return fmt.Errorf("record deployment: app, stage, key, image and landing time are required (got %q, %q, %q, %q)", d.App, d.Stage, d.Key, d.Image)
	}
	keep := func(col string) string {
		return fmt.Sprintf("%[1]s = CASE WHEN deployments.%[1]s = %[2]s THEN excluded.%[1]s ELSE deployments.%[1]s END", col, zeroOf(col))
	}
	var sets []string
	for _, c := range []string{"running_at", "failed_at", "failure", "canceled_at", "ref", "source_mr", "committed_at", "merged_at", "first_commit_at", "gitlab_id"} {
		sets = append(sets, keep(c))
	}
	rollback := 0
	if d.Rollback {
		rollback = 1
	}
	_, err := db.w.ExecContext(ctx, db.q(`INSERT INTO deployments (`+deploymentColumns+`)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (app, stage, deploy_key) DO UPDATE SET status = excluded.status, `+strings.Join(sets, ", ")),
		d.App, d.Stage, d.Key, d.Image, d.SourceProject, d.SourceCommit, rollback, d.Status, micros(d.LandedAt), micros(d.RunningAt),
		micros(d.FailedAt), d.Failure, micros(d.CanceledAt), d.Ref, d.SourceMR, micros(d.CommittedAt), micros(d.MergedAt), micros(d.FirstCommitAt), d.GitLabID)
	if err != nil {
		return fmt.Errorf("record deployment of %s in %s: %w", d.App, d.Stage, err)
	}
	return nil
}

func zeroOf(col string) string {
	switch col {
	case "failure", "ref":
		return "''"
	}
	return "0"
}

// FindDeployment returns the deployment of app in stage with key; false
// when none is stored.
func (db *DB) FindDeployment(ctx context.Context, app, stage, key string) (Deployment, bool, error) {
	ds, err := db.deployments(ctx, "app = ? AND stage = ? AND deploy_key = ?", app, stage, key)
	if err != nil || len(ds) == 0 {
		return Deployment{}, false, err
	}
	return ds[0], true, nil
}

// Deployments returns the deployments f selects, oldest landing first.
func (db *DB) Deployments(ctx context.Context, f DeploymentFilter) ([]Deployment, error) {
	where, args := []string{"1 = 1"}, []any{}
	if f.App != "" {
		where, args = append(where, "app = ?"), append(args, f.App)
	}
	if f.Stage != "" {
		where, args = append(where, "stage = ?"), append(args, f.Stage)
	}
	if !f.Since.IsZero() {
		where, args = append(where, "landed_at >= ?"), append(args, micros(f.Since))
	}
	return db.deployments(ctx, strings.Join(where, " AND "), args...)
}

func (db *DB) deployments(ctx context.Context, where string, args ...any) ([]Deployment, error) {
	rows, err := db.r.QueryContext(ctx, db.q(`SELECT `+deploymentColumns+` FROM deployments WHERE `+where+` ORDER BY landed_at, id`), args...)
	if err != nil {
		return nil, fmt.Errorf("read deployments: %w", err)
	}
	defer rows.Close()
	var out []Deployment
	for rows.Next() {
		var (
			d                                                           Deployment
			rollback                                                    int
			landed, running, failed, canceled, committed, merged, first int64
		)
		if err := rows.Scan(&d.App, &d.Stage, &d.Key, &d.Image, &d.SourceProject, &d.SourceCommit, &rollback, &d.Status, &landed, &running,
			&failed, &d.Failure, &canceled, &d.Ref, &d.SourceMR, &committed, &merged, &first, &d.GitLabID); err != nil {
			return nil, fmt.Errorf("read deployments: %w", err)
		}
		d.Rollback = rollback != 0
		d.LandedAt, d.RunningAt, d.FailedAt, d.CanceledAt = fromMicros(landed), fromMicros(running), fromMicros(failed), fromMicros(canceled)
		d.CommittedAt, d.MergedAt, d.FirstCommitAt = fromMicros(committed), fromMicros(merged), fromMicros(first)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("read deployments: %w", err)
	}
	return out, nil
}
