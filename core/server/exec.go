package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/cairnbackup/cairn/core/backup"
	"github.com/cairnbackup/cairn/core/cluster"
	"github.com/cairnbackup/cairn/core/collection"
	"github.com/cairnbackup/cairn/core/hlc"
	"github.com/cairnbackup/cairn/core/jobs"
	"github.com/cairnbackup/cairn/core/keys"
	"github.com/cairnbackup/cairn/core/manifest"
	"github.com/cairnbackup/cairn/core/redact"
	"github.com/cairnbackup/cairn/core/restore"
	"github.com/cairnbackup/cairn/core/sql"
	"github.com/cairnbackup/cairn/sdk/storage"
)

// Result is a statement's answer, as a table.
type Result struct {
	Columns []string   `json:"columns"`
	Rows    [][]string `json:"rows"`
	// JobID is set for statements that created a job.
	JobID int64 `json:"job_id,omitempty"`
}

// ExecOptions tune one statement.
type ExecOptions struct {
	// User runs the statement; root when empty.
	User string
	// OnProgress is called as an attached job advances.
	OnProgress func(jobs.Record)
	// CheckpointEvery overrides the server's default for a backup.
	CheckpointEvery time.Duration
}

// Exec parses and runs one statement on the gateway node.
func (s *Server) Exec(ctx context.Context, stmt string, opts ExecOptions) (*Result, error) {
	st, err := sql.Parse(stmt)
	if err != nil {
		return nil, err
	}
	return s.ExecStatement(ctx, st, opts)
}

// ExecStatement runs a parsed statement.
func (s *Server) ExecStatement(ctx context.Context, st sql.Statement, opts ExecOptions) (*Result, error) {
	if opts.User == "" {
		opts.User = cluster.RootUser
	}
	switch st := st.(type) {
	case *sql.Backup:
		return s.execBackup(ctx, st, opts)
	case *sql.Restore:
		return s.execRestore(ctx, st, opts)
	case *sql.ShowBackups:
		return s.showBackups(ctx, st)
	case *sql.ShowBackup:
		return s.showBackup(ctx, st)
	case *sql.ShowJobs:
		return s.showJobs(ctx)
	case *sql.ShowJob:
		reg := s.Gateway().Registry
		if st.WhenComplete {
			rec, err := reg.Wait(ctx, st.ID)
			if err != nil {
				return nil, err
			}
			return jobsResult([]jobs.Record{rec}), nil
		}
		rec, err := reg.Get(ctx, st.ID)
		if err != nil {
			return nil, err
		}
		return jobsResult([]jobs.Record{rec}), nil
	case *sql.ControlJob:
		reg := s.Gateway().Registry
		var err error
		switch st.Op {
		case sql.JobPause:
			err = reg.Pause(ctx, st.ID)
		case sql.JobResume:
			err = reg.Resume(ctx, st.ID)
		case sql.JobCancel:
			err = reg.Cancel(ctx, st.ID)
		}
		if err != nil {
			return nil, err
		}
		return &Result{Columns: []string{"job_id"}, Rows: [][]string{{strconv.FormatInt(st.ID, 10)}}, JobID: st.ID}, nil
	}
	return nil, fmt.Errorf("executing %T: unknown statement", st)
}

func (s *Server) requirePrivilege(ctx context.Context, user, priv string) error {
	ok, err := s.Gateway().Node.Meta.HasPrivilege(ctx, user, priv)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("user %s does not have the %s privilege", user, priv)
	}
	return nil
}

func (s *Server) endTime(asOf *sql.AsOf) (hlc.Timestamp, error) {
	now := s.Gateway().Node.Clock.Now()
	if asOf == nil {
		return now, nil
	}
	if asOf.Relative {
		return hlc.Timestamp{WallTime: now.WallTime + int64(asOf.Offset)}, nil
	}
	if now.Less(asOf.Timestamp) {
		return hlc.Timestamp{}, fmt.Errorf("AS OF SYSTEM TIME %s is in the future", asOf.Timestamp)
	}
	return asOf.Timestamp, nil
}

