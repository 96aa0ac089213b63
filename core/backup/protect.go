package backup

import (
	"context"
	"errors"
	"fmt"

	"github.com/cairnbackup/cairn/core/cluster"
	"github.com/cairnbackup/cairn/core/hlc"
	"github.com/cairnbackup/cairn/core/jobs"
)

// ProtectionID is the id of the protected timestamp record of backup job
// jobID. It is derived from the job, so a resumed or adopted job finds the
// record its earlier run wrote, and so a revert can release it without
// having recorded anything.
func ProtectionID(jobID int64) string { return fmt.Sprintf("backup-%d", jobID) }

// protectedTime is the earliest timestamp whose versions the backup reads,
// which GC must keep until it ends. A latest-only backup from start (zero
// for a full backup) reads the view at EndTime; an incremental layer must
// also see tombstones above its start, and a revision-history backup every
// version above it, so those protect start itself (the zero timestamp,
// everything, for a full revision-history backup).
func (s Spec) protectedTime(start hlc.Timestamp) hlc.Timestamp {
	if s.RevisionHistory || !start.IsEmpty() {
		return start
	}
	return s.EndTime
}

// protect writes the job's protected timestamp record over its target
// spans. It is idempotent, so every run of the job calls it before it
// reads anything.
func (r *Resumer) protect(ctx context.Context, job *jobs.Job, spec Spec, start hlc.Timestamp) error {
	targets := spec.TargetSpans()
	if len(targets) == 0 {
		return nil
	}
	rec := cluster.ProtectedTimestamp{
		ID: ProtectionID(job.ID()), JobID: job.ID(), Timestamp: spec.protectedTime(start), Spans: targets,
	}
	if err := r.env.Node.Meta.Protect(ctx, rec); err != nil {
		if errors.Is(err, cluster.ErrAlreadyExists) {
			return jobs.MarkPermanent(err)
		}
		return jobs.MarkRetryable(err)
	}
	return nil
}

// release removes the job's protected timestamp record; it is idempotent.
func (r *Resumer) release(ctx context.Context, job *jobs.Job) error {
	if err := r.env.Node.Meta.Release(ctx, ProtectionID(job.ID())); err != nil {
		return jobs.MarkRetryable(err)
	}
	return nil
}
