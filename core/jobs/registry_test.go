package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/core/etcdutil"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

const testType = "BACKUP"

// env is one embedded etcd shared by the nodes of a test.
type env struct {
	t   *testing.T
	ctx context.Context
	srv *etcdutil.Server
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	t.Cleanup(cancel)
	srv, err := etcdutil.StartEmbedded(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return &env{t: t, ctx: ctx, srv: srv}
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return nil
}

// node is a registry with its own client and liveness session, as a node
// of the cluster would have.
type node struct {
	id   int32
	cli  *clientv3.Client
	sess *concurrency.Session
	reg  *Registry
}

// newNode makes a node; without a session it only creates and controls
// jobs. opts may adjust the options before the registry is built.
func (e *env) newNode(id int32, session bool, opts func(*Options)) *node {
	t := e.t
	t.Helper()
	cli, err := etcdutil.Connect(e.ctx, e.srv.Endpoints)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	n := &node{id: id, cli: cli}
	o := Options{
		NodeID:              id,
		Prefix:              "/cairn/",
		AdoptInterval:       100 * time.Millisecond,
		RetryBackoffInitial: time.Millisecond,
		RetryBackoffMax:     5 * time.Millisecond,
		RetryBudget:         3,
		Logger:              testLogger(t),
	}
	if session {
		n.sess, err = concurrency.NewSession(cli, concurrency.WithTTL(10))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.sess.Close() })
		o.Session = n.sess
	}
	if opts != nil {
		opts(&o)
	}
	n.reg = NewRegistry(cli, o)
	t.Cleanup(n.reg.Stop)
	return n
}

// start registers s's resumer and starts adopting.
func (n *node) start(ctx context.Context, s *script) {
	n.reg.Register(testType, s.constructor(n.id))
	n.reg.Start(ctx)
}

// call is one Resume call seen by a script.
type call struct {
	id   int64
	n    int // 1 for the first Resume of the job, across nodes
	node int32
}

// script is a fake resumer shared by all nodes of a test; it counts calls
// and runs the test's behaviour.
type script struct {
	resume func(ctx context.Context, job *Job, c call) error
	revert func(ctx context.Context, job *Job, cause error) error

	started chan call // every Resume call, buffered

	mu        sync.Mutex
	resumes   map[int64]int
	active    map[int64]int
	maxActive map[int64]int
	reverts   map[int64]int
	causes    map[int64][]error
}

func newScript() *script {
	return &script{
		started:   make(chan call, 1000),
		resumes:   map[int64]int{},
		active:    map[int64]int{},
		maxActive: map[int64]int{},
		reverts:   map[int64]int{},
		causes:    map[int64][]error{},
	}
}

func (s *script) constructor(node int32) Constructor {
	return func(rec Record) (Resumer, error) { return &fakeResumer{s: s, node: node}, nil }
}

type fakeResumer struct {
	s    *script
	node int32
}

func (f *fakeResumer) Resume(ctx context.Context, job *Job) error {
	s, id := f.s, job.ID()
	s.mu.Lock()
	s.resumes[id]++
	c := call{id: id, n: s.resumes[id], node: f.node}
	s.active[id]++
	s.maxActive[id] = max(s.maxActive[id], s.active[id])
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.active[id]--
		s.mu.Unlock()
	}()
	s.started <- c
	if s.resume == nil {
		return nil
	}
	return s.resume(ctx, job, c)
}

func (f *fakeResumer) OnFailOrCancel(ctx context.Context, job *Job, cause error) error {
	s := f.s
	s.mu.Lock()
	s.reverts[job.ID()]++
	s.causes[job.ID()] = append(s.causes[job.ID()], cause)
	s.mu.Unlock()
	if s.revert == nil {
		return nil
	}
	return s.revert(ctx, job, cause)
}

func (s *script) counts(id int64) (resumes, reverts, maxActive int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resumes[id], s.reverts[id], s.maxActive[id]
}

