package backup

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"sync"

	"google.golang.org/grpc"

	"github.com/cairnbackup/cairn/core/cloud"
	"github.com/cairnbackup/cairn/core/cluster"
	"github.com/cairnbackup/cairn/core/keys"
	"github.com/cairnbackup/cairn/core/mvcc"
	"github.com/cairnbackup/cairn/core/processorpb"
	"github.com/cairnbackup/cairn/core/spans"
	"github.com/cairnbackup/cairn/sdk/locality"
	"github.com/cairnbackup/cairn/sdk/storage"
)

// Env is what the backup and restore code needs from the node it runs on.
type Env struct {
	Node   *cluster.Node
	Cloud  *cloud.Registry
	Logger *slog.Logger
	Knobs  Knobs
	// Policy plans which node exports each span; nil uses the default
	// rules in-process (sdk/locality/rules).
	Policy locality.Policy
}

// Knobs let tests observe and hold up the processors at chosen points.
type Knobs struct {
	// BeforeExportSpan runs before a processor exports a span; an error
	// fails the span.
	BeforeExportSpan func(ctx context.Context, jobID int64, spanIndex int) error
	// BeforeFinish runs on the coordinator once every span is exported and
	// checkpointed, before the manifest is written; an error ends the run.
	BeforeFinish func(ctx context.Context, jobID int64) error
	// BeforeRestoreFile runs before a restore processor reads a file.
	BeforeRestoreFile func(ctx context.Context, jobID int64, fileIndex int) error
}

// StoragePlugins registers storage plugins into a registry; a node's
// *pluginhost.Host is one.
type StoragePlugins interface {
	RegisterStorage(reg *cloud.Registry)
}

// NewEnv builds the environment of node n, with the built-in local storage
// registered, then the schemes of the node's storage plugins, which take
// over built-in schemes they also serve.
func NewEnv(n *cluster.Node, plugins ...StoragePlugins) *Env {
	reg := cloud.NewRegistry()
	cloud.RegisterLocal(reg, n.ID, func(id int32) (string, error) {
		if id == n.ID {
			return n.ExternalIODir(), nil
		}
		nd, err := n.Meta.Node(context.Background(), id)
		if err != nil {
			return "", err
		}
		return nd.ExternalIODir, nil
	})
	for _, p := range plugins {
		if p != nil {
			p.RegisterStorage(reg)
		}
	}
	return &Env{Node: n, Cloud: reg, Logger: n.Logger}
}

// RegisterProcessor serves the backup processor on s.
func RegisterProcessor(s *grpc.Server, env *Env) {
	processorpb.RegisterBackupProcessorServer(s, &processor{env: env})
}

type processor struct {
	processorpb.UnimplementedBackupProcessorServer
	env *Env
}

// Run exports the spans of spec, each into one or more sstables written to
// spec's destination, and streams one progress message per finished span.
// File names are deterministic (node, job, span, sequence), so a span
// exported again after a resume overwrites its earlier attempt.
func (p *processor) Run(spec *processorpb.BackupSpec, stream processorpb.BackupProcessor_RunServer) error {
	ctx := stream.Context()
	env := p.env
	store, err := env.Cloud.Open(ctx, spec.Uri)
	if err != nil {
		return err
	}
	defer store.Close()
	workers := int(spec.Workers)
	if workers <= 0 {
		workers = 2
	}
	work := make(chan *processorpb.PlannedSpan)
	var sendMu sync.Mutex
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ps := range work {
				if k := env.Knobs.BeforeExportSpan; k != nil {
					if err := k(ctx, spec.JobId, int(ps.Index)); err != nil {
						cancel(err)
						return
					}
				}
				files, err := exportSpan(ctx, env, store, spec, ps)
				if err != nil {
					cancel(err)
					return
				}
				sendMu.Lock()
				err = stream.Send(&processorpb.BackupProgress{SpanIndex: ps.Index, Files: files})
				sendMu.Unlock()
				if err != nil {
					cancel(err)
					return
				}
			}
		}()
	}
feed:
	for _, ps := range spec.Spans {
		select {
		case work <- ps:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	return context.Cause(ctx)
}

// hashingWriter counts and hashes what passes through it.
type hashingWriter struct {
	w    io.Writer
	h    hash.Hash
	size int64
}

func (hw *hashingWriter) Write(p []byte) (int, error) {
	n, err := hw.w.Write(p)
	hw.h.Write(p[:n])
	hw.size += int64(n)
	return n, err
}

func exportSpan(ctx context.Context, env *Env, store storage.Store, spec *processorpb.BackupSpec, ps *processorpb.PlannedSpan) ([]*processorpb.BackupFile, error) {
	span := cluster.SpanFromPB(ps.Span)
	var files []*processorpb.BackupFile
	for seq := 0; ; seq++ {
		name := fmt.Sprintf("%s/data/%d-%d-%d-%d.sst", spec.Dir, env.Node.ID, spec.JobId, ps.Index, seq)
		w, err := store.Write(ctx, name, storage.WriteOptions{})
		if err != nil {
			return nil, fmt.Errorf("exporting span %s: %w", keys.PrettySpan(span), err)
		}
		hw := &hashingWriter{w: w, h: sha256.New()}
		sum, err := env.Node.ExportFrom(ctx, ps.ReadFrom, mvcc.ExportOptions{
			Span: span, StartTS: cluster.TSFromPB(spec.StartTime), EndTS: cluster.TSFromPB(spec.EndTime),
			AllRevisions: spec.AllRevisions, TargetSize: spec.TargetFileSize,
		}, hw)
		if err != nil {
			w.Abort()
			return nil, fmt.Errorf("exporting span %s from node %d: %w", keys.PrettySpan(span), ps.ReadFrom, err)
		}
		if sum.Entries == 0 {
			w.Abort()
		} else {
			if err := w.Close(); err != nil {
				return nil, fmt.Errorf("writing %s: %w", name, err)
			}
			fileSpan := spans.Span{Key: span.Key, EndKey: span.EndKey}
			if sum.ResumeKey != nil {
				fileSpan.EndKey = sum.ResumeKey
			}
			files = append(files, &processorpb.BackupFile{
				Span: cluster.SpanToPB(fileSpan), Path: name[len(spec.Dir)+1:], Entries: sum.Entries,
				LogicalBytes: sum.LogicalBytes, Size: hw.size, Sha256: hw.h.Sum(nil),
				NodeId: env.Node.ID, Locality: spec.Locality,
			})
		}
		if sum.ResumeKey == nil {
			return files, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		span.Key = sum.ResumeKey
	}
}

var errNoProgress = errors.New("no progress")
