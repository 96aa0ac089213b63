// Package backup runs BACKUP jobs: the coordinator's resolution (probe the
// destination, choose the layer's directory, split spans at range
// boundaries, plan which node exports what from which replica), the
// per-node export processors, checkpoints, and the metadata that makes a
// layer restorable.
package backup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairnbackup/cairn/core/cluster"
	"github.com/cairnbackup/cairn/core/collection"
	"github.com/cairnbackup/cairn/core/hlc"
	"github.com/cairnbackup/cairn/core/jobs"
	"github.com/cairnbackup/cairn/core/keys"
	"github.com/cairnbackup/cairn/core/manifest"
	"github.com/cairnbackup/cairn/core/manifest/manifestpb"
	"github.com/cairnbackup/cairn/core/processorpb"
	"github.com/cairnbackup/cairn/core/spans"
	"github.com/cairnbackup/cairn/sdk/locality"
	"github.com/cairnbackup/cairn/sdk/storage"
)

// JobType names backup jobs in the job system.
const JobType = "BACKUP"

// Spec is a backup job's payload: everything decided when the statement
// was accepted.
type Spec struct {
	// URI is the collection, redacted when it holds credentials: the real
	// URI is then a job secret (cluster.Meta.PutSecret) named by URISecret,
	// so the job record never carries a credential.
	URI       string `json:"uri"`
	URISecret string `json:"uri_secret,omitempty"`
	// Subdir is an explicit layer directory; empty chooses one from EndTime.
	Subdir    string                 `json:"subdir,omitempty"`
	EndTime   hlc.Timestamp          `json:"end_time"`
	Databases []cluster.DatabaseDesc `json:"databases"`
	Tables    []cluster.TableDesc    `json:"tables"`
	// FullCluster is set when no targets were named.
	FullCluster     bool          `json:"full_cluster,omitempty"`
	RevisionHistory bool          `json:"revision_history,omitempty"`
	CheckpointEvery time.Duration `json:"checkpoint_every,omitempty"`
	TargetFileSize  int64         `json:"target_file_size,omitempty"`
}

// Assignment is the part of the plan one node executes.
type Assignment struct {
	Node  int32         `json:"node"`
	Spans []PlannedSpan `json:"spans"`
}

// PlannedSpan is one span of the plan: which replica the executing node
// reads it from.
type PlannedSpan struct {
	Index    int        `json:"index"`
	Span     spans.Span `json:"span"`
	ReadFrom int32      `json:"read_from"`
}

// Progress is the job's resumer-owned state. The resolved plan is written
// once; a resumed job never re-decides it.
type Progress struct {
	Resolved   bool         `json:"resolved"`
	Subdir     string       `json:"subdir"`
	BackupID   string       `json:"backup_id"`
	Plan       []Assignment `json:"plan"`
	TotalSpans int          `json:"total_spans"`
	DoneSpans  int          `json:"done_spans"`
}

// Result is what a finished backup reports.
type Result struct {
	Subdir string `json:"subdir"`
	Rows   int64  `json:"rows"`
	Bytes  int64  `json:"bytes"`
	Files  int    `json:"files"`
}

// Resumer runs one backup job on a coordinator node.
type Resumer struct {
	env *Env
	rec jobs.Record
}

// NewResumer returns the job system's constructor for backups on env's node.
func NewResumer(env *Env) jobs.Constructor {
	return func(rec jobs.Record) (jobs.Resumer, error) { return &Resumer{env: env, rec: rec}, nil }
}

func decode(rec jobs.Record) (Spec, Progress, error) {
	var spec Spec
	var prog Progress
	err := rec.Decode(&spec, &prog)
	return spec, prog, err
}

// TargetSpans returns the spans of the spec's tables, merged.
func (s Spec) TargetSpans() []spans.Span {
	var out []spans.Span
	for _, t := range s.Tables {
		out = append(out, keys.TableSpan(t.ID))
	}
	return spans.Merge(out)
}