// next returns the next Resume call, failing the test at the deadline.
func (s *script) next(t *testing.T, ctx context.Context) call {
	t.Helper()
	select {
	case c := <-s.started:
		return c
	case <-ctx.Done():
		t.Fatalf("waiting for a Resume call: %v", ctx.Err())
		return call{}
	}
}

// blockUntilCancelled is a Resume that runs until its context ends.
func blockUntilCancelled(ctx context.Context, _ *Job, _ call) error {
	<-ctx.Done()
	return ctx.Err()
}

func create(t *testing.T, ctx context.Context, reg *Registry) int64 {
	t.Helper()
	id, err := reg.Create(ctx, Record{Type: testType, Description: "BACKUP INTO 'nodelocal://1/x'", User: "root",
		Payload: json.RawMessage(`{"targets":["db"]}`)})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func wait(t *testing.T, ctx context.Context, reg *Registry, id int64, want State) Record {
	t.Helper()
	rec, err := reg.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != want {
		t.Fatalf("job %d ended %s (error %q), want %s", id, rec.State, rec.Error, want)
	}
	return rec
}

func waitState(t *testing.T, ctx context.Context, reg *Registry, id int64, want State) Record {
	t.Helper()
	rec, err := reg.WaitFor(ctx, id, func(r Record) bool { return r.State == want || r.State.Terminal() })
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != want {
		t.Fatalf("job %d is %s (error %q), want %s", id, rec.State, rec.Error, want)
	}
	return rec
}

func claimed(t *testing.T, ctx context.Context, n *node, id int64) bool {
	t.Helper()
	resp, err := n.cli.Get(ctx, n.reg.claimKey(id))
	if err != nil {
		t.Fatal(err)
	}
	return len(resp.Kvs) > 0
}

func TestCreateAdoptSucceed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	n := e.newNode(1, true, nil)
	s := newScript()
	s.resume = func(ctx context.Context, job *Job, c call) error {
		if err := job.SetProgress(ctx, 0.5, map[string]int{"spans_done": 3}); err != nil {
			return err
		}
		return job.SetResult(ctx, map[string]int{"rows": 10, "bytes": 2048})
	}
	n.start(e.ctx, s)

	id := create(t, e.ctx, n.reg)
	rec := wait(t, e.ctx, n.reg, id, StateSucceeded)
	if rec.Fraction != 1 || rec.Started.IsZero() || rec.Finished.IsZero() || rec.Created.IsZero() {
		t.Errorf("final record lacks fraction or times: %+v", rec)
	}
	if string(rec.Result) != `{"bytes":2048,"rows":10}` || string(rec.Progress) != `{"spans_done":3}` {
		t.Errorf("result %s, progress %s", rec.Result, rec.Progress)
	}
	if string(rec.Payload) != `{"targets":["db"]}` || rec.User != "root" || rec.Type != testType {
		t.Errorf("creation fields changed: %+v", rec)
	}
	if rec.ClaimNode != 0 || claimed(t, e.ctx, n, id) {
		t.Errorf("claim not released: claim node %d", rec.ClaimNode)
	}
	if resp, err := n.cli.Get(e.ctx, n.reg.activeKey(id)); err != nil || len(resp.Kvs) != 0 {
		t.Errorf("finished job still in the unfinished index: %v", err)
	}
	if resumes, reverts, _ := s.counts(id); resumes != 1 || reverts != 0 {
		t.Errorf("Resume ran %d times, OnFailOrCancel %d; want 1 and 0", resumes, reverts)
	}
}

// A client-only registry creates the job (as a detached statement would) and
// waits; another node runs it.
func TestDetachedCreateWait(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	client := e.newNode(0, false, nil)
	worker := e.newNode(2, true, nil)
	s := newScript()
	worker.start(e.ctx, s)
	client.reg.Start(e.ctx) // without a session: adopts nothing

	id := create(t, e.ctx, client.reg)
	wait(t, e.ctx, client.reg, id, StateSucceeded)
	if c := s.next(t, e.ctx); c.node != 2 {
		t.Errorf("job ran on node %d, want 2", c.node)
	}
}

