package ci

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lotse/lotse/internal/audit"
	"github.com/lotse/lotse/internal/auditapi"
)

// auditFlags select what lotse audit reads from lotsed.
type auditFlags struct {
	url              string
	since            string
	app, stage, kind string
	pageSize         int
}

func (a *app) addAuditFlags(cmd *cobra.Command, f *auditFlags) {
	fs := cmd.Flags()
	fs.StringVar(&f.url, "url", a.env.get("LOTSE_URL"), "lotsed's base URL (env LOTSE_URL); the token comes from LOTSE_API_TOKEN")
	fs.StringVar(&f.since, "since", "", "only records at or after TIME (RFC 3339 or YYYY-MM-DD) or DURATION ago (like 24h or 30d)")
	fs.StringVar(&f.app, "app", "", "only this app's records")
	fs.StringVar(&f.stage, "stage", "", "only this stage's records")
	fs.StringVar(&f.kind, "kind", "", "only records of this kind (landed, approved, ...)")
	fs.IntVar(&f.pageSize, "page-size", auditapi.MaxLimit, "records per request")
}

// filter turns the flags into a filter; since is relative to now.
func (f *auditFlags) filter(now time.Time) (audit.Filter, error) {
	flt := audit.Filter{App: f.app, Stage: f.stage, Kind: f.kind}
	if f.since != "" {
		t, err := parseSince(f.since, now)
		if err != nil {
			return audit.Filter{}, err
		}
		flt.Since = t
	}
	return flt, nil
}

func (a *app) auditClient(f *auditFlags) (*auditapi.Client, error) {
	if f.url == "" {
		return nil, usagef("no lotsed URL: pass --url or set LOTSE_URL")
	}
	token := a.env.get("LOTSE_API_TOKEN")
	if token == "" {
		return nil, usagef("no API token: set LOTSE_API_TOKEN to lotsed's read token")
	}
	return &auditapi.Client{URL: f.url, Token: token, PageSize: f.pageSize}, nil
}

// parseSince reads an RFC 3339 time, a date (midnight UTC) or a duration
// before now ("24h", "30d").
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(d); err == nil && n >= 0 {
			return now.AddDate(0, 0, -n), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, usagef("--since: %q is neither a time (2026-05-01, 2026-05-01T12:00:00Z) nor a duration (24h, 30d)", s)
}

func (a *app) auditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Export lotsed's audit log and verify its hash chain",
		Long: `lotsed chains its audit records: each carries a gap-free sequence number, the
hash of the record before it and its own hash (SHA-256 over a canonical
encoding, see internal/audit). An edited, removed or inserted record breaks
the chain. The chain's head (SEQ:HASH of the last record) is published by
lotsed; a head published earlier must still be in a later export.`,
		Args: exactArgs(0, "a subcommand"),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.auditExportCmd(), a.auditVerifyCmd())
	return cmd
}

func (a *app) auditExportCmd() *cobra.Command {
	var (
		f   auditFlags
		out string
	)
	cmd := &cobra.Command{
		Use:   "export [--url URL] [--since TIME|DURATION] [--app A] [--stage S] [-o FILE]",
		Short: "Write lotsed's audit records as JSON lines, oldest first",
		Long: `Page through lotsed's GET /api/v1/audit in chain order and write one JSON
record per line (seq, at, app, stage, image, actor, kind, detail, prev_hash,
hash) to FILE (written whole or not at all) or stdout. The URL comes from
--url or LOTSE_URL, the read token from LOTSE_API_TOKEN.

An export with --app, --stage, --kind or --since holds a selection of the
chain: verify it with lotse audit verify --partial.`,
		Example: `  LOTSE_API_TOKEN=... lotse audit export --url https://lotsed.example.com -o audit.jsonl
  lotse audit export --app shop --since 30d -o shop.jsonl`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			flt, err := f.filter(a.now())
			if err != nil {
				return err
			}
			c, err := a.auditClient(&f)
			if err != nil {
				return err
			}
			w, commit, abort, err := openOutput(out, a.stdout)
			if err != nil {
				return err
			}
			var (
				n          int
				first, end audit.Head
			)
			err = c.Each(cmd.Context(), flt, func(r audit.Record) error {
				if n == 0 {
					first = audit.Head{Seq: r.Seq, Hash: r.Hash}
				}
				n++
				end = audit.Head{Seq: r.Seq, Hash: r.Hash}
				return auditapi.Write(w, r)
			})
			if err != nil {
				abort()
				return err
			}
			if err := commit(); err != nil {
				return err
			}
			if n == 0 {
				printf(a.stderr, "exported no records\n")
				return nil
			}
			printf(a.stderr, "exported %d records (%d to %d), last %s\n", n, first.Seq, end.Seq, end)
			return nil
		},
	}
	a.addAuditFlags(cmd, &f)
	cmd.Flags().StringVarP(&out, "output", "o", "", "write to FILE instead of stdout")
	return cmd
}

