package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Job is the handle a Resumer gets for the job it runs. Its writes succeed
// only while this node holds the claim it was built with; afterwards they
// return an error matching ErrClaimLost. Errors from etcd itself are marked
// retryable, so a resumer may return them as they are. Safe for concurrent
// use.
type Job struct {
	r        *Registry
	id       int64
	claimRev int64 // create revision of this node's claim key

	mu     sync.Mutex
	rec    Record
	modRev int64
}

// ID returns the job's ID.
func (j *Job) ID() int64 { return j.id }

// Record returns a copy of the record as this node last read or wrote it.
func (j *Job) Record() Record {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.rec.clone()
}

func (rec Record) clone() Record {
	rec.Payload = slices.Clone(rec.Payload)
	rec.Progress = slices.Clone(rec.Progress)
	rec.Result = slices.Clone(rec.Result)
	return rec
}

// Update applies fn to a copy of the current record and stores it with a
// compare-and-swap; on a conflicting write it reads the record again and
// calls fn again, so fn may run more than once and must not have side
// effects. An error from fn aborts the update and is returned. Only the
// resumer-owned fields are kept from fn's changes: Description,
// RunningStatus, Fraction (clamped to [0,1], never lowered), Progress and
// Result; the others are the registry's.
func (j *Job) Update(ctx context.Context, fn func(*Record) error) error {
	_, err := j.write(ctx, false, func(rec *Record) (bool, error) {
		next := rec.clone()
		if err := fn(&next); err != nil {
			return false, err
		}
		rec.Description = next.Description
		rec.RunningStatus = next.RunningStatus
		rec.Fraction = advanceFraction(rec.Fraction, next.Fraction)
		rec.Progress = next.Progress
		rec.Result = next.Result
		return true, nil
	})
	return err
}

func advanceFraction(old, next float64) float64 {
	if math.IsNaN(next) {
		return old
	}
	return max(old, min(max(next, 0), 1))
}

// SetProgress stores fraction (clamped to [0,1]; a value below the stored
// one is ignored) and, unless progress is nil, progress encoded as JSON.
func (j *Job) SetProgress(ctx context.Context, fraction float64, progress any) error {
	var raw json.RawMessage
	if progress != nil {
		var err error
		if raw, err = json.Marshal(progress); err != nil {
			return fmt.Errorf("encoding progress of job %d: %w", j.id, err)
		}
	}
	return j.Update(ctx, func(rec *Record) error {
		rec.Fraction = fraction
		if raw != nil {
			rec.Progress = raw
		}
		return nil
	})
}

// SetResult stores result encoded as JSON.
func (j *Job) SetResult(ctx context.Context, result any) error {
	raw, err := json.Marshal(result)
	if err != nil {
		return fmt.Errorf("encoding result of job %d: %w", j.id, err)
	}
	return j.Update(ctx, func(rec *Record) error {
		rec.Result = raw
		return nil
	})
}

// write stores the record as mutate changes it, conditioned on the record's
// mod revision and on this node's claim; on a conflicting record write it
// reads again and calls mutate again. mutate returns false to write nothing.
// With release the claim is deleted in the same transaction. It reports
// whether it wrote.
func (j *Job) write(ctx context.Context, release bool, mutate func(*Record) (bool, error)) (bool, error) {
	recKey, claimKey := j.r.recordKey(j.id), j.r.claimKey(j.id)
	for {
		j.mu.Lock()
		cur, modRev := j.rec.clone(), j.modRev
		j.mu.Unlock()

		next := cur.clone()
		ok, err := mutate(&next)
		if err != nil || !ok {
			return false, err
		}
		if !CanTransition(cur.State, next.State) {
			return false, &TransitionError{ID: j.id, State: cur.State, Op: "move to " + string(next.State)}
		}
		next.Modified = time.Now().UTC()
		data, err := json.Marshal(next)
		if err != nil {
			return false, fmt.Errorf("encoding record of job %d: %w", j.id, err)
		}
		ops := []clientv3.Op{clientv3.OpPut(recKey, string(data))}
		if release {
			ops = append(ops, clientv3.OpDelete(claimKey))
		}
		if next.State.Terminal() {
			ops = append(ops, clientv3.OpDelete(j.r.activeKey(j.id)))
		}
		resp, err := j.r.cli.Txn(ctx).If(
			clientv3.Compare(clientv3.ModRevision(recKey), "=", modRev),
			clientv3.Compare(clientv3.CreateRevision(claimKey), "=", j.claimRev),
		).Then(ops...).Else(
			clientv3.OpGet(recKey),
			clientv3.OpGet(claimKey),
		).Commit()
		if err != nil {
			// etcd errors are transient (timeouts, lost connections), and
			// a resumer that returns one should be retried, not failed.
			if ctx.Err() == nil {
				err = MarkRetryable(err)
			}
			return false, fmt.Errorf("writing job %d: %w", j.id, err)
		}
		if resp.Succeeded {
			j.mu.Lock()
			j.rec, j.modRev = next, resp.Header.Revision
			j.mu.Unlock()
			return true, nil
		}
		if err := j.absorb(resp.Responses[0].GetResponseRange(), resp.Responses[1].GetResponseRange()); err != nil {
			return false, err
		}
	}
}

// refresh reads the record and checks the claim.
func (j *Job) refresh(ctx context.Context) (Record, error) {
	resp, err := j.r.cli.Txn(ctx).Then(
		clientv3.OpGet(j.r.recordKey(j.id)),
		clientv3.OpGet(j.r.claimKey(j.id)),
	).Commit()
	if err != nil {
		return Record{}, fmt.Errorf("reading job %d: %w", j.id, err)
	}
	if err := j.absorb(resp.Responses[0].GetResponseRange(), resp.Responses[1].GetResponseRange()); err != nil {
		return Record{}, err
	}
	return j.Record(), nil
}

// absorb takes in a record and claim read together; it fails with
// ErrClaimLost unless the claim is still this node's.
func (j *Job) absorb(recResp, claimResp *etcdRange) error {
	s, err := j.r.decodeSnapshot(j.id, recResp, claimResp)
	if err != nil {
		return err
	}
	if s.claimRev != j.claimRev {
		return fmt.Errorf("writing job %d: %w", j.id, ErrClaimLost)
	}
	j.mu.Lock()
	j.rec, j.modRev = s.rec, s.modRev
	j.mu.Unlock()
	return nil
}
