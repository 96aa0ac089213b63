package jobs

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"
)

// runner drives one claimed job on this node through the state machine.
type runner struct {
	job *Job

	mu       sync.Mutex
	phaseRev int64 // record revision the current phase was decided at
	cancel   context.CancelFunc
}

// newPhase returns the context for one step of the job; interrupt cancels
// it. It is registered before the step reads the record, so a request
// written after that read always interrupts the step.
func (rn *runner) newPhase(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	rn.mu.Lock()
	rn.cancel, rn.phaseRev = cancel, 0
	rn.mu.Unlock()
	return ctx, cancel
}

func (rn *runner) setPhaseRev(rev int64) {
	rn.mu.Lock()
	rn.phaseRev = rev
	rn.mu.Unlock()
}

func (rn *runner) interrupt() {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	if rn.cancel != nil {
		rn.cancel()
	}
}

// observe is told of a version of the record seen by the watch or a scan;
// a pause or cancel request newer than what the current step was decided on
// interrupts the step.
func (rn *runner) observe(state State, modRev int64) {
	if state != StatePauseRequested && state != StateCancelRequested {
		return
	}
	rn.mu.Lock()
	defer rn.mu.Unlock()
	if modRev > rn.phaseRev && modRev > rn.job.claimRev && rn.cancel != nil {
		rn.cancel()
	}
}

// runJob runs a claimed job until it is terminal or paused (the claim is
// released with the final write), the claim is lost, or ctx ends (the claim
// is released, the state is left as it is).
func (r *Registry) runJob(ctx context.Context, rn *runner) {
	job := rn.job
	log := r.log.With("job_id", job.id)
	defer func() {
		r.mu.Lock()
		if r.running[job.id] == rn {
			delete(r.running, job.id)
		}
		r.mu.Unlock()
	}()

	rec := job.Record()
	var res Resumer
	var resErr error
	if c := r.constructor(rec.Type); c != nil {
		res, resErr = c(rec)
	}
	if res == nil && resErr == nil {
		resErr = fmt.Errorf("no resumer for job type %q", rec.Type)
	}
	lastFraction := rec.Fraction

	for {
		if ctx.Err() != nil {
			log.Info("stopping job without changing its state")
			r.release(ctx, job)
			return
		}
		phaseCtx, endPhase := rn.newPhase(ctx)
		rec, err := job.refresh(ctx)
		if err != nil {
			endPhase()
			if errors.Is(err, ErrClaimLost) || errors.Is(err, ErrJobNotFound) {
				log.Info("job no longer claimed here", "err", err)
				return
			}
			if ctx.Err() == nil {
				log.Warn("reading job", "err", err)
				sleepCtx(ctx, r.opts.RetryBackoffInitial)
			}
			continue
		}
		rn.setPhaseRev(job.modRev)

		var done bool
		switch rec.State {
		case StatePending:
			_, err = job.write(ctx, false, func(rec *Record) (bool, error) {
				if rec.State != StatePending {
					return false, nil
				}
				rec.State = StateRunning
				if rec.Started.IsZero() {
					rec.Started = time.Now().UTC()
				}
				return true, nil
			})
		case StateRunning:
			done, err = r.runResume(ctx, phaseCtx, job, res, resErr, &lastFraction)
		case StatePauseRequested:
			done, err = job.write(ctx, true, func(rec *Record) (bool, error) {
				if rec.State != StatePauseRequested {
					return false, nil
				}
				rec.State, rec.ClaimNode = StatePaused, 0
				return true, nil
			})
			if done {
				log.Info("job paused")
			}
		case StateCancelRequested:
			_, err = job.write(ctx, false, func(rec *Record) (bool, error) {
				if rec.State != StateCancelRequested {
					return false, nil
				}
				rec.State, rec.Error, rec.Retries = StateReverting, "", 0
				return true, nil
			})
		case StateReverting:
			done, err = r.runRevert(ctx, phaseCtx, job, res, resErr)
		default:
			// Paused or terminal: nothing to run; the claim should not
			// exist, but make sure it does not linger.
			log.Warn("claimed job needs no run", "state", rec.State)
			r.release(ctx, job)
			done = true
		}
		endPhase()
		if done {
			return
		}
		if err != nil {
			if errors.Is(err, ErrClaimLost) || errors.Is(err, ErrJobNotFound) {
				log.Info("job no longer claimed here", "err", err)
				return
			}
			if ctx.Err() == nil {
				log.Warn("updating job", "err", err)
				sleepCtx(ctx, r.opts.RetryBackoffInitial)
			}
		}
	}
}