func TestPauseResume(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	n := e.newNode(1, true, nil)
	s := newScript()
	var secondSaw json.RawMessage
	s.resume = func(ctx context.Context, job *Job, c call) error {
		if c.n == 1 {
			if err := job.SetProgress(ctx, 0.4, map[string]string{"checkpoint": "span-7"}); err != nil {
				return err
			}
			return blockUntilCancelled(ctx, job, c)
		}
		s.mu.Lock()
		secondSaw = job.Record().Progress
		s.mu.Unlock()
		return nil
	}
	n.start(e.ctx, s)
	id := create(t, e.ctx, n.reg)
	s.next(t, e.ctx)
	waitFraction(t, e.ctx, n.reg, id, 0.4)

	if err := n.reg.Pause(e.ctx, id); err != nil {
		t.Fatal(err)
	}
	rec := waitState(t, e.ctx, n.reg, id, StatePaused)
	if claimed(t, e.ctx, n, id) || rec.ClaimNode != 0 {
		t.Error("paused job still claimed")
	}
	if rec.Fraction != 0.4 {
		t.Errorf("paused job lost its fraction: %v", rec.Fraction)
	}
	if err := n.reg.Resume(e.ctx, id); err != nil {
		t.Fatal(err)
	}
	rec = wait(t, e.ctx, n.reg, id, StateSucceeded)
	if resumes, reverts, _ := s.counts(id); resumes != 2 || reverts != 0 {
		t.Errorf("Resume ran %d times, OnFailOrCancel %d; want 2 and 0", resumes, reverts)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if string(secondSaw) != `{"checkpoint":"span-7"}` {
		t.Errorf("second run saw progress %s", secondSaw)
	}
}

func waitFraction(t *testing.T, ctx context.Context, reg *Registry, id int64, f float64) {
	t.Helper()
	if _, err := reg.WaitFor(ctx, id, func(r Record) bool { return r.Fraction >= f }); err != nil {
		t.Fatal(err)
	}
}

func TestCancelRunning(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	n := e.newNode(1, true, nil)
	s := newScript()
	s.resume = blockUntilCancelled
	n.start(e.ctx, s)
	id := create(t, e.ctx, n.reg)
	s.next(t, e.ctx)

	if err := n.reg.Cancel(e.ctx, id); err != nil {
		t.Fatal(err)
	}
	rec := wait(t, e.ctx, n.reg, id, StateCanceled)
	resumes, reverts, _ := s.counts(id)
	if resumes != 1 || reverts != 1 {
		t.Errorf("Resume ran %d times, OnFailOrCancel %d; want 1 and 1", resumes, reverts)
	}
	s.mu.Lock()
	cause := s.causes[id][0]
	s.mu.Unlock()
	if !errors.Is(cause, ErrJobCanceled) {
		t.Errorf("OnFailOrCancel cause = %v, want ErrJobCanceled", cause)
	}
	if rec.Finished.IsZero() || claimed(t, e.ctx, n, id) {
		t.Errorf("canceled job not finished or still claimed: %+v", rec)
	}
}

// A job paused before any node runs it pauses at once; canceling it then
// reverts it on the node that adopts it, without ever calling Resume.
func TestCancelPaused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	n := e.newNode(1, true, nil)
	s := newScript()
	id := create(t, e.ctx, n.reg)
	if err := n.reg.Pause(e.ctx, id); err != nil {
		t.Fatal(err)
	}
	if rec, err := n.reg.Get(e.ctx, id); err != nil || rec.State != StatePaused {
		t.Fatalf("unclaimed job after Pause: %+v, %v; want paused", rec, err)
	}
	if err := n.reg.Cancel(e.ctx, id); err != nil {
		t.Fatal(err)
	}
	n.start(e.ctx, s)
	wait(t, e.ctx, n.reg, id, StateCanceled)
	if resumes, reverts, _ := s.counts(id); resumes != 0 || reverts != 1 {
		t.Errorf("Resume ran %d times, OnFailOrCancel %d; want 0 and 1", resumes, reverts)
	}
}

