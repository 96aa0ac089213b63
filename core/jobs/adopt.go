package jobs

import (
	"context"
	"encoding/json"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// releaseTimeout bounds the claim release a stopping node does after its
// context is cancelled.
const releaseTimeout = 5 * time.Second

// Start starts adopting: a watch on the jobs keys and a scan every
// AdoptInterval find jobs that are adoptable, unclaimed, of a registered
// type and allowed by CanRun, and this node claims and runs them. Running
// jobs stop when ctx is cancelled, Stop is called or the session ends.
// Without a Session, Start does nothing. Start may be called once.
func (r *Registry) Start(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started || r.stopped || r.opts.Session == nil {
		return
	}
	r.started = true
	r.baseCtx = ctx
	ctx, r.cancel = context.WithCancel(ctx)
	r.wg.Add(3)
	go func() {
		defer r.wg.Done()
		select {
		case <-r.opts.Session.Done():
			r.log.Warn("liveness session ended: stopping jobs")
			r.cancel()
		case <-ctx.Done():
		}
	}()
	go func() {
		defer r.wg.Done()
		r.watchLoop(ctx)
	}()
	go func() {
		defer r.wg.Done()
		r.adoptLoop(ctx)
	}()
}

// Stop stops adopting and stops the resumers running here, without changing
// the state of their jobs, then releases their claims so that other nodes
// adopt them. It returns once every resumer has returned. Safe to call more
// than once, and without Start.
func (r *Registry) Stop() {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return
	}
	r.stopped = true
	cancel := r.cancel
	r.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	r.wg.Wait()
}

func (r *Registry) sessionDone() bool {
	select {
	case <-r.opts.Session.Done():
		return true
	default:
		return false
	}
}

// enqueue asks the adopt loop to try to adopt job id.
func (r *Registry) enqueue(id int64) {
	r.mu.Lock()
	r.queue[id] = struct{}{}
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *Registry) adoptLoop(ctx context.Context) {
	ticker := time.NewTicker(r.opts.AdoptInterval)
	defer ticker.Stop()
	r.scan(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			r.scan(ctx)
		case <-r.kick:
			r.mu.Lock()
			ids := make([]int64, 0, len(r.queue))
			for id := range r.queue {
				ids = append(ids, id)
			}
			clear(r.queue)
			r.mu.Unlock()
			for _, id := range ids {
				r.tryAdoptID(ctx, id)
			}
		}
	}
}

// watchLoop turns changes of records and claims into adoption attempts and
// into notices for the jobs running here. After the watch breaks it scans
// again, so nothing is missed in between.
func (r *Registry) watchLoop(ctx context.Context) {
	for ctx.Err() == nil {
		resp, err := r.cli.Get(ctx, r.counterKey(), clientv3.WithCountOnly())
		if err != nil {
			r.log.Warn("reading jobs revision", "err", err)
			if !sleepCtx(ctx, r.opts.AdoptInterval) {
				return
			}
			continue
		}
		// Whatever happened up to this revision, a scan sees; the watch
		// sees the rest.
		r.kickScan()
		r.watchFrom(ctx, resp.Header.Revision+1)
	}
}

func (r *Registry) kickScan() {
	r.enqueue(-1)
}

func (r *Registry) watchFrom(ctx context.Context, rev int64) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := r.cli.Watch(wctx, r.prefix+"jobs/", clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithRev(rev))
	for wr := range wch {
		if err := wr.Err(); err != nil {
			r.log.Warn("watching jobs", "err", err)
			return
		}
		for _, ev := range wr.Events {
			r.handleEvent(ev)
		}
	}
}

func (r *Registry) handleEvent(ev *clientv3.Event) {
	key := string(ev.Kv.Key)
	if id, ok := parseID(key, r.recordsPrefix()); ok {
		rn := r.localRunner(id)
		if ev.Type == clientv3.EventTypeDelete {
			if rn != nil {
				rn.interrupt()
			}
			return
		}
		var rec Record
		if err := json.Unmarshal(ev.Kv.Value, &rec); err != nil {
			r.log.Warn("decoding job record from watch", "job_id", id, "err", err)
			return
		}
		if rn != nil {
			rn.observe(rec.State, ev.Kv.ModRevision)
			return
		}
		if !rec.State.Adoptable() {
			return
		}
		var prev Record
		if ev.PrevKv != nil {
			_ = json.Unmarshal(ev.PrevKv.Value, &prev)
		}
		// A new job, or one made adoptable by Resume or Cancel of a paused
		// job. Other writes come from a node that holds the claim.
		if ev.PrevKv == nil || prev.State != rec.State {
			r.enqueue(id)
		}
		return
	}
	if id, ok := parseID(key, r.claimsPrefix()); ok && ev.Type == clientv3.EventTypeDelete {
		if rn := r.localRunner(id); rn != nil {
			if ev.PrevKv == nil || ev.PrevKv.CreateRevision == rn.job.claimRev {
				rn.interrupt()
			}
			return
		}
		r.enqueue(id)
	}
}

func (r *Registry) localRunner(id int64) *runner {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running[id]
}

