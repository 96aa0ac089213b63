package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// defaultPageSize bounds the keys one etcd reply carries when listing.
const defaultPageSize = 256

// Registry creates, controls and (once started) adopts and runs jobs. One
// Registry per node; all of its methods are safe for concurrent use.
type Registry struct {
	cli    *clientv3.Client
	opts   Options
	log    *slog.Logger
	prefix string
	// pageSize is the etcd limit per read of a listing; tests lower it.
	pageSize int64

	mu      sync.Mutex
	ctors   map[string]Constructor
	running map[int64]*runner // claimed here; nil while a claim is being made
	started bool
	stopped bool
	baseCtx context.Context // Start's ctx, for cleanup that outlives cancellation
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	kick  chan struct{} // wakes the adopt loop; capacity 1
	queue map[int64]struct{}
}

// NewRegistry returns a Registry that keeps jobs under opts.Prefix through
// cli. It does not adopt jobs until Start. The caller keeps ownership of cli
// and opts.Session and must Stop the registry before closing them.
func NewRegistry(cli *clientv3.Client, opts Options) *Registry {
	opts.setDefaults()
	return &Registry{
		cli:      cli,
		opts:     opts,
		log:      opts.Logger.With("node", opts.NodeID),
		prefix:   opts.Prefix,
		pageSize: defaultPageSize,
		ctors:    make(map[string]Constructor),
		running:  make(map[int64]*runner),
		kick:     make(chan struct{}, 1),
		queue:    make(map[int64]struct{}),
	}
}

// Register makes this node able to run jobs of type typ. Register before
// Start; a node claims only jobs whose type it has registered.
func (r *Registry) Register(typ string, c Constructor) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ctors[typ] = c
}

func (r *Registry) constructor(typ string) Constructor {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ctors[typ]
}

func (r *Registry) recordsPrefix() string { return r.prefix + "jobs/records/" }
func (r *Registry) claimsPrefix() string  { return r.prefix + "jobs/claims/" }
func (r *Registry) activePrefix() string  { return r.prefix + "jobs/active/" }
func (r *Registry) activeKey(id int64) string {
	return fmt.Sprintf("%s%020d", r.activePrefix(), id)
}
func (r *Registry) counterKey() string        { return r.prefix + "jobs/next-id" }
func (r *Registry) recordKey(id int64) string { return fmt.Sprintf("%s%020d", r.recordsPrefix(), id) }
func (r *Registry) claimKey(id int64) string  { return fmt.Sprintf("%s%020d", r.claimsPrefix(), id) }

func parseID(key, prefix string) (int64, bool) {
	s, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseInt(s, 10, 64)
	return id, err == nil
}

func decodeRecord(id int64, data []byte) (Record, error) {
	var rec Record
	if err := json.Unmarshal(data, &rec); err != nil {
		return Record{}, fmt.Errorf("decoding record of job %d: %w", id, err)
	}
	return rec, nil
}

// Create stores rec as a new pending job and returns its ID, which is unique
// and greater than every ID created before. The registry sets ID, State,
// Created and Modified and clears what only a run may set (Started,
// Finished, Error, Fraction, Result, ClaimNode, Retries); Payload, Progress
// and the descriptive fields are kept as given. Any started node that can
// run the job, this one included, may then adopt it.
func (r *Registry) Create(ctx context.Context, rec Record) (int64, error) {
	if rec.Type == "" {
		return 0, errors.New("creating job: empty type")
	}
	now := time.Now().UTC()
	rec.State = StatePending
	rec.Created, rec.Modified = now, now
	rec.Started, rec.Finished = time.Time{}, time.Time{}
	rec.Error, rec.Fraction, rec.Result, rec.ClaimNode, rec.Retries = "", 0, nil, 0, 0
	for {
		resp, err := r.cli.Get(ctx, r.counterKey())
		if err != nil {
			return 0, fmt.Errorf("creating job: reading id counter: %w", err)
		}
		var last, counterRev int64
		if len(resp.Kvs) == 1 {
			kv := resp.Kvs[0]
			if last, err = strconv.ParseInt(string(kv.Value), 10, 64); err != nil {
				return 0, fmt.Errorf("creating job: parsing id counter %q: %w", kv.Value, err)
			}
			counterRev = kv.ModRevision
		}
		rec.ID = last + 1
		data, err := json.Marshal(rec)
		if err != nil {
			return 0, fmt.Errorf("creating job: encoding record: %w", err)
		}
		key := r.recordKey(rec.ID)
		txn, err := r.cli.Txn(ctx).If(
			clientv3.Compare(clientv3.ModRevision(r.counterKey()), "=", counterRev),
			clientv3.Compare(clientv3.CreateRevision(key), "=", 0),
		).Then(
			clientv3.OpPut(r.counterKey(), strconv.FormatInt(rec.ID, 10)),
			clientv3.OpPut(key, string(data)),
			clientv3.OpPut(r.activeKey(rec.ID), ""),
		).Commit()
		if err != nil {
			return 0, fmt.Errorf("creating job %d: %w", rec.ID, err)
		}
		if txn.Succeeded {
			r.log.Info("created job", "job_id", rec.ID, "type", rec.Type)
			return rec.ID, nil
		}
		// Another node allocated the same ID first; take the next one.
	}
}

