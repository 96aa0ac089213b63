// Package restore runs RESTORE jobs: it reads a layer's manifest, creates
// the target database under new ids (offline until the data is in),
// re-creates the source's range splits, and has processors on the nodes
// read each backup file (verifying its checksum), rewrite its keys to the
// new table ids, and ingest it into every replica with Pebble's ingest.
package restore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairnbackup/cairn/core/backup"
	"github.com/cairnbackup/cairn/core/cluster"
	"github.com/cairnbackup/cairn/core/collection"
	"github.com/cairnbackup/cairn/core/hlc"
	"github.com/cairnbackup/cairn/core/jobs"
	"github.com/cairnbackup/cairn/core/keys"
	"github.com/cairnbackup/cairn/core/manifest"
	"github.com/cairnbackup/cairn/core/manifest/manifestpb"
	"github.com/cairnbackup/cairn/core/mvcc"
	"github.com/cairnbackup/cairn/core/processorpb"
	"github.com/cairnbackup/cairn/core/spans"
	"github.com/cairnbackup/cairn/sdk/storage"
)

// JobType names restore jobs.
const JobType = "RESTORE"

// Spec is a restore job's payload.
type Spec struct {
	// URI is redacted when it holds credentials; URISecret then names the
	// job secret holding the real one (see backup.Env.StashURI).
	URI       string `json:"uri"`
	URISecret string `json:"uri_secret,omitempty"`
	Subdir    string `json:"subdir"`
	// Database is the backed-up database to restore; NewName its name
	// after the restore (Database when empty).
	Database string `json:"database"`
	NewName  string `json:"new_name,omitempty"`
}

// Progress is the restore's resumer-owned state.
type Progress struct {
	Resolved bool              `json:"resolved"`
	Subdir   string            `json:"subdir"`
	DBName   string            `json:"db_name"`
	Rewrites map[uint32]uint32 `json:"rewrites"`
	// Plan maps a node to the indexes (into the manifest's files) it
	// ingests.
	Plan  map[int32][]int `json:"plan"`
	Total int             `json:"total"`
	Done  []int           `json:"done"`
}

// Result is what a finished restore reports.
type Result struct {
	Database string `json:"database"`
	Rows     int64  `json:"rows"`
	Bytes    int64  `json:"bytes"`
}

// Resumer runs one restore job.
type Resumer struct {
	env *backup.Env
	rec jobs.Record
}

// NewResumer returns the job system's constructor for restores on env's node.
func NewResumer(env *backup.Env) jobs.Constructor {
	return func(rec jobs.Record) (jobs.Resumer, error) { return &Resumer{env: env, rec: rec}, nil }
}

func decode(rec jobs.Record) (Spec, Progress, error) {
	var spec Spec
	var prog Progress
	err := rec.Decode(&spec, &prog)
	return spec, prog, err
}

func permanent(err error) error {
	if storage.IsRetryable(err) {
		return jobs.MarkRetryable(err)
	}
	return jobs.MarkPermanent(err)
}