// openOutput returns a writer to path (a temporary file renamed onto it by
// commit, removed by abort) or to stdout when path is empty.
func openOutput(path string, stdout io.Writer) (w io.Writer, commit func() error, abort func(), err error) {
	if path == "" || path == "-" {
		return stdout, func() error { return nil }, func() {}, nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return nil, nil, nil, fmt.Errorf("write %s: %w", path, err)
	}
	abort = func() { tmp.Close(); os.Remove(tmp.Name()) }
	commit = func() error {
		if err := tmp.Sync(); err != nil {
			abort()
			return fmt.Errorf("write %s: %w", path, err)
		}
		if err := tmp.Close(); err != nil {
			os.Remove(tmp.Name())
			return fmt.Errorf("write %s: %w", path, err)
		}
		if err := os.Rename(tmp.Name(), path); err != nil {
			os.Remove(tmp.Name())
			return fmt.Errorf("write %s: %w", path, err)
		}
		return nil
	}
	return tmp, commit, abort, nil
}

func (a *app) auditVerifyCmd() *cobra.Command {
	var (
		f       auditFlags
		partial bool
		heads   []string
	)
	cmd := &cobra.Command{
		Use:   "verify FILE | --url URL [--app A] [--stage S] [--since TIME]",
		Short: "Recompute the audit chain of an export or of lotsed; exit 1 at the first bad record",
		Long: `Recompute the hash chain of an export FILE (made by lotse audit export), or
read it from lotsed (--url or LOTSE_URL, token from LOTSE_API_TOKEN), and
print OK with the head, or the first bad record, exiting 1:

  record 17: hash does not match its content (edited)
  record 18: prev_hash does not match record 17 (a record was removed or inserted before it, ...)
  sequence jumps from 12 to 14: record 13 removed

A whole chain (an unfiltered export) must start at record 1 and have no
gaps. An export filtered by --app, --stage, --kind or --since is a
selection: verify it with --partial, which checks every record's own hash,
the order, and the link between records with adjacent sequence numbers,
and counts the records between them as not in the export instead of as
removed. A partial check proves that the records it has are unaltered, not
that none is missing. With --url the filter flags make the check partial.

Somebody with write access to the database can recompute the chain after an
edit; --head SEQ:HASH (a head lotsed published earlier in its log line
"audit chain head"; its lotsed_audit_head_seq metric shows how far the chain
went) catches that: the record SEQ must be there with
that hash.`,
		Example: `  lotse audit verify audit.jsonl --head 1042:9f86d081884c7d65...
  lotse audit verify --partial shop.jsonl
  lotse audit verify --url https://lotsed.example.com`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("want at most one FILE, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			flt, err := f.filter(a.now())
			if err != nil {
				return err
			}
			remote := len(args) == 0
			if !remote && (cmd.Flags().Changed("url") || flt.Partial()) {
				return usagef("give FILE or --url with its filters, not both")
			}
			if remote && flt.Partial() {
				partial = true
			}
			v := audit.NewVerifier(partial)
			for _, h := range heads {
				head, err := audit.ParseHead(h)
				if err != nil {
					return usagef("--head: %v", err)
				}
				v.ExpectHead(head)
			}
			if remote {
				c, err := a.auditClient(&f)
				if err != nil {
					return err
				}
				err = c.Each(cmd.Context(), flt, v.Add)
				if err != nil && !errors.Is(err, audit.ErrProblem) {
					return err
				}
			} else {
				file, err := os.Open(args[0])
				if err != nil {
					return fmt.Errorf("read audit export: %w", err)
				}
				defer file.Close()
				err = auditapi.Read(file, v.Add)
				if err != nil && !errors.Is(err, audit.ErrProblem) {
					return fmt.Errorf("%s: %w", args[0], err)
				}
			}
			s, err := v.Finish()
			if err != nil {
				var p *audit.Problem
				if errors.As(err, &p) && p.Fault == audit.Removed && !partial {
					return fmt.Errorf("%w (a filtered export verifies only with --partial)", err)
				}
				return err
			}
			what := "OK"
			if partial {
				what = "OK (partial)"
			}
			printf(a.stdout, "%s: %s\n", what, s)
			if len(heads) > 0 {
				printf(a.stdout, "published head(s) found: %s\n", strings.Join(heads, ", "))
			}
			return nil
		},
	}
	a.addAuditFlags(cmd, &f)
	cmd.Flags().BoolVar(&partial, "partial", false, "the export is filtered: gaps are records not in it, not removed ones")
	cmd.Flags().StringArrayVar(&heads, "head", nil, "a published head SEQ:HASH that must be in the chain (repeatable)")
	return cmd
}