// Get returns the record of job id, or an error matching ErrJobNotFound.
func (r *Registry) Get(ctx context.Context, id int64) (Record, error) {
	resp, err := r.cli.Get(ctx, r.recordKey(id))
	if err != nil {
		return Record{}, fmt.Errorf("reading job %d: %w", id, err)
	}
	if len(resp.Kvs) == 0 {
		return Record{}, fmt.Errorf("reading job %d: %w", id, ErrJobNotFound)
	}
	return decodeRecord(id, resp.Kvs[0].Value)
}

// List returns every job ordered by ID, read at one etcd revision in pages
// of bounded size.
func (r *Registry) List(ctx context.Context) ([]Record, error) {
	var out []Record
	_, err := r.forEachRecord(ctx, 0, 0, func(rec Record, _ int64) error {
		out = append(out, rec)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// forEachRecord calls fn for every record from ID from on in ID order, with
// the record's mod revision, reading pages at revision rev (0: the current
// one). It returns the revision it read at.
func (r *Registry) forEachRecord(ctx context.Context, rev, from int64, fn func(Record, int64) error) (int64, error) {
	start := r.recordsPrefix()
	if from > 0 {
		start = r.recordKey(from)
	}
	return r.forEachKV(ctx, r.recordsPrefix(), start, rev, false, func(id int64, value []byte, modRev, _ int64) error {
		rec, err := decodeRecord(id, value)
		if err != nil {
			return err
		}
		return fn(rec, modRev)
	})
}

// forEachKV pages through the keys under prefix, from key start on, whose
// suffix is a job ID.
func (r *Registry) forEachKV(ctx context.Context, prefix, start string, rev int64, keysOnly bool,
	fn func(id int64, value []byte, modRev, createRev int64) error,
) (int64, error) {
	key, end := start, clientv3.GetPrefixRangeEnd(prefix)
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(r.pageSize)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		if keysOnly {
			opts = append(opts, clientv3.WithKeysOnly())
		}
		resp, err := r.cli.Get(ctx, key, opts...)
		if err != nil {
			return 0, fmt.Errorf("listing jobs: %w", err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			id, ok := parseID(string(kv.Key), prefix)
			if !ok {
				continue
			}
			if err := fn(id, kv.Value, kv.ModRevision, kv.CreateRevision); err != nil {
				return 0, err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return rev, nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// snapshot is a record and its claim read at one revision.
type snapshot struct {
	rec       Record
	modRev    int64 // of the record
	claimRev  int64 // create revision of the claim, 0 when unclaimed
	claimNode string
}

func (r *Registry) read(ctx context.Context, id int64) (snapshot, error) {
	resp, err := r.cli.Txn(ctx).Then(
		clientv3.OpGet(r.recordKey(id)),
		clientv3.OpGet(r.claimKey(id)),
	).Commit()
	if err != nil {
		return snapshot{}, fmt.Errorf("reading job %d: %w", id, err)
	}
	return r.decodeSnapshot(id, resp.Responses[0].GetResponseRange(), resp.Responses[1].GetResponseRange())
}

func (r *Registry) decodeSnapshot(id int64, recResp, claimResp *etcdRange) (snapshot, error) {
	if recResp == nil || len(recResp.Kvs) == 0 {
		return snapshot{}, fmt.Errorf("reading job %d: %w", id, ErrJobNotFound)
	}
	kv := recResp.Kvs[0]
	rec, err := decodeRecord(id, kv.Value)
	if err != nil {
		return snapshot{}, err
	}
	s := snapshot{rec: rec, modRev: kv.ModRevision}
	if claimResp != nil && len(claimResp.Kvs) == 1 {
		s.claimRev = claimResp.Kvs[0].CreateRevision
		s.claimNode = string(claimResp.Kvs[0].Value)
	}
	return s, nil
}

// request moves job id as the user operation op asks, see requestTarget.
func (r *Registry) request(ctx context.Context, id int64, op string) error {
	for {
		s, err := r.read(ctx, id)
		if err != nil {
			return err
		}
		to, err := requestTarget(id, op, s.rec.State, s.claimRev != 0)
		if err != nil {
			return err
		}
		rec := s.rec
		rec.State = to
		rec.Modified = time.Now().UTC()
		if s.claimRev == 0 {
			rec.ClaimNode = 0
		}
		if op == opResume {
			rec.Retries = 0
		}
		data, err := json.Marshal(rec)
		if err != nil {
			return fmt.Errorf("encoding record of job %d: %w", id, err)
		}
		// The claim condition keeps "nobody runs it" true when Pause skips
		// the request and pauses directly.
		resp, err := r.cli.Txn(ctx).If(
			clientv3.Compare(clientv3.ModRevision(r.recordKey(id)), "=", s.modRev),
			clientv3.Compare(clientv3.CreateRevision(r.claimKey(id)), "=", s.claimRev),
		).Then(clientv3.OpPut(r.recordKey(id), string(data))).Commit()
		if err != nil {
			return fmt.Errorf("requesting %s of job %d: %w", op, id, err)
		}
		if resp.Succeeded {
			r.log.Info("job state requested", "job_id", id, "op", op, "from", s.rec.State, "to", to)
			return nil
		}
	}
}

// Pause asks for job id to pause. A pending or running job moves to
// pause-requested, and its running node stops the resumer and moves it to
// paused; a job no node has claimed moves to paused at once. Other states
// give a *TransitionError ("job 12 is succeeded: cannot pause").
func (r *Registry) Pause(ctx context.Context, id int64) error { return r.request(ctx, id, opPause) }

// Resume makes paused job id adoptable again (state running, unclaimed);
// the node that adopts it calls the resumer's Resume. Other states give a
// *TransitionError.
func (r *Registry) Resume(ctx context.Context, id int64) error { return r.request(ctx, id, opResume) }

// Cancel asks for job id to be canceled: a pending, running, paused or
// pause-requested job moves to cancel-requested; the node that runs it (or
// adopts it) stops the resumer, moves it to reverting, calls OnFailOrCancel
// and then moves it to canceled (or revert-failed). Other states give a
// *TransitionError.
func (r *Registry) Cancel(ctx context.Context, id int64) error { return r.request(ctx, id, opCancel) }

// Wait blocks until job id reaches a terminal state and returns its final
// record.
func (r *Registry) Wait(ctx context.Context, id int64) (Record, error) {
	return r.WaitFor(ctx, id, func(rec Record) bool { return rec.State.Terminal() })
}

// WaitFor blocks until the record of job id satisfies cond and returns that
// record. cond sees every version the watch delivers, in order, but a
// version overwritten before it is read may be skipped. It returns an error
// matching ErrJobNotFound if the job does not exist or is deleted.
func (r *Registry) WaitFor(ctx context.Context, id int64, cond func(Record) bool) (Record, error) {
	key := r.recordKey(id)
	for {
		resp, err := r.cli.Get(ctx, key)
		if err != nil {
			return Record{}, fmt.Errorf("waiting for job %d: %w", id, err)
		}
		if len(resp.Kvs) == 0 {
			return Record{}, fmt.Errorf("waiting for job %d: %w", id, ErrJobNotFound)
		}
		rec, err := decodeRecord(id, resp.Kvs[0].Value)
		if err != nil {
			return Record{}, err
		}
		if cond(rec) {
			return rec, nil
		}
		rec, done, err := r.watchFor(ctx, id, resp.Header.Revision+1, cond)
		if done || err != nil {
			return rec, err
		}
		// The watch broke (compaction, lost leader): read again.
	}
}

func (r *Registry) watchFor(ctx context.Context, id int64, rev int64, cond func(Record) bool) (Record, bool, error) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range r.cli.Watch(wctx, r.recordKey(id), clientv3.WithRev(rev)) {
		if wr.Err() != nil {
			break
		}
		for _, ev := range wr.Events {
			if ev.Type == clientv3.EventTypeDelete {
				return Record{}, true, fmt.Errorf("waiting for job %d: %w", id, ErrJobNotFound)
			}
			rec, err := decodeRecord(id, ev.Kv.Value)
			if err != nil {
				return Record{}, true, err
			}
			if cond(rec) {
				return rec, true, nil
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return Record{}, true, fmt.Errorf("waiting for job %d: %w", id, err)
	}
	return Record{}, false, nil
}

type etcdRange = etcdserverpb.RangeResponse