// Resume runs or continues the backup.
func (r *Resumer) Resume(ctx context.Context, job *jobs.Job) error {
	spec, prog, err := decode(job.Record())
	if err != nil {
		return err
	}
	env := r.env
	if spec.URI, err = env.SecretURI(ctx, spec.URI, spec.URISecret); err != nil {
		return err
	}
	log := env.Logger.With("job_id", job.ID())
	store, err := env.Cloud.Open(ctx, spec.URI)
	if err != nil {
		return jobs.MarkPermanent(fmt.Errorf("opening destination: %w", err))
	}
	defer store.Close()

	if !prog.Resolved {
		prog, err = r.resolve(ctx, job, spec, store)
		if err != nil {
			return err
		}
		if err := job.SetProgress(ctx, 0, prog); err != nil {
			return err
		}
		log.Info("backup resolved", "subdir", prog.Subdir, "spans", prog.TotalSpans)
	} else {
		// A previous run may have written the manifest and stopped before
		// LATEST: finish from there.
		if m, err := manifest.ReadManifest(ctx, store, prog.Subdir); err == nil && m.BackupId == prog.BackupID {
			return r.publish(ctx, job, store, prog, m)
		}
		if err := collection.AcquireLock(ctx, store, prog.Subdir, job.ID()); err != nil {
			return classify(fmt.Errorf("re-acquiring the backup lock: %w", err))
		}
	}
	// Keep GC away from what the backup reads until it ends: before any
	// replica is read, on every run (idempotent; it also covers a record
	// lost between runs). Full backups only so far: the start time is zero.
	if err := r.protect(ctx, job, spec, hlc.Timestamp{}); err != nil {
		return fmt.Errorf("protecting timestamp %s: %w", spec.EndTime, err)
	}
	// Everything at or below the end time must be complete on every replica
	// before any replica is read; closing it is idempotent.
	if err := env.Node.CloseOn(ctx, planLeaseholders(ctx, env, spec), spec.EndTime); err != nil {
		return jobs.MarkRetryable(fmt.Errorf("closing timestamp %s: %w", spec.EndTime, err))
	}

	// What a previous run finished, from the newest checkpoint.
	done := map[int][]*manifestpb.File{}
	var allFiles []*manifestpb.File
	cp, ok, err := manifest.ReadLatestCheckpoint(ctx, store, prog.Subdir)
	if err != nil {
		return classify(fmt.Errorf("reading checkpoint: %w", err))
	}
	index := map[string]int{}
	for _, a := range prog.Plan {
		for _, ps := range a.Spans {
			index[string(ps.Span.Key)+"\x00"+string(ps.Span.EndKey)] = ps.Index
		}
	}
	if ok {
		for _, s := range cp.CompletedSpans {
			if i, found := index[string(s.Key)+"\x00"+string(s.EndKey)]; found {
				done[i] = nil
			}
		}
		for _, f := range cp.Files {
			allFiles = append(allFiles, f)
		}
		log.Info("resuming from checkpoint", "done_spans", len(done), "files", len(allFiles))
	}

	// Spans planned on nodes that died since are planned again on live
	// ones; the rest of the plan stands.
	if changed, err := replanDead(ctx, env, &prog, done); err != nil {
		return err
	} else if changed {
		if err := job.SetProgress(ctx, job.Record().Fraction, prog); err != nil {
			return err
		}
	}

	cpState := &checkpointer{store: store, dir: prog.Subdir, spec: spec, prog: prog, job: job, done: done, files: allFiles, every: spec.CheckpointEvery}
	if cpState.every <= 0 {
		cpState.every = 5 * time.Second
	}
	runErr := r.runProcessors(ctx, spec, prog, cpState)
	// Save what finished even when the run stops (pause, failure), so the
	// next run starts from there.
	saveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := cpState.write(saveCtx, true); err != nil && runErr == nil {
		runErr = err
	}
	if runErr != nil {
		return runErr
	}
	if k := env.Knobs.BeforeFinish; k != nil {
		if err := k(ctx, job.ID()); err != nil {
			return err
		}
	}
	return r.finish(ctx, job, spec, prog, store, cpState)
}

func classify(err error) error {
	if errors.Is(err, collection.ErrLocked) || errors.Is(err, storage.ErrAlreadyExists) ||
		errors.Is(err, storage.ErrInvalidArgument) || errors.Is(err, storage.ErrPermissionDenied) {
		return jobs.MarkPermanent(err)
	}
	if storage.IsRetryable(err) {
		return jobs.MarkRetryable(err)
	}
	return err
}