func (s *Server) execBackup(ctx context.Context, st *sql.Backup, opts ExecOptions) (*Result, error) {
	o := st.Options
	switch {
	case o.RevisionHistory:
		return nil, notSupported("BACKUP option revision_history")
	case o.EncryptionPassphrase != "" || len(o.KMS) > 0:
		return nil, notSupported("encrypted BACKUP")
	case o.ExecutionLocality != "":
		return nil, notSupported("BACKUP option execution locality")
	case len(o.IncrementalLocation) > 0:
		return nil, notSupported("BACKUP option incremental_location")
	case len(st.URIs) > 1:
		return nil, notSupported("locality-aware BACKUP (several URIs)")
	case st.Latest:
		return nil, notSupported("incremental BACKUP (INTO LATEST IN)")
	}
	if err := s.requirePrivilege(ctx, opts.User, cluster.PrivBackup); err != nil {
		return nil, err
	}
	end, err := s.endTime(st.AsOf)
	if err != nil {
		return nil, err
	}
	spec := backup.Spec{URI: st.URIs[0], Subdir: st.Subdir, EndTime: end, CheckpointEvery: s.cfg.CheckpointEvery, TargetFileSize: s.cfg.TargetFileSize}
	if opts.CheckpointEvery > 0 {
		spec.CheckpointEvery = opts.CheckpointEvery
	}
	if st.Subdir != "" {
		if err := collection.ValidateSubdir(st.Subdir); err != nil {
			return nil, err
		}
	}
	if err := s.resolveTargets(ctx, st.Targets, &spec); err != nil {
		return nil, err
	}
	// The destination's scheme must be one we can open.
	gw := s.Gateway()
	store, err := gw.Env.Cloud.Open(ctx, spec.URI)
	if err != nil {
		return nil, err
	}
	store.Close()
	if spec.URI, spec.URISecret, err = gw.Env.StashURI(ctx, spec.URI); err != nil {
		return nil, err
	}
	return s.runJob(ctx, backup.JobType, st.String(), opts, spec, st.Options.Detached)
}

func (s *Server) resolveTargets(ctx context.Context, t sql.Targets, spec *backup.Spec) error {
	meta := s.Gateway().Node.Meta
	dbs, err := meta.Databases(ctx)
	if err != nil {
		return err
	}
	byName := map[string]cluster.DatabaseDesc{}
	for _, d := range dbs {
		if d.State == cluster.StatePublic {
			byName[d.Name] = d
		}
	}
	tables, err := meta.Tables(ctx)
	if err != nil {
		return err
	}
	seenDB := map[uint32]bool{}
	seenTable := map[uint32]bool{}
	addDB := func(d cluster.DatabaseDesc) {
		if !seenDB[d.ID] {
			seenDB[d.ID] = true
			spec.Databases = append(spec.Databases, d)
		}
	}
	addTable := func(td cluster.TableDesc) {
		if !seenTable[td.ID] {
			seenTable[td.ID] = true
			spec.Tables = append(spec.Tables, td)
		}
	}
	if t.IsCluster() {
		spec.FullCluster = true
		for _, d := range dbs {
			if d.State == cluster.StatePublic {
				t.Databases = append(t.Databases, d.Name)
			}
		}
	}
	for _, name := range t.Databases {
		d, ok := byName[name]
		if !ok {
			return fmt.Errorf("database %q does not exist", name)
		}
		addDB(d)
		for _, td := range tables {
			if td.ParentID == d.ID && td.State == cluster.StatePublic {
				addTable(td)
			}
		}
	}
	for _, tn := range t.Tables {
		d, ok := byName[tn.Database]
		if !ok {
			return fmt.Errorf("database %q of table %s.%s does not exist", tn.Database, tn.Database, tn.Table)
		}
		addDB(d)
		found := false
		for _, td := range tables {
			if td.ParentID == d.ID && td.State == cluster.StatePublic && (tn.Table == "*" || td.Name == tn.Table) {
				addTable(td)
				found = true
			}
		}
		if !found && tn.Table != "*" {
			return fmt.Errorf("table %s.%s does not exist", tn.Database, tn.Table)
		}
	}
	sort.Slice(spec.Tables, func(i, j int) bool { return spec.Tables[i].ID < spec.Tables[j].ID })
	if len(spec.Tables) == 0 && !spec.FullCluster {
		return errors.New("nothing to back up: the targets hold no tables")
	}
	return nil
}