// A job paused while it runs ends in paused, and Cancel then reverts it.
func TestCancelAfterPauseWhileRunning(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	n := e.newNode(1, true, nil)
	s := newScript()
	s.resume = blockUntilCancelled
	n.start(e.ctx, s)
	id := create(t, e.ctx, n.reg)
	s.next(t, e.ctx)
	if err := n.reg.Pause(e.ctx, id); err != nil {
		t.Fatal(err)
	}
	waitState(t, e.ctx, n.reg, id, StatePaused)
	if err := n.reg.Cancel(e.ctx, id); err != nil {
		t.Fatal(err)
	}
	wait(t, e.ctx, n.reg, id, StateCanceled)
	if resumes, reverts, _ := s.counts(id); resumes != 1 || reverts != 1 {
		t.Errorf("Resume ran %d times, OnFailOrCancel %d; want 1 and 1", resumes, reverts)
	}
}

func TestRetryableThenSucceed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	n := e.newNode(1, true, nil) // budget 3
	s := newScript()
	s.resume = func(ctx context.Context, job *Job, c call) error {
		if c.n <= 3 {
			return MarkRetryable(fmt.Errorf("writing file %d: connection reset", c.n))
		}
		return nil
	}
	n.start(e.ctx, s)
	id := create(t, e.ctx, n.reg)
	wait(t, e.ctx, n.reg, id, StateSucceeded)
	if resumes, reverts, _ := s.counts(id); resumes != 4 || reverts != 0 {
		t.Errorf("Resume ran %d times, OnFailOrCancel %d; want 4 and 0", resumes, reverts)
	}
}

func TestRetryBudgetExhausted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	n := e.newNode(1, true, nil) // budget 3
	s := newScript()
	s.resume = func(ctx context.Context, job *Job, c call) error {
		return MarkRetryable(errors.New("connection reset"))
	}
	n.start(e.ctx, s)
	id := create(t, e.ctx, n.reg)
	rec := wait(t, e.ctx, n.reg, id, StateFailed)
	if want := "retry budget of 3 exhausted: connection reset"; rec.Error != want {
		t.Errorf("error %q, want %q", rec.Error, want)
	}
	if resumes, reverts, _ := s.counts(id); resumes != 4 || reverts != 1 {
		t.Errorf("Resume ran %d times, OnFailOrCancel %d; want 4 and 1", resumes, reverts)
	}
}

// Progress between errors resets the budget: six retryable errors with a
// budget of three still succeed when each run advances the fraction.
func TestRetryBudgetResetsOnProgress(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	n := e.newNode(1, true, nil) // budget 3
	s := newScript()
	s.resume = func(ctx context.Context, job *Job, c call) error {
		if c.n <= 6 {
			if err := job.SetProgress(ctx, float64(c.n)/10, nil); err != nil {
				return err
			}
			return MarkRetryable(errors.New("connection reset"))
		}
		return nil
	}
	n.start(e.ctx, s)
	id := create(t, e.ctx, n.reg)
	wait(t, e.ctx, n.reg, id, StateSucceeded)
	if resumes, _, _ := s.counts(id); resumes != 7 {
		t.Errorf("Resume ran %d times, want 7", resumes)
	}
}

func TestPermanentError(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	n := e.newNode(1, true, nil)
	s := newScript()
	s.resume = func(ctx context.Context, job *Job, c call) error {
		return fmt.Errorf("resolving destination: %w", errors.New("bucket does not exist"))
	}
	n.start(e.ctx, s)
	id := create(t, e.ctx, n.reg)
	rec := wait(t, e.ctx, n.reg, id, StateFailed)
	if want := "resolving destination: bucket does not exist"; rec.Error != want {
		t.Errorf("error %q, want %q", rec.Error, want)
	}
	resumes, reverts, _ := s.counts(id)
	if resumes != 1 || reverts != 1 {
		t.Errorf("Resume ran %d times, OnFailOrCancel %d; want 1 and 1", resumes, reverts)
	}
	s.mu.Lock()
	cause := s.causes[id][0]
	s.mu.Unlock()
	if cause.Error() != rec.Error || errors.Is(cause, ErrJobCanceled) {
		t.Errorf("OnFailOrCancel cause = %v", cause)
	}
}

func TestPanicFailsJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	n := e.newNode(1, true, nil)
	s := newScript()
	s.resume = func(ctx context.Context, job *Job, c call) error { panic("boom") }
	n.start(e.ctx, s)
	id := create(t, e.ctx, n.reg)
	rec := wait(t, e.ctx, n.reg, id, StateFailed)
	if !strings.HasPrefix(rec.Error, "panic in resumer: boom") {
		t.Errorf("error %q", rec.Error)
	}
}

func TestRevertFailed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	n := e.newNode(1, true, nil)
	s := newScript()
	s.resume = func(ctx context.Context, job *Job, c call) error { return errors.New("disk full") }
	s.revert = func(ctx context.Context, job *Job, cause error) error {
		return errors.New("deleting lock file: permission denied")
	}
	n.start(e.ctx, s)
	id := create(t, e.ctx, n.reg)
	rec := wait(t, e.ctx, n.reg, id, StateRevertFailed)
	if want := "disk full; reverting: deleting lock file: permission denied"; rec.Error != want {
		t.Errorf("error %q, want %q", rec.Error, want)
	}
}

func TestUnknownResumerFailsJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	n := e.newNode(1, true, nil)
	n.reg.Register(testType, func(rec Record) (Resumer, error) { return nil, errors.New("decoding payload: bad spec") })
	n.reg.Start(e.ctx)
	id := create(t, e.ctx, n.reg)
	rec := wait(t, e.ctx, n.reg, id, StateFailed)
	if want := "building resumer: decoding payload: bad spec"; rec.Error != want {
		t.Errorf("error %q, want %q", rec.Error, want)
	}
}

// Node A's session ends while it runs a job: A stops the resumer, node B
// adopts the job and finishes it from A's progress; A's handle can no
// longer write.
func TestNodeDeathAdoption(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.newNode(1, true, nil)
	b := e.newNode(2, true, nil)
	s := newScript()
	var mu sync.Mutex
	var aJob *Job
	aStopped := make(chan error, 1)
	var bSaw json.RawMessage
	s.resume = func(ctx context.Context, job *Job, c call) error {
		if c.node == 1 {
			mu.Lock()
			aJob = job
			mu.Unlock()
			// The session may end while SetProgress waits for its reply,
			// after the write was applied: report every return.
			defer func() {
				select {
				case aStopped <- ctx.Err():
				default:
				}
			}()
			if err := job.SetProgress(ctx, 0.3, map[string]int{"done": 3}); err != nil {
				return err
			}
			return blockUntilCancelled(ctx, job, c)
		}
		mu.Lock()
		bSaw = job.Record().Progress
		mu.Unlock()
		return nil
	}
	a.start(e.ctx, s)
	id := create(t, e.ctx, a.reg)
	if c := s.next(t, e.ctx); c.node != 1 {
		t.Fatalf("first run on node %d, want 1", c.node)
	}
	waitFraction(t, e.ctx, a.reg, id, 0.3)
	b.start(e.ctx, s)

	if err := a.sess.Close(); err != nil { // revokes A's lease
		t.Fatal(err)
	}
	select {
	case err := <-aStopped:
		if err == nil {
			t.Error("node A's resumer returned with its context live")
		}
	case <-e.ctx.Done():
		rec, err := b.reg.Get(context.WithoutCancel(e.ctx), id)
		t.Fatalf("node A's resumer was not stopped when its session ended; job: %+v, %v", rec, err)
	}
	rec := wait(t, e.ctx, b.reg, id, StateSucceeded)
	if c := s.next(t, e.ctx); c.node != 2 {
		t.Errorf("second run on node %d, want 2", c.node)
	}
	mu.Lock()
	stale, saw := aJob, bSaw
	mu.Unlock()
	if string(saw) != `{"done":3}` {
		t.Errorf("node B saw progress %s", saw)
	}
	if rec.Error != "" {
		t.Errorf("error %q", rec.Error)
	}
	if err := stale.SetProgress(e.ctx, 0.9, nil); !errors.Is(err, ErrClaimLost) {
		t.Errorf("write through a lost claim: %v, want ErrClaimLost", err)
	}
}