func (r *Resumer) resolve(ctx context.Context, job *jobs.Job, spec Spec, store storage.Store) (Progress, error) {
	env := r.env
	// Probe the destination: write, read back, delete.
	probe := fmt.Sprintf("probe/%d-%d", job.ID(), env.Node.ID)
	payload := []byte("cairn destination probe")
	if err := storage.WriteAll(ctx, store, probe, payload, storage.WriteOptions{}); err != nil {
		return Progress{}, classify(fmt.Errorf("probing destination (write): %w", err))
	}
	if got, err := storage.ReadAll(ctx, store, probe); err != nil || string(got) != string(payload) {
		if err == nil {
			err = errors.New("read back different bytes")
		}
		return Progress{}, classify(fmt.Errorf("probing destination (read): %w", err))
	}
	if err := store.Delete(ctx, probe); err != nil {
		return Progress{}, classify(fmt.Errorf("probing destination (delete): %w", err))
	}

	subdir := spec.Subdir
	if subdir == "" {
		subdir = collection.SubdirFor(spec.EndTime.GoTime())
	}
	if err := collection.AcquireLock(ctx, store, subdir, job.ID()); err != nil {
		return Progress{}, classify(fmt.Errorf("locking %s: %w", subdir, err))
	}

	// Split the target spans at range boundaries; the execution policy
	// decides which node exports each piece, reading which replica.
	var pieces []piece
	for _, ts := range spec.TargetSpans() {
		rds, err := env.Node.Ranges(ctx, ts)
		if err != nil {
			return Progress{}, jobs.MarkRetryable(err)
		}
		for _, rd := range rds {
			if p, ok := rd.Span().Intersect(ts); ok {
				pieces = append(pieces, piece{index: len(pieces), span: p, rd: rd})
			}
		}
	}
	plan, err := planPieces(ctx, env, locality.Locality{}, pieces)
	if err != nil {
		return Progress{}, err
	}
	idx := len(pieces)
	id := make([]byte, 16)
	rand.Read(id)
	return Progress{Resolved: true, Subdir: subdir, BackupID: hex.EncodeToString(id), Plan: plan, TotalSpans: idx}, nil
}