// scan reads all claims and records at one revision: it adopts the
// adoptable unclaimed jobs and tells the jobs running here about requests
// and lost claims that a broken watch may have missed.
func (r *Registry) scan(ctx context.Context) {
	claims := make(map[int64]int64)
	rev, err := r.forEachKV(ctx, r.claimsPrefix(), r.claimsPrefix(), 0, true, func(id int64, _ []byte, _, createRev int64) error {
		claims[id] = createRev
		return nil
	})
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("scanning job claims", "err", err)
		}
		return
	}
	// Finished jobs are never adopted: start at the oldest unfinished one
	// rather than read the whole history.
	first, err := r.cli.Get(ctx, r.activePrefix(), clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithLimit(1), clientv3.WithRev(rev))
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("scanning unfinished jobs", "err", err)
		}
		return
	}
	if len(first.Kvs) == 0 {
		return
	}
	from, ok := parseID(string(first.Kvs[0].Key), r.activePrefix())
	if !ok {
		r.log.Warn("bad unfinished job key", "key", string(first.Kvs[0].Key))
		from = 0
	}
	type candidate struct {
		rec    Record
		modRev int64
	}
	var candidates []candidate
	_, err = r.forEachRecord(ctx, rev, from, func(rec Record, modRev int64) error {
		if rn := r.localRunner(rec.ID); rn != nil {
			if claims[rec.ID] != rn.job.claimRev && rev > rn.job.claimRev {
				rn.interrupt()
			}
			rn.observe(rec.State, modRev)
			return nil
		}
		if rec.State.Adoptable() && claims[rec.ID] == 0 {
			candidates = append(candidates, candidate{rec, modRev})
		}
		return nil
	})
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("scanning jobs", "err", err)
		}
		return
	}
	for _, c := range candidates {
		r.tryAdopt(ctx, c.rec, c.modRev)
	}
}

func (r *Registry) tryAdoptID(ctx context.Context, id int64) {
	if id < 0 {
		r.scan(ctx)
		return
	}
	s, err := r.read(ctx, id)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Debug("reading job to adopt", "job_id", id, "err", err)
		}
		return
	}
	if s.claimRev != 0 || !s.rec.State.Adoptable() {
		return
	}
	r.tryAdopt(ctx, s.rec, s.modRev)
}

// tryAdopt claims job rec, read at modRev, and runs it here, unless it
// cannot run here, runs here already or someone else claimed it.
func (r *Registry) tryAdopt(ctx context.Context, rec Record, modRev int64) {
	id := rec.ID
	if !rec.State.Adoptable() || r.constructor(rec.Type) == nil {
		return
	}
	if r.opts.CanRun != nil && !r.opts.CanRun(rec) {
		return
	}
	r.mu.Lock()
	if _, ok := r.running[id]; ok || ctx.Err() != nil {
		r.mu.Unlock()
		return
	}
	r.running[id] = nil // reserve: one claim attempt per job at a time
	r.mu.Unlock()

	next := rec.clone()
	next.ClaimNode = r.opts.NodeID
	next.Modified = time.Now().UTC()
	data, err := json.Marshal(next)
	var resp *clientv3.TxnResponse
	if err == nil {
		recKey, claimKey := r.recordKey(id), r.claimKey(id)
		resp, err = r.cli.Txn(ctx).If(
			clientv3.Compare(clientv3.CreateRevision(claimKey), "=", 0),
			clientv3.Compare(clientv3.ModRevision(recKey), "=", modRev),
		).Then(
			clientv3.OpPut(claimKey, strconv.Itoa(int(r.opts.NodeID)), clientv3.WithLease(r.opts.Session.Lease())),
			clientv3.OpPut(recKey, string(data)),
		).Commit()
	}
	if err != nil || !resp.Succeeded {
		if err != nil && ctx.Err() == nil {
			r.log.Warn("claiming job", "job_id", id, "err", err)
		}
		r.mu.Lock()
		delete(r.running, id)
		r.mu.Unlock()
		return
	}
	rev := resp.Header.Revision
	rn := &runner{job: &Job{r: r, id: id, claimRev: rev, rec: next, modRev: rev}}
	r.mu.Lock()
	r.running[id] = rn
	r.wg.Add(1)
	r.mu.Unlock()
	r.log.Info("adopted job", "job_id", id, "type", rec.Type, "state", rec.State)
	go func() {
		defer r.wg.Done()
		r.runJob(ctx, rn)
	}()
}

// release deletes this node's claim on a job it stops running without
// finishing, so that another node adopts it at once rather than when the
// lease expires.
func (r *Registry) release(ctx context.Context, job *Job) {
	if r.sessionDone() {
		return // the lease, and the claim with it, is gone
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	claimKey := r.claimKey(job.id)
	_, err := r.cli.Txn(ctx).If(
		clientv3.Compare(clientv3.CreateRevision(claimKey), "=", job.claimRev),
	).Then(clientv3.OpDelete(claimKey)).Commit()
	if err != nil {
		r.log.Warn("releasing job claim", "job_id", job.id, "err", err)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