// LoadManifest opens the collection, resolves subdir and reads the layer's
// manifest, with errors that name the file at fault.
func LoadManifest(ctx context.Context, env *backup.Env, uri, subdir string) (*manifestpb.BackupManifest, error) {
	store, err := env.Cloud.Open(ctx, uri)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	m, err := manifest.ReadManifest(ctx, store, subdir)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// Resume runs or continues the restore.
func (r *Resumer) Resume(ctx context.Context, job *jobs.Job) error {
	spec, prog, err := decode(job.Record())
	if err != nil {
		return err
	}
	if spec.URI, err = r.env.SecretURI(ctx, spec.URI, spec.URISecret); err != nil {
		return err
	}
	m, err := LoadManifest(ctx, r.env, spec.URI, spec.Subdir)
	if err != nil {
		return permanent(fmt.Errorf("restoring from %s: %w", spec.Subdir, err))
	}
	if !prog.Resolved {
		prog, err = r.resolve(ctx, spec, m)
		if err != nil {
			return err
		}
		if err := job.SetProgress(ctx, 0, prog); err != nil {
			return err
		}
	}
	if err := r.ingest(ctx, job, spec, m, &prog); err != nil {
		return err
	}
	if err := r.env.Node.Meta.SetDatabaseState(ctx, prog.DBName, cluster.StatePublic); err != nil {
		return jobs.MarkRetryable(err)
	}
	var res Result
	res.Database = prog.DBName
	for _, f := range m.Files {
		if _, ok := prog.Rewrites[tableOf(f.Span.Key)]; ok {
			res.Rows += f.Entries
			res.Bytes += f.LogicalBytes
		}
	}
	if err := job.SetResult(ctx, res); err != nil {
		return err
	}
	return r.env.Node.Meta.DeleteSecret(ctx, spec.URISecret)
}

func tableOf(key []byte) uint32 {
	id, _, err := keys.DecodeTableID(key)
	if err != nil {
		return 0
	}
	return id
}

func (r *Resumer) resolve(ctx context.Context, spec Spec, m *manifestpb.BackupManifest) (Progress, error) {
	env := r.env
	var db *manifestpb.DatabaseDescriptor
	for _, d := range m.Databases {
		if d.Name == spec.Database {
			db = d
		}
	}
	if db == nil {
		return Progress{}, jobs.MarkPermanent(fmt.Errorf("database %q is not in the backup %s", spec.Database, spec.Subdir))
	}
	newName := spec.NewName
	if newName == "" {
		newName = spec.Database
	}
	// Every file must be there before anything is created.
	store, err := env.Cloud.Open(ctx, spec.URI)
	if err != nil {
		return Progress{}, permanent(err)
	}
	defer store.Close()
	for _, f := range m.Files {
		if tableParent(m, tableOf(f.Span.Key)) != db.Id {
			continue
		}
		info, err := store.Stat(ctx, m.Dir+"/"+f.Path)
		if err != nil {
			return Progress{}, permanent(fmt.Errorf("restoring: backup file %s/%s: %w", m.Dir, f.Path, err))
		}
		if info.Size != f.Size {
			return Progress{}, jobs.MarkPermanent(fmt.Errorf("restoring: backup file %s/%s has %d bytes, the manifest says %d: %w", m.Dir, f.Path, info.Size, f.Size, manifest.ErrCorrupt))
		}
	}

	newDB, err := env.Node.Meta.CreateDatabase(ctx, newName, cluster.StateAdding)
	if err != nil {
		return Progress{}, jobs.MarkPermanent(fmt.Errorf("creating database %q: %w", newName, err))
	}
	// Split keys come from the backup's spans, which were split at the
	// source's range boundaries.
	var tables []cluster.TableDesc
	var olds []uint32
	for _, t := range m.Tables {
		if t.ParentId != db.Id {
			continue
		}
		td := cluster.TableDesc{Name: t.Name, PrimaryKey: t.PrimaryKey, State: cluster.StateAdding}
		for _, c := range t.Columns {
			td.Columns = append(td.Columns, cluster.Column{Name: c.Name, Type: c.Type})
		}
		prefix := keys.TablePrefix(t.Id)
		for _, s := range m.Spans {
			if bytes.HasPrefix(s.Key, prefix) && len(s.Key) > len(prefix) {
				td.SplitKeys = append(td.SplitKeys, append([]byte(nil), s.Key[len(prefix):]...))
			}
		}
		tables = append(tables, td)
		olds = append(olds, t.Id)
	}
	place, err := cluster.PlacementFor(ctx, env.Node.Meta, Placer, cluster.DefaultRegions[0])
	if err != nil {
		return Progress{}, jobs.MarkRetryable(err)
	}
	created, err := env.Node.Meta.CreateTables(ctx, newDB, tables, place)
	if err != nil {
		return Progress{}, jobs.MarkRetryable(err)
	}
	env.Node.InvalidateRanges()
	rewrites := map[uint32]uint32{}
	for i, t := range created {
		rewrites[olds[i]] = t.ID
	}
	// Each file is ingested by the leaseholder of the range its rewritten
	// start key falls in.
	plan := map[int32][]int{}
	total := 0
	for i, f := range m.Files {
		newID, ok := rewrites[tableOf(f.Span.Key)]
		if !ok {
			continue
		}
		k, err := keys.RewriteTableID(nil, f.Span.Key, newID)
		if err != nil {
			return Progress{}, jobs.MarkPermanent(err)
		}
		rds, err := env.Node.Ranges(ctx, spansOf(k))
		if err != nil || len(rds) == 0 {
			return Progress{}, jobs.MarkRetryable(fmt.Errorf("finding the range of %s: %v", keys.Pretty(k), err))
		}
		plan[rds[0].Leaseholder] = append(plan[rds[0].Leaseholder], i)
		total++
	}
	return Progress{Resolved: true, Subdir: spec.Subdir, DBName: newName, Rewrites: rewrites, Plan: plan, Total: total}, nil
}

// Placer, when set, places restored ranges by key (the demo sets it to
// the movr workload's city→region mapping).
var Placer func(key []byte) (string, bool)

func tableParent(m *manifestpb.BackupManifest, id uint32) uint32 {
	for _, t := range m.Tables {
		if t.Id == id {
			return t.ParentId
		}
	}
	return 0
}

func (r *Resumer) ingest(ctx context.Context, job *jobs.Job, spec Spec, m *manifestpb.BackupManifest, prog *Progress) error {
	done := map[int]bool{}
	for _, i := range prog.Done {
		done[i] = true
	}
	var rewrites []*processorpb.TableRewrite
	for o, n := range prog.Rewrites {
		rewrites = append(rewrites, &processorpb.TableRewrite{OldId: o, NewId: n})
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var mu sync.Mutex
	var wg sync.WaitGroup
	nodes := make([]int32, 0, len(prog.Plan))
	for n := range prog.Plan {
		nodes = append(nodes, n)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i] < nodes[j] })
	for _, node := range nodes {
		var files []*processorpb.RestoreFile
		for _, i := range prog.Plan[node] {
			if done[i] {
				continue
			}
			f := m.Files[i]
			files = append(files, &processorpb.RestoreFile{Index: int32(i), Path: m.Dir + "/" + f.Path, Size: f.Size, Sha256: f.Sha256, Uri: spec.URI})
		}
		if len(files) == 0 {
			continue
		}
		wg.Add(1)
		go func(node int32) {
			defer wg.Done()
			conn, err := r.env.Node.Conn(ctx, node)
			if err != nil {
				cancel(jobs.MarkRetryable(err))
				return
			}
			stream, err := processorpb.NewRestoreProcessorClient(conn).Run(ctx, &processorpb.RestoreSpec{JobId: job.ID(), Files: files, Rewrites: rewrites})
			if err != nil {
				cancel(jobs.MarkRetryable(err))
				return
			}
			for {
				p, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					return
				}
				if err != nil {
					err = fmt.Errorf("restore processor on node %d: %w", node, err)
					// A node that went away (or a replica it ingests into)
					// is worth another try; the rest is final.
					switch status.Code(errors.Unwrap(err)) {
					case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted:
						cancel(jobs.MarkRetryable(err))
					default:
						cancel(jobs.MarkPermanent(err))
					}
					return
				}
				mu.Lock()
				prog.Done = append(prog.Done, int(p.FileIndex))
				snapshot := *prog
				snapshot.Done = append([]int(nil), prog.Done...)
				mu.Unlock()
				frac := float64(len(snapshot.Done)) / float64(max(1, snapshot.Total))
				if err := job.SetProgress(ctx, frac*0.99, snapshot); err != nil {
					cancel(err)
					return
				}
			}
		}(node)
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// OnFailOrCancel drops the half-restored database and clears its data.
func (r *Resumer) OnFailOrCancel(ctx context.Context, job *jobs.Job, cause error) error {
	spec, prog, err := decode(job.Record())
	if err != nil {
		return nil
	}
	defer r.env.Node.Meta.DeleteSecret(context.WithoutCancel(ctx), spec.URISecret)
	if !prog.Resolved {
		return nil
	}
	db, err := r.env.Node.Meta.Database(ctx, prog.DBName)
	if err != nil {
		if errors.Is(err, cluster.ErrNotFound) {
			return nil
		}
		return err
	}
	if db.State != cluster.StateAdding {
		return nil
	}
	tables, ranges, err := r.env.Node.Meta.DropDatabase(ctx, prog.DBName)
	if err != nil {
		return err
	}
	_ = tables
	for _, rd := range ranges {
		if err := r.env.Node.ClearSpanOn(ctx, rd.Replicas, rd.Span()); err != nil {
			return err
		}
	}
	r.env.Node.InvalidateRanges()
	return nil
}

// RegisterProcessor serves the restore processor on s.
func RegisterProcessor(s *grpc.Server, env *backup.Env) {
	processorpb.RegisterRestoreProcessorServer(s, &processor{env: env})
}

type processor struct {
	processorpb.UnimplementedRestoreProcessorServer
	env *backup.Env
}

// Run restores each file of spec: it copies the file to local scratch
// space while hashing it, refuses it when the checksum differs from the
// manifest's, rewrites its keys into one sstable per destination range and
// ingests each into every replica of that range.
func (p *processor) Run(spec *processorpb.RestoreSpec, stream processorpb.RestoreProcessor_RunServer) error {
	ctx := stream.Context()
	rewrites := map[uint32]uint32{}
	for _, rw := range spec.Rewrites {
		rewrites[rw.OldId] = rw.NewId
	}
	stores := map[string]storage.Store{}
	defer func() {
		for _, s := range stores {
			s.Close()
		}
	}()
	for _, f := range spec.Files {
		store, ok := stores[f.Uri]
		if !ok {
			var err error
			store, err = p.env.Cloud.Open(ctx, f.Uri)
			if err != nil {
				return err
			}
			stores[f.Uri] = store
		}
		if k := p.env.Knobs.BeforeRestoreFile; k != nil {
			if err := k(ctx, spec.JobId, int(f.Index)); err != nil {
				return err
			}
		}
		entries, logical, err := p.restoreFile(ctx, store, f, rewrites)
		if err != nil {
			return err
		}
		if err := stream.Send(&processorpb.RestoreProgress{FileIndex: f.Index, Entries: entries, LogicalBytes: logical}); err != nil {
			return err
		}
	}
	return nil
}

func (p *processor) restoreFile(ctx context.Context, store storage.Store, f *processorpb.RestoreFile, rewrites map[uint32]uint32) (int64, int64, error) {
	node := p.env.Node
	src, err := os.CreateTemp(node.AuxDir(), "restore-src-*.sst")
	if err != nil {
		return 0, 0, err
	}
	defer os.Remove(src.Name())
	defer src.Close()
	rc, err := store.Read(ctx, f.Path, 0, -1)
	if err != nil {
		return 0, 0, fmt.Errorf("reading backup file %s: %w", f.Path, err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(src, h), rc)
	rc.Close()
	if err != nil {
		return 0, 0, fmt.Errorf("reading backup file %s: %w", f.Path, err)
	}
	if n != f.Size || !bytes.Equal(h.Sum(nil), f.Sha256) {
		return 0, 0, fmt.Errorf("reading backup file %s: checksum mismatch (%d bytes read, %d expected): %w", f.Path, n, f.Size, manifest.ErrCorrupt)
	}
	// Rewrite into one output sstable per destination range.
	type out struct {
		rd   cluster.RangeDesc
		file *os.File
		w    *mvcc.SSTWriter
	}
	var cur *out
	var outs []*out
	defer func() {
		for _, o := range outs {
			o.file.Close()
			os.Remove(o.file.Name())
		}
	}()
	var entries, logical int64
	var buf []byte
	err = mvcc.IterateSST(ctx, src, n, func(userKey []byte, ts hlc.Timestamp, raw []byte) error {
		id, _, err := keys.DecodeTableID(userKey)
		if err != nil {
			return err
		}
		newID, ok := rewrites[id]
		if !ok {
			return nil
		}
		buf, err = keys.RewriteTableID(buf[:0], userKey, newID)
		if err != nil {
			return err
		}
		if cur == nil || !cur.rd.Span().ContainsKey(buf) {
			rds, err := node.Ranges(ctx, spansOf(buf))
			if err != nil || len(rds) == 0 {
				return fmt.Errorf("finding the range of %s: %v", keys.Pretty(buf), err)
			}
			if cur != nil {
				if err := cur.w.Close(); err != nil {
					return err
				}
			}
			tmp, err := os.CreateTemp(node.AuxDir(), "restore-out-*.sst")
			if err != nil {
				return err
			}
			cur = &out{rd: rds[0], file: tmp, w: mvcc.NewSSTWriter(tmp)}
			outs = append(outs, cur)
		}
		entries++
		logical += int64(len(userKey) + len(raw))
		return cur.w.Add(buf, ts, raw)
	})
	if err != nil {
		if cur != nil {
			cur.w.Abort()
		}
		return 0, 0, fmt.Errorf("restoring backup file %s: %w", f.Path, err)
	}
	if cur != nil {
		if err := cur.w.Close(); err != nil {
			return 0, 0, err
		}
	}
	for _, o := range outs {
		for _, rep := range o.rd.Replicas {
			if _, err := o.file.Seek(0, io.SeekStart); err != nil {
				return 0, 0, err
			}
			if err := node.IngestTo(ctx, rep, o.rd.RangeID, o.file); err != nil {
				// A replica on a dead node is left behind, as writes do;
				// every live replica must have the data.
				if live, lerr := node.Meta.LiveNodes(ctx); lerr == nil && !live[rep] {
					continue
				}
				return 0, 0, fmt.Errorf("ingesting %s into node %d: %w", f.Path, rep, err)
			}
		}
	}
	return entries, logical, nil
}

var _ = collection.ErrNoBackups

func spansOf(key []byte) spans.Span {
	return spans.Span{Key: key, EndKey: append(append([]byte(nil), key...), 0)}
}