// Stop hands running jobs to another node without failing or pausing them.
func TestStopHandsOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.newNode(1, true, nil)
	b := e.newNode(2, true, nil)
	s := newScript()
	s.resume = func(ctx context.Context, job *Job, c call) error {
		if c.node == 1 {
			return blockUntilCancelled(ctx, job, c)
		}
		return nil
	}
	a.start(e.ctx, s)
	id := create(t, e.ctx, a.reg)
	s.next(t, e.ctx)
	b.start(e.ctx, s)

	// Record every state the job passes through from here on.
	var states []State
	seen := make(chan struct{})
	go func() {
		defer close(seen)
		b.reg.WaitFor(e.ctx, id, func(r Record) bool {
			states = append(states, r.State)
			return r.State.Terminal()
		})
	}()
	a.reg.Stop()
	rec := wait(t, e.ctx, b.reg, id, StateSucceeded)
	<-seen
	for _, st := range states {
		if st != StateRunning && st != StateSucceeded {
			t.Errorf("job passed through %s during hand-off (states %v)", st, states)
		}
	}
	if rec.Error != "" || rec.Retries != 0 {
		t.Errorf("hand-off left error %q, retries %d", rec.Error, rec.Retries)
	}
	if c := s.next(t, e.ctx); c.node != 2 {
		t.Errorf("second run on node %d, want 2", c.node)
	}
}

func TestCanRunFalseNeverClaims(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	asked := make(chan int64, 100)
	a := e.newNode(1, true, func(o *Options) {
		o.CanRun = func(rec Record) bool {
			select {
			case asked <- rec.ID:
			default:
			}
			return false
		}
	})
	b := e.newNode(2, true, func(o *Options) {
		o.CanRun = func(rec Record) bool { return rec.ExecutionLocality == "region=us-east1" }
	})
	s := newScript()
	a.start(e.ctx, s)
	id, err := a.reg.Create(e.ctx, Record{Type: testType, ExecutionLocality: "region=us-east1"})
	if err != nil {
		t.Fatal(err)
	}
	// Node A considers the job more than once (watch, then scans) and
	// declines every time.
	for range 3 {
		select {
		case got := <-asked:
			if got != id {
				t.Fatalf("asked about job %d", got)
			}
		case <-e.ctx.Done():
			t.Fatal("node A never considered the job")
		}
	}
	if rec, err := a.reg.Get(e.ctx, id); err != nil || rec.State != StatePending || claimed(t, e.ctx, a, id) {
		t.Fatalf("job after node A declined: %+v, %v", rec, err)
	}
	b.start(e.ctx, s)
	wait(t, e.ctx, a.reg, id, StateSucceeded)
	if c := s.next(t, e.ctx); c.node != 2 {
		t.Errorf("job ran on node %d, want 2", c.node)
	}
}

// Three nodes race to adopt the same jobs; each job runs exactly once.
func TestConcurrentAdoptRunsOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := newScript()
	s.resume = func(ctx context.Context, job *Job, c call) error {
		for i := 1; i <= 3; i++ {
			if err := job.SetProgress(ctx, float64(i)/4, nil); err != nil {
				return err
			}
		}
		return nil
	}
	creator := e.newNode(0, false, nil)
	const jobs = 8
	var ids []int64
	for range jobs {
		ids = append(ids, create(t, e.ctx, creator.reg))
	}
	for i := int32(1); i <= 3; i++ {
		e.newNode(i, true, nil).start(e.ctx, s)
	}
	for _, id := range ids {
		wait(t, e.ctx, creator.reg, id, StateSucceeded)
		if resumes, _, maxActive := s.counts(id); resumes != 1 || maxActive != 1 {
			t.Errorf("job %d: Resume ran %d times, at most %d at once; want 1 and 1", id, resumes, maxActive)
		}
	}
}

