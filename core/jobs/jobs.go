// Package jobs keeps durable BACKUP and RESTORE jobs in etcd and runs them on
// whichever live node adopts them.
//
// A job is a Record under <prefix>jobs/records/<id>. Any node's Registry may
// create one; every started Registry watches the records and claims the
// adoptable jobs it can run. A claim is the key <prefix>jobs/claims/<id>,
// attached to the claiming node's liveness session (an etcd lease), so it
// vanishes when the node dies and another node adopts the job, calling its
// Resumer again; the resumer continues from the Progress it persisted.
//
// <prefix>jobs/active/<id> exists while job id is not finished, so that
// scans for adoptable jobs start at the oldest unfinished job instead of
// reading the whole history.
//
// Every write of a record is a compare-and-swap on the record's mod revision;
// writes by the running node are also conditioned on its claim, so a node
// that lost its claim cannot change the job. Users move jobs with Pause,
// Resume and Cancel; the running node observes requests through a watch and
// acknowledges them. The state machine is the table in states.go.
package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"
)

// Record is the durable state of one job, stored as JSON.
type Record struct {
	ID int64 `json:"id"`
	// Type names the Constructor that builds the job's resumer, e.g.
	// "BACKUP" or "RESTORE".
	Type string `json:"type"`
	// Description is shown to users; the caller redacts secrets before
	// Create.
	Description string `json:"description,omitempty"`
	User        string `json:"user,omitempty"`
	State       State  `json:"state"`

	Created  time.Time `json:"created,omitzero"`
	Started  time.Time `json:"started,omitzero"`
	Modified time.Time `json:"modified,omitzero"`
	Finished time.Time `json:"finished,omitzero"`

	// Error is the cause of a failure. While a job reverts, a non-empty
	// Error means it reverts after a failure (and ends failed); an empty one
	// means it reverts after a cancel (and ends canceled).
	Error string `json:"error,omitempty"`

	// Fraction is the completed fraction in [0, 1]; it never decreases.
	Fraction      float64 `json:"fraction,omitempty"`
	RunningStatus string  `json:"running_status,omitempty"`

	// Payload is the job spec, written once by Create.
	Payload json.RawMessage `json:"payload,omitempty"`
	// Progress is owned by the resumer (resolved plan, checkpoint summary).
	Progress json.RawMessage `json:"progress,omitempty"`
	// Result is owned by the resumer (rows, bytes).
	Result json.RawMessage `json:"result,omitempty"`

	// ClaimNode is the node that last claimed the job, 0 when none does.
	// It is informational: the claim key is the truth.
	ClaimNode int32 `json:"claim_node,omitempty"`
	// ExecutionLocality restricts which nodes may run the job; nodes apply
	// it through Options.CanRun.
	ExecutionLocality string `json:"execution_locality,omitempty"`
	// Retries counts retryable errors since progress last advanced.
	Retries int `json:"retries,omitempty"`
}

// Resumer runs one job on the node that claimed it. A new Resumer is built
// for every claim, so one value sees at most one node's run of the job.
type Resumer interface {
	// Resume runs the job to completion and returns nil on success. It is
	// called again after the job is resumed from pause, adopted after a node
	// died, or retried after a retryable error, so it must continue from the
	// Progress it persisted rather than assume a fresh start. It must return
	// soon after ctx is cancelled (pause, cancel, node shutdown); its error
	// is then ignored. Errors are permanent unless marked MarkRetryable.
	Resume(ctx context.Context, job *Job) error
	// OnFailOrCancel undoes or cleans up after a permanent failure or a
	// cancel; cause is the failure, or an error matching ErrJobCanceled. It
	// may run more than once (a node dies while reverting) and must be
	// idempotent. A retryable error is retried; a permanent one leaves the
	// job revert-failed.
	OnFailOrCancel(ctx context.Context, job *Job, cause error) error
}

// Constructor builds the Resumer for a record of one Type. An error fails
// the job.
type Constructor func(rec Record) (Resumer, error)

// Sentinel errors, matched with errors.Is.
var (
	// ErrJobNotFound: no record has the requested ID.
	ErrJobNotFound = errors.New("job not found")
	// ErrClaimLost: this node no longer holds the claim on the job (its
	// session ended, it was stopped, or the job was paused), so it may not
	// write the record.
	ErrClaimLost = errors.New("job claim lost")
	// ErrJobCanceled is the cause OnFailOrCancel gets for a canceled job.
	ErrJobCanceled = errors.New("job canceled")
)

// Options configure a Registry.
type Options struct {
	// NodeID identifies this node in claims and logs.
	NodeID int32
	// Session is this node's liveness session; claims are attached to its
	// lease and the registry stops running jobs when it ends. Without a
	// session the registry creates, lists and controls jobs but never
	// runs any.
	Session *concurrency.Session
	// Prefix is the etcd key prefix, e.g. "/cairn/".
	Prefix string
	// AdoptInterval is how often the registry scans for adoptable jobs
	// besides watching. Default 1s.
	AdoptInterval time.Duration
	// RetryBackoffInitial and RetryBackoffMax bound the exponential wait
	// between retries. Defaults 100ms and 10s.
	RetryBackoffInitial time.Duration
	RetryBackoffMax     time.Duration
	// RetryBudget is how many retryable errors in a row, without progress,
	// fail the job. Default 10.
	RetryBudget int
	// CanRun filters the jobs this node may run (execution locality); a
	// node does not claim a job for which it returns false. Nil means all.
	CanRun func(Record) bool
	// Logger receives the registry's logs. Nil discards them.
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.AdoptInterval <= 0 {
		o.AdoptInterval = time.Second
	}
	if o.RetryBackoffInitial <= 0 {
		o.RetryBackoffInitial = 100 * time.Millisecond
	}
	if o.RetryBackoffMax <= 0 {
		o.RetryBackoffMax = 10 * time.Second
	}
	if o.RetryBackoffMax < o.RetryBackoffInitial {
		o.RetryBackoffMax = o.RetryBackoffInitial
	}
	if o.RetryBudget <= 0 {
		o.RetryBudget = 10
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// retryMark classifies an error as retryable or permanent; the outermost
// mark in an error's chain wins.
type retryMark struct {
	err       error
	retryable bool
}

func (e *retryMark) Error() string { return e.err.Error() }
func (e *retryMark) Unwrap() error { return e.err }

// MarkRetryable marks err so that the job is retried rather than failed.
// It returns nil for nil.
func MarkRetryable(err error) error {
	if err == nil {
		return nil
	}
	return &retryMark{err: err, retryable: true}
}

// MarkPermanent marks err so that the job fails, overriding a retryable
// mark deeper in its chain. Unmarked errors are already permanent.
func MarkPermanent(err error) error {
	if err == nil {
		return nil
	}
	return &retryMark{err: err, retryable: false}
}

// IsRetryable reports whether the outermost mark in err's chain is
// MarkRetryable.
func IsRetryable(err error) bool {
	var m *retryMark
	return errors.As(err, &m) && m.retryable
}

// Decode unmarshals a record's Payload into payload and, when there is
// any, its Progress into progress. A record that does not decode can
// never run, so the error is permanent.
func (r Record) Decode(payload, progress any) error {
	if err := json.Unmarshal(r.Payload, payload); err != nil {
		return MarkPermanent(fmt.Errorf("decoding the payload of %s job %d: %w", r.Type, r.ID, err))
	}
	if len(r.Progress) > 0 {
		if err := json.Unmarshal(r.Progress, progress); err != nil {
			return MarkPermanent(fmt.Errorf("decoding the progress of %s job %d: %w", r.Type, r.ID, err))
		}
	}
	return nil
}