func (s *Server) execRestore(ctx context.Context, st *sql.Restore, opts ExecOptions) (*Result, error) {
	o := st.Options
	switch {
	case o.EncryptionPassphrase != "" || len(o.KMS) > 0:
		return nil, notSupported("encrypted RESTORE")
	case o.ExecutionLocality != "":
		return nil, notSupported("RESTORE option execution locality")
	case o.IntoDB != "":
		return nil, notSupported("RESTORE option into_db")
	case o.SchemaOnly:
		return nil, notSupported("RESTORE option schema_only")
	case o.VerifyBackupTableData:
		return nil, notSupported("RESTORE option verify_backup_table_data")
	case len(o.IncrementalLocation) > 0:
		return nil, notSupported("RESTORE option incremental_location")
	case st.AsOf != nil:
		return nil, notSupported("RESTORE ... AS OF SYSTEM TIME")
	case len(st.URIs) > 1:
		return nil, notSupported("locality-aware RESTORE (several URIs)")
	case len(st.Targets.Tables) > 0:
		return nil, notSupported("RESTORE TABLE")
	case st.Targets.IsCluster():
		return nil, notSupported("full-cluster RESTORE")
	case len(st.Targets.Databases) != 1:
		return nil, notSupported("RESTORE of several databases at once")
	}
	if err := s.requirePrivilege(ctx, opts.User, cluster.PrivRestore); err != nil {
		return nil, err
	}
	gw := s.Gateway()
	store, err := gw.Env.Cloud.Open(ctx, st.URIs[0])
	if err != nil {
		return nil, err
	}
	subdir, err := collection.ResolveSubdir(ctx, store, st.Subdir, st.Latest)
	store.Close()
	if err != nil {
		return nil, fmt.Errorf("finding the backup in %s: %w", redact.URI(st.URIs[0]), err)
	}
	m, err := restore.LoadManifest(ctx, gw.Env, st.URIs[0], subdir)
	if err != nil {
		return nil, fmt.Errorf("restoring from %s: %w", subdir, err)
	}
	db := st.Targets.Databases[0]
	found := false
	for _, d := range m.Databases {
		found = found || d.Name == db
	}
	if !found {
		return nil, fmt.Errorf("database %q is not in the backup %s", db, subdir)
	}
	newName := o.NewDBName
	if newName == "" {
		newName = db
	}
	if _, err := gw.Node.Meta.Database(ctx, newName); err == nil {
		return nil, fmt.Errorf("database %q already exists: restore with new_db_name = '...'", newName)
	}
	spec := restore.Spec{URI: st.URIs[0], Subdir: subdir, Database: db, NewName: o.NewDBName}
	if spec.URI, spec.URISecret, err = gw.Env.StashURI(ctx, spec.URI); err != nil {
		return nil, err
	}
	return s.runJob(ctx, restore.JobType, st.String(), opts, spec, o.Detached)
}

func (s *Server) runJob(ctx context.Context, typ, desc string, opts ExecOptions, spec any, detached bool) (*Result, error) {
	payload, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	reg := s.Gateway().Registry
	id, err := reg.Create(ctx, jobs.Record{Type: typ, Description: desc, User: opts.User, Payload: payload})
	if err != nil {
		return nil, fmt.Errorf("creating %s job: %w", typ, err)
	}
	if detached {
		return &Result{Columns: []string{"job_id"}, Rows: [][]string{{strconv.FormatInt(id, 10)}}, JobID: id}, nil
	}
	rec, err := reg.WaitFor(ctx, id, func(r jobs.Record) bool {
		if opts.OnProgress != nil {
			opts.OnProgress(r)
		}
		return r.State.Terminal()
	})
	if err != nil {
		return nil, fmt.Errorf("waiting for job %d: %w", id, err)
	}
	res := jobsResult([]jobs.Record{rec})
	res.JobID = id
	switch rec.State {
	case jobs.StateSucceeded:
		return res, nil
	case jobs.StatePaused:
		return res, fmt.Errorf("job %d paused", id)
	default:
		if rec.Error != "" {
			return res, fmt.Errorf("job %d %s: %s", id, rec.State, rec.Error)
		}
		return res, fmt.Errorf("job %d %s", id, rec.State)
	}
}

type jobResult struct {
	Rows  int64 `json:"rows"`
	Bytes int64 `json:"bytes"`
}