func TestInvalidTransitions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	n := e.newNode(1, true, nil)
	id := create(t, e.ctx, n.reg)

	err := n.reg.Resume(e.ctx, id)
	if want := fmt.Sprintf("cannot resume job %d: its state is pending", id); err == nil || err.Error() != want {
		t.Errorf("Resume of pending job: %v, want %q", err, want)
	}
	if !errors.Is(err, ErrInvalidTransition) {
		t.Errorf("%v does not match ErrInvalidTransition", err)
	}

	n.start(e.ctx, newScript())
	wait(t, e.ctx, n.reg, id, StateSucceeded)
	for op, fn := range map[string]func(context.Context, int64) error{
		"pause": n.reg.Pause, "resume": n.reg.Resume, "cancel": n.reg.Cancel,
	} {
		err := fn(e.ctx, id)
		if want := fmt.Sprintf("cannot %s job %d: its state is succeeded", op, id); err == nil || err.Error() != want {
			t.Errorf("%s of succeeded job: %v, want %q", op, err, want)
		}
	}
	if _, err := n.reg.Get(e.ctx, 999); !errors.Is(err, ErrJobNotFound) {
		t.Errorf("Get of missing job: %v", err)
	}
	if err := n.reg.Pause(e.ctx, 999); !errors.Is(err, ErrJobNotFound) {
		t.Errorf("Pause of missing job: %v", err)
	}
	if _, err := n.reg.Wait(e.ctx, 999); !errors.Is(err, ErrJobNotFound) {
		t.Errorf("Wait of missing job: %v", err)
	}
}

// Update keeps the registry's fields out of the resumer's reach and never
// moves the fraction backwards.
func TestUpdateGuardsFields(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	n := e.newNode(1, true, nil)
	s := newScript()
	var got Record
	s.resume = func(ctx context.Context, job *Job, c call) error {
		if err := job.SetProgress(ctx, 0.7, nil); err != nil {
			return err
		}
		if err := job.SetProgress(ctx, 0.2, nil); err != nil {
			return err
		}
		err := job.Update(ctx, func(r *Record) error {
			r.State, r.Error, r.Payload, r.ID = StateFailed, "nope", json.RawMessage(`{}`), 77
			r.RunningStatus = "exporting"
			return nil
		})
		s.mu.Lock()
		got = job.Record()
		s.mu.Unlock()
		return err
	}
	n.start(e.ctx, s)
	id := create(t, e.ctx, n.reg)
	wait(t, e.ctx, n.reg, id, StateSucceeded)
	s.mu.Lock()
	defer s.mu.Unlock()
	if got.State != StateRunning || got.Error != "" || string(got.Payload) != `{"targets":["db"]}` || got.ID != id {
		t.Errorf("Update changed registry fields: %+v", got)
	}
	if got.Fraction != 0.7 || got.RunningStatus != "exporting" {
		t.Errorf("fraction %v, status %q; want 0.7, exporting", got.Fraction, got.RunningStatus)
	}
}

func TestListOrderedAndPaged(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.newNode(0, false, nil)
	b := e.newNode(0, false, nil)
	a.reg.pageSize = 2
	var want []int64
	for i := range 7 {
		reg := a.reg
		if i%2 == 1 {
			reg = b.reg
		}
		want = append(want, create(t, e.ctx, reg))
	}
	for i := 1; i < len(want); i++ {
		if want[i] <= want[i-1] {
			t.Fatalf("ids not increasing: %v", want)
		}
	}
	recs, err := a.reg.List(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for _, r := range recs {
		got = append(got, r.ID)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("List gave %v, want %v", got, want)
	}
}

// Concurrent creators never get the same ID.
func TestCreateUniqueIDs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	regs := []*Registry{e.newNode(0, false, nil).reg, e.newNode(0, false, nil).reg}
	var mu sync.Mutex
	seen := map[int64]bool{}
	var wg sync.WaitGroup
	for _, reg := range regs {
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 5 {
					id, err := reg.Create(e.ctx, Record{Type: testType})
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					if seen[id] {
						t.Errorf("id %d allocated twice", id)
					}
					seen[id] = true
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if len(seen) != 20 {
		t.Errorf("%d distinct ids, want 20", len(seen))
	}
}