func planLeaseholders(ctx context.Context, env *Env, spec Spec) []int32 {
	seen := map[int32]bool{}
	var out []int32
	for _, ts := range spec.TargetSpans() {
		rds, err := env.Node.Ranges(ctx, ts)
		if err != nil {
			continue
		}
		for _, rd := range rds {
			if !seen[rd.Leaseholder] {
				seen[rd.Leaseholder] = true
				out = append(out, rd.Leaseholder)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// checkpointer aggregates processor progress and writes checkpoints.
type checkpointer struct {
	// writeMu orders whole checkpoint writes, so a newer checkpoint is never
	// overtaken by an older snapshot.
	writeMu sync.Mutex
	mu      sync.Mutex
	store   storage.Store
	dir     string
	spec    Spec
	prog    Progress
	job     *jobs.Job
	done    map[int][]*manifestpb.File
	files   []*manifestpb.File
	every   time.Duration
	last    time.Time
	dirty   bool
}

func (c *checkpointer) add(ctx context.Context, p *processorpb.BackupProgress) error {
	c.mu.Lock()
	if _, ok := c.done[int(p.SpanIndex)]; ok {
		c.mu.Unlock()
		return nil
	}
	c.done[int(p.SpanIndex)] = nil
	for _, f := range p.Files {
		c.files = append(c.files, &manifestpb.File{
			Span: &manifestpb.Span{Key: f.Span.Key, EndKey: f.Span.EndKey}, Path: f.Path, Entries: f.Entries,
			LogicalBytes: f.LogicalBytes, Size: f.Size, Sha256: f.Sha256, Locality: f.Locality, NodeId: uint32(f.NodeId),
		})
	}
	c.dirty = true
	due := time.Since(c.last) >= c.every
	c.mu.Unlock()
	if due {
		return c.write(ctx, false)
	}
	return nil
}

// write stores a checkpoint and the job's fraction when there is news (or
// always when force is set and anything changed).
func (c *checkpointer) write(ctx context.Context, force bool) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	c.mu.Lock()
	if !c.dirty {
		c.mu.Unlock()
		return nil
	}
	m := &manifestpb.BackupManifest{
		BackupId: c.prog.BackupID, FormatVersion: manifest.FormatVersion, JobId: c.job.ID(),
		EndTime: &manifestpb.Timestamp{WallTime: c.spec.EndTime.WallTime, Logical: c.spec.EndTime.Logical},
		Dir:     c.dir, IsCheckpoint: true, CreatedAt: time.Now().UnixNano(),
		Files: append([]*manifestpb.File(nil), c.files...),
	}
	for _, a := range c.prog.Plan {
		for _, ps := range a.Spans {
			if _, ok := c.done[ps.Index]; ok {
				m.CompletedSpans = append(m.CompletedSpans, &manifestpb.Span{Key: ps.Span.Key, EndKey: ps.Span.EndKey})
			}
		}
	}
	if c.spec.RevisionHistory {
		m.MvccFilter = manifestpb.MVCCFilter_ALL
	}
	nDone := len(c.done)
	c.dirty = false
	c.last = time.Now()
	c.mu.Unlock()
	if err := manifest.WriteCheckpoint(ctx, c.store, c.dir, m, time.Now()); err != nil {
		return classify(fmt.Errorf("writing checkpoint: %w", err))
	}
	prog := c.prog
	prog.DoneSpans = nDone
	frac := 0.0
	if prog.TotalSpans > 0 {
		frac = float64(nDone) / float64(prog.TotalSpans)
	}
	// The manifest is still to be written: stop just short of 1.
	return c.job.SetProgress(ctx, frac*0.99, prog)
}

func (r *Resumer) runProcessors(ctx context.Context, spec Spec, prog Progress, cp *checkpointer) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for _, a := range prog.Plan {
		var todo []*processorpb.PlannedSpan
		for _, ps := range a.Spans {
			if _, ok := cp.done[ps.Index]; ok {
				continue
			}
			todo = append(todo, &processorpb.PlannedSpan{Index: int32(ps.Index), Span: cluster.SpanToPB(ps.Span), ReadFrom: ps.ReadFrom})
		}
		if len(todo) == 0 {
			continue
		}
		wg.Add(1)
		go func(node int32, todo []*processorpb.PlannedSpan) {
			defer wg.Done()
			if err := r.runOne(ctx, node, spec, prog, todo, cp); err != nil {
				cancel(err)
			}
		}(a.Node, todo)
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

func (r *Resumer) runOne(ctx context.Context, node int32, spec Spec, prog Progress, todo []*processorpb.PlannedSpan, cp *checkpointer) error {
	conn, err := r.env.Node.Conn(ctx, node)
	if err != nil {
		return jobs.MarkRetryable(err)
	}
	tfs := spec.TargetFileSize
	if tfs <= 0 {
		tfs = 64 << 20
	}
	var start hlc.Timestamp
	stream, err := processorpb.NewBackupProcessorClient(conn).Run(ctx, &processorpb.BackupSpec{
		JobId: r.rec.ID, Uri: spec.URI, Dir: prog.Subdir, Spans: todo,
		StartTime: cluster.TSToPB(start), EndTime: cluster.TSToPB(spec.EndTime),
		AllRevisions: spec.RevisionHistory, TargetFileSize: tfs,
	})
	if err != nil {
		return jobs.MarkRetryable(fmt.Errorf("starting backup processor on node %d: %w", node, err))
	}
	for {
		p, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			err = fmt.Errorf("backup processor on node %d: %w", node, err)
			// A processor whose node went away (or that timed out) is
			// retried: the next run re-plans a dead node's spans.
			switch status.Code(errors.Unwrap(err)) {
			case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted, codes.Canceled:
				return jobs.MarkRetryable(err)
			}
			return err
		}
		if err := cp.add(ctx, p); err != nil {
			return err
		}
	}
}

func (r *Resumer) finish(ctx context.Context, job *jobs.Job, spec Spec, prog Progress, store storage.Store, cp *checkpointer) error {
	if len(cp.done) != prog.TotalSpans {
		return fmt.Errorf("finishing backup: %d of %d spans exported", len(cp.done), prog.TotalSpans)
	}
	files := append([]*manifestpb.File(nil), cp.files...)
	sort.Slice(files, func(i, j int) bool { return string(files[i].Span.Key) < string(files[j].Span.Key) })
	m := &manifestpb.BackupManifest{
		BackupId: prog.BackupID, FormatVersion: manifest.FormatVersion, JobId: job.ID(),
		EndTime: &manifestpb.Timestamp{WallTime: spec.EndTime.WallTime, Logical: spec.EndTime.Logical},
		Dir:     prog.Subdir, CreatedAt: time.Now().UnixNano(), Files: files,
		EntryCounts: &manifestpb.EntryCounts{},
	}
	if spec.RevisionHistory {
		m.MvccFilter = manifestpb.MVCCFilter_ALL
	}
	// Spans are recorded split at the source's range boundaries, so a
	// restore can re-create the same splits.
	for _, a := range prog.Plan {
		for _, ps := range a.Spans {
			m.Spans = append(m.Spans, &manifestpb.Span{Key: ps.Span.Key, EndKey: ps.Span.EndKey})
		}
	}
	sort.Slice(m.Spans, func(i, j int) bool { return string(m.Spans[i].Key) < string(m.Spans[j].Key) })
	m.IntroducedSpans = m.Spans
	for _, d := range spec.Databases {
		m.Databases = append(m.Databases, &manifestpb.DatabaseDescriptor{Id: d.ID, Name: d.Name})
	}
	for _, t := range spec.Tables {
		td := &manifestpb.TableDescriptor{Id: t.ID, ParentId: t.ParentID, Name: t.Name, PrimaryKey: t.PrimaryKey}
		for _, c := range t.Columns {
			td.Columns = append(td.Columns, &manifestpb.Column{Name: c.Name, Type: c.Type})
		}
		m.Tables = append(m.Tables, td)
	}
	var res Result
	for _, f := range files {
		m.EntryCounts.Entries += f.Entries
		m.EntryCounts.LogicalBytes += f.LogicalBytes
	}
	_ = res
	if err := manifest.WriteManifest(ctx, store, prog.Subdir, m); err != nil {
		return classify(fmt.Errorf("writing manifest: %w", err))
	}
	return r.publish(ctx, job, store, prog, m)
}

// publish points LATEST at the finished layer, releases the lock and the
// protected timestamp, and records the result. It is idempotent, for a job resumed after its
// manifest was written.
func (r *Resumer) publish(ctx context.Context, job *jobs.Job, store storage.Store, prog Progress, m *manifestpb.BackupManifest) error {
	res := Result{Subdir: prog.Subdir, Files: len(m.Files)}
	if m.EntryCounts != nil {
		res.Rows, res.Bytes = m.EntryCounts.Entries, m.EntryCounts.LogicalBytes
	}
	if err := collection.WriteLatest(ctx, store, prog.Subdir, time.Now()); err != nil {
		return classify(fmt.Errorf("writing LATEST: %w", err))
	}
	if spec, _, err := decode(job.Record()); err == nil {
		defer r.env.Node.Meta.DeleteSecret(context.WithoutCancel(ctx), spec.URISecret)
	}
	if err := collection.ReleaseLock(ctx, store, prog.Subdir, job.ID()); err != nil {
		r.env.Logger.Warn("releasing backup lock", "job_id", job.ID(), "err", err)
	}
	if err := r.release(ctx, job); err != nil {
		return fmt.Errorf("releasing protected timestamp: %w", err)
	}
	return job.SetResult(ctx, res)
}

// OnFailOrCancel releases the protected timestamp and the lock and
// removes the unfinished layer's files, so a cancelled or failed backup
// leaves nothing that looks like a backup and holds no GC back. A layer
// that already has its manifest is never touched.
func (r *Resumer) OnFailOrCancel(ctx context.Context, job *jobs.Job, cause error) error {
	// First, and whatever else fails: a leaked record would keep GC from
	// the backup's spans forever.
	if err := r.release(ctx, job); err != nil {
		return fmt.Errorf("releasing protected timestamp: %w", err)
	}
	spec, prog, err := decode(job.Record())
	if err != nil {
		return nil
	}
	// The job ends here: its credentials go with it.
	defer r.env.Node.Meta.DeleteSecret(context.WithoutCancel(ctx), spec.URISecret)
	if !prog.Resolved {
		return nil
	}
	if spec.URI, err = r.env.SecretURI(ctx, spec.URI, spec.URISecret); err != nil {
		return err
	}
	store, err := r.env.Cloud.Open(ctx, spec.URI)
	if err != nil {
		return err
	}
	defer store.Close()
	if _, err := store.Stat(ctx, prog.Subdir+"/"+manifest.ManifestName); err == nil {
		return nil
	}
	var names []string
	err = store.List(ctx, storage.ListOptions{Prefix: prog.Subdir + "/"}, func(o storage.ObjectInfo) error {
		if !o.IsPrefix {
			names = append(names, o.Name)
		}
		return nil
	})
	if err != nil {
		return err
	}
	lock := fmt.Sprintf("%s/BACKUP-LOCK-%d", prog.Subdir, job.ID())
	for _, n := range names {
		if n == lock {
			continue
		}
		if len(n) > len(prog.Subdir)+len("/BACKUP-LOCK-") && n[:len(prog.Subdir)+len("/BACKUP-LOCK-")] == prog.Subdir+"/BACKUP-LOCK-" {
			continue // another job's lock
		}
		if err := store.Delete(ctx, n); err != nil {
			return err
		}
	}
	return collection.ReleaseLock(ctx, store, prog.Subdir, job.ID())
}