func jobsResult(recs []jobs.Record) *Result {
	res := &Result{Columns: []string{"job_id", "type", "status", "fraction_completed", "rows", "bytes", "description", "error"}}
	for _, r := range recs {
		var jr jobResult
		if len(r.Result) > 0 {
			json.Unmarshal(r.Result, &jr)
		}
		res.Rows = append(res.Rows, []string{
			strconv.FormatInt(r.ID, 10), r.Type, string(r.State), strconv.FormatFloat(r.Fraction, 'f', 2, 64),
			strconv.FormatInt(jr.Rows, 10), strconv.FormatInt(jr.Bytes, 10), r.Description, r.Error,
		})
	}
	return res
}

func (s *Server) showJobs(ctx context.Context) (*Result, error) {
	recs, err := s.Gateway().Registry.List(ctx)
	if err != nil {
		return nil, err
	}
	return jobsResult(recs), nil
}

func (s *Server) showBackups(ctx context.Context, st *sql.ShowBackups) (*Result, error) {
	store, err := s.Gateway().Env.Cloud.Open(ctx, st.URIs[0])
	if err != nil {
		return nil, err
	}
	defer store.Close()
	dirs, err := collection.ListBackups(ctx, store)
	if err != nil {
		return nil, err
	}
	res := &Result{Columns: []string{"path"}}
	for _, d := range dirs {
		res.Rows = append(res.Rows, []string{d})
	}
	return res, nil
}

func (s *Server) showBackup(ctx context.Context, st *sql.ShowBackup) (*Result, error) {
	store, err := s.Gateway().Env.Cloud.Open(ctx, st.URIs[0])
	if err != nil {
		return nil, err
	}
	defer store.Close()
	subdir, err := collection.ResolveSubdir(ctx, store, st.Subdir, st.Latest)
	if err != nil {
		return nil, fmt.Errorf("finding the backup in %s: %w", redact.URI(st.URIs[0]), err)
	}
	m, err := manifest.ReadManifest(ctx, store, subdir)
	if err != nil {
		return nil, err
	}
	dbNames := map[uint32]string{}
	for _, d := range m.Databases {
		dbNames[d.Id] = d.Name
	}
	type agg struct{ rows, bytes, size, files int64 }
	per := map[uint32]*agg{}
	for _, f := range m.Files {
		id, _, err := keys.DecodeTableID(f.Span.Key)
		if err != nil {
			continue
		}
		a := per[id]
		if a == nil {
			a = &agg{}
			per[id] = a
		}
		a.rows += f.Entries
		a.bytes += f.LogicalBytes
		a.size += f.Size
		a.files++
		if st.CheckFiles {
			info, err := store.Stat(ctx, subdir+"/"+f.Path)
			if err != nil {
				return nil, fmt.Errorf("checking backup file %s/%s: %w", subdir, f.Path, err)
			}
			if info.Size != f.Size {
				return nil, fmt.Errorf("checking backup file %s/%s: %d bytes, the manifest says %d: %w", subdir, f.Path, info.Size, f.Size, storage.ErrInvalidArgument)
			}
		}
	}
	kind := "full"
	start := ""
	if m.StartTime != nil && (m.StartTime.WallTime != 0 || m.StartTime.Logical != 0) {
		kind = "incremental"
		start = hlc.Timestamp{WallTime: m.StartTime.WallTime, Logical: m.StartTime.Logical}.GoTime().Format(time.RFC3339Nano)
	}
	end := hlc.Timestamp{WallTime: m.EndTime.WallTime, Logical: m.EndTime.Logical}
	res := &Result{Columns: []string{"database_name", "table_name", "backup_type", "start_time", "end_time", "end_ts", "rows", "logical_bytes", "size_bytes", "files", "path"}}
	for _, t := range m.Tables {
		a := per[t.Id]
		if a == nil {
			a = &agg{}
		}
		res.Rows = append(res.Rows, []string{dbNames[t.ParentId], t.Name, kind, start, end.GoTime().Format(time.RFC3339Nano), end.String(),
			strconv.FormatInt(a.rows, 10), strconv.FormatInt(a.bytes, 10), strconv.FormatInt(a.size, 10), strconv.FormatInt(a.files, 10), subdir})
	}
	return res, nil
}