// runResume calls Resume once and records its outcome. It reports done
// when the job reached a state this node no longer runs.
func (r *Registry) runResume(ctx, phaseCtx context.Context, job *Job, res Resumer, resErr error, lastFraction *float64) (bool, error) {
	log := r.log.With("job_id", job.id)
	if resErr != nil {
		return job.write(ctx, true, func(rec *Record) (bool, error) {
			if rec.State != StateRunning {
				return false, nil
			}
			rec.State, rec.ClaimNode = StateFailed, 0
			rec.Error = fmt.Sprintf("building resumer: %v", resErr)
			rec.Finished = time.Now().UTC()
			return true, nil
		})
	}
	if phaseCtx.Err() != nil {
		return false, nil
	}
	err := callSafely(func() error { return res.Resume(phaseCtx, job) })
	if ctx.Err() != nil || phaseCtx.Err() != nil {
		// Stopped, or interrupted by a request: the next step reads the
		// state and decides; the resumer's error is moot.
		return false, nil
	}
	switch {
	case err == nil:
		done, werr := job.write(ctx, true, func(rec *Record) (bool, error) {
			if rec.State != StateRunning && rec.State != StatePauseRequested {
				return false, nil
			}
			rec.State, rec.ClaimNode = StateSucceeded, 0
			rec.Fraction, rec.RunningStatus = 1, ""
			rec.Finished = time.Now().UTC()
			return true, nil
		})
		if done {
			log.Info("job succeeded")
		}
		return done, werr

	case IsRetryable(err):
		cur := job.Record()
		advanced := cur.Fraction > *lastFraction
		*lastFraction = cur.Fraction
		var retries int
		exhausted := false
		_, werr := job.write(ctx, false, func(rec *Record) (bool, error) {
			if rec.State != StateRunning {
				return false, nil
			}
			if advanced {
				rec.Retries = 0
			}
			rec.Retries++
			retries = rec.Retries
			if rec.Retries > r.opts.RetryBudget {
				exhausted = true
				rec.State, rec.Retries = StateReverting, 0
				rec.Error = fmt.Sprintf("retry budget of %d exhausted: %v", r.opts.RetryBudget, err)
				return true, nil
			}
			rec.RunningStatus = fmt.Sprintf("retrying after error: %v", err)
			return true, nil
		})
		if werr != nil || exhausted || retries == 0 {
			return false, werr
		}
		log.Info("retrying job after error", "err", err, "retries", retries)
		sleepCtx(phaseCtx, r.backoff(retries))
		return false, nil

	default:
		log.Info("job failed", "err", err)
		msg := err.Error()
		if msg == "" {
			msg = "unknown error"
		}
		_, werr := job.write(ctx, false, func(rec *Record) (bool, error) {
			if rec.State != StateRunning && rec.State != StatePauseRequested {
				return false, nil
			}
			rec.State, rec.Error, rec.Retries = StateReverting, msg, 0
			return true, nil
		})
		return false, werr
	}
}

// runRevert calls OnFailOrCancel once and records its outcome.
func (r *Registry) runRevert(ctx, phaseCtx context.Context, job *Job, res Resumer, resErr error) (bool, error) {
	log := r.log.With("job_id", job.id)
	rec := job.Record()
	failure := rec.Error != ""
	cause := ErrJobCanceled
	if failure {
		cause = errors.New(rec.Error)
	}
	revertFailed := func(err error) (bool, error) {
		return job.write(ctx, true, func(rec *Record) (bool, error) {
			if rec.State != StateReverting {
				return false, nil
			}
			if failure {
				rec.Error = fmt.Sprintf("%s; reverting: %v", rec.Error, err)
			} else {
				rec.Error = fmt.Sprintf("reverting canceled job: %v", err)
			}
			rec.State, rec.ClaimNode = StateRevertFailed, 0
			rec.Finished = time.Now().UTC()
			return true, nil
		})
	}
	if resErr != nil {
		return revertFailed(fmt.Errorf("building resumer: %w", resErr))
	}
	if phaseCtx.Err() != nil {
		return false, nil
	}
	err := callSafely(func() error { return res.OnFailOrCancel(phaseCtx, job, cause) })
	if ctx.Err() != nil || phaseCtx.Err() != nil {
		return false, nil
	}
	switch {
	case err == nil:
		final := StateCanceled
		if failure {
			final = StateFailed
		}
		done, werr := job.write(ctx, true, func(rec *Record) (bool, error) {
			if rec.State != StateReverting {
				return false, nil
			}
			rec.State, rec.ClaimNode, rec.RunningStatus = final, 0, ""
			rec.Finished = time.Now().UTC()
			return true, nil
		})
		if done {
			log.Info("job reverted", "state", final)
		}
		return done, werr
	case IsRetryable(err):
		var retries int
		_, werr := job.write(ctx, false, func(rec *Record) (bool, error) {
			if rec.State != StateReverting {
				return false, nil
			}
			rec.Retries++
			retries = rec.Retries
			rec.RunningStatus = fmt.Sprintf("retrying revert after error: %v", err)
			return true, nil
		})
		if werr != nil || retries == 0 {
			return false, werr
		}
		if retries > r.opts.RetryBudget {
			return revertFailed(fmt.Errorf("retry budget of %d exhausted: %w", r.opts.RetryBudget, err))
		}
		log.Info("retrying revert after error", "err", err, "retries", retries)
		sleepCtx(phaseCtx, r.backoff(retries))
		return false, nil
	default:
		log.Warn("reverting job", "err", err)
		return revertFailed(err)
	}
}

// backoff is the wait before retry n (1-based): the initial backoff doubled
// per retry, capped at the maximum.
func (r *Registry) backoff(n int) time.Duration {
	d := r.opts.RetryBackoffInitial
	for i := 1; i < n && d < r.opts.RetryBackoffMax; i++ {
		d *= 2
	}
	return min(d, r.opts.RetryBackoffMax)
}

// callSafely turns a panic in a resumer into a permanent error with its
// stack, so that one bad job cannot take the node down.
func callSafely(fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = MarkPermanent(fmt.Errorf("panic in resumer: %v\n%s", p, debug.Stack()))
		}
	}()
	return fn()
}
