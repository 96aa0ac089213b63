package server_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/cairnbackup/cairn/core/backup"
	"github.com/cairnbackup/cairn/core/cluster"
	"github.com/cairnbackup/cairn/core/fingerprint"
	"github.com/cairnbackup/cairn/core/hlc"
	"github.com/cairnbackup/cairn/core/jobs"
	"github.com/cairnbackup/cairn/core/keys"
	"github.com/cairnbackup/cairn/core/server"
	"github.com/cairnbackup/cairn/core/workload/movr"
)

// churn rewrites every row of database name visible now: every third row
// is deleted, the others get a new value. Old versions are left behind for
// GC.
func (tc *testCluster) churn(name string) {
	tc.t.Helper()
	ctx := context.Background()
	ids, err := tc.TableIDs(ctx, name)
	if err != nil {
		tc.t.Fatal(err)
	}
	gw := tc.Gateway().Node
	for _, id := range ids {
		var ops []cluster.Op
		i := 0
		err := gw.Scan(ctx, keys.TableSpan(id), gw.Clock.Now(), func(k, v []byte) error {
			op := cluster.Op{Key: append([]byte(nil), k...)}
			if i++; i%3 == 0 {
				op.Delete = true
			} else {
				op.Value = append(append([]byte(nil), v...), "'"...)
			}
			ops = append(ops, op)
			return nil
		})
		if err != nil {
			tc.t.Fatal(err)
		}
		for len(ops) > 0 {
			n := min(len(ops), 500)
			if err := gw.Write(ctx, ops[:n]); err != nil {
				tc.t.Fatal(err)
			}
			ops = ops[n:]
		}
	}
}

func (tc *testCluster) fingerprint(name string, ts hlc.Timestamp) fingerprint.Fingerprint {
	tc.t.Helper()
	fp, err := tc.Fingerprint(context.Background(), name, ts)
	if err != nil {
		tc.t.Fatal(err)
	}
	return fp
}

func (tc *testCluster) protections() map[string]cluster.ProtectedTimestamp {
	tc.t.Helper()
	recs, err := tc.Gateway().Node.Meta.ProtectedTimestamps(context.Background())
	if err != nil {
		tc.t.Fatal(err)
	}
	out := map[string]cluster.ProtectedTimestamp{}
	for _, r := range recs {
		out[r.ID] = r
	}
	return out
}

func (tc *testCluster) gc() int64 {
	tc.t.Helper()
	st, err := tc.RunGC(context.Background(), 0)
	if err != nil {
		tc.t.Fatal(err)
	}
	return st.Deleted
}

func (tc *testCluster) endTimeOf(id int64) hlc.Timestamp {
	tc.t.Helper()
	rec, err := tc.Gateway().Registry.Get(context.Background(), id)
	if err != nil {
		tc.t.Fatal(err)
	}
	var spec backup.Spec
	decodeJSON(tc.t, rec.Payload, &spec)
	return spec.EndTime
}

// TestGCHonoursPausedBackup pauses a backup half way, churns the data, and
// runs GC at TTL 0 on every node: GC removes old versions of another
// database but leaves the backup's view at its end time intact, so the
// resumed backup restores to exactly the source at its end time. The
// protection is released when the backup succeeds and when one is
// cancelled; and without it, the same GC destroys the end time's view,
// which is what makes this test able to fail.
func TestGCHonoursPausedBackup(t *testing.T) {
	var cur atomic.Pointer[gate]
	hook := func(ctx context.Context, jobID int64, idx int) error {
		if g := cur.Load(); g != nil {
			return g.hook(ctx, jobID, idx)
		}
		return nil
	}
	g := newGate(3)
	cur.Store(g)
	tc := start(t, 3, backup.Knobs{BeforeExportSpan: hook}, 600)
	ctx := context.Background()
	otherIDs, err := tc.CreateMovr(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := movr.Load(ctx, server.KV{Node: tc.Gateway().Node}, otherIDs, movr.Config{Seed: 9, Rows: 200, Concurrency: 2}, nil); err != nil {
		t.Fatal(err)
	}

	id := tc.exec("BACKUP DATABASE movr INTO 'nodelocal://1/gc' WITH detached").JobID
	<-g.reached
	tc.wait(id, func(r jobs.Record) bool {
		var prog backup.Progress
		if len(r.Progress) > 0 {
			decodeJSON(t, r.Progress, &prog)
		}
		return prog.DoneSpans >= 3
	})
	tc.exec(fmt.Sprintf("PAUSE JOB %d", id))
	tc.wait(id, func(r jobs.Record) bool { return r.State == jobs.StatePaused })
	end := tc.endTimeOf(id)
	rec, ok := tc.protections()[backup.ProtectionID(id)]
	if !ok || rec.Timestamp != end || rec.JobID != id {
		t.Fatalf("paused backup's protection: %+v (found %v), want one at its end time %s", rec, ok, end)
	}

	atEnd := tc.fingerprint("movr", end)
	beforeChurn := tc.Gateway().Node.Clock.Now()
	otherBefore := tc.fingerprint("other", beforeChurn)
	tc.churn("movr")
	tc.churn("other")
	if tc.fingerprint("movr", tc.Gateway().Node.Clock.Now()) == atEnd {
		t.Fatal("churning did not change movr")
	}
	if d := tc.gc(); d == 0 {
		t.Fatal("GC removed nothing")
	}
	if got := tc.fingerprint("other", beforeChurn); got == otherBefore {
		t.Fatalf("GC left the unprotected database's old versions readable at %s", beforeChurn)
	}
	if got := tc.fingerprint("movr", end); got != atEnd {
		t.Fatalf("GC changed the paused backup's data at %s: %s, was %s", end, got, atEnd)
	}

	close(g.release)
	tc.exec(fmt.Sprintf("RESUME JOB %d", id))
	if r := tc.wait(id, func(r jobs.Record) bool { return r.State.Terminal() }); r.State != jobs.StateSucceeded {
		t.Fatalf("backup ended %s: %s", r.State, r.Error)
	}
	if _, ok := tc.protections()[backup.ProtectionID(id)]; ok {
		t.Fatal("the succeeded backup's protection is still there")
	}
	tc.exec("RESTORE DATABASE movr FROM LATEST IN 'nodelocal://1/gc' WITH new_db_name = 'movr_gc'")
	if got := tc.fingerprint("movr_gc", tc.Gateway().Node.Clock.Now()); got != atEnd || got.Rows == 0 {
		t.Fatalf("restored %s, source at %s was %s", got, end, atEnd)
	}

	// A second backup held mid-run: released by hand, GC destroys what it
	// would read (the negative control); protected again, a cancel
	// releases it.
	g2 := newGate(1)
	cur.Store(g2)
	id2 := tc.exec("BACKUP DATABASE movr INTO 'nodelocal://1/gc2' WITH detached").JobID
	<-g2.reached
	end2 := tc.endTimeOf(id2)
	rec2, ok := tc.protections()[backup.ProtectionID(id2)]
	if !ok || rec2.Timestamp != end2 {
		t.Fatalf("running backup's protection: %+v (found %v), want one at %s", rec2, ok, end2)
	}
	atEnd2 := tc.fingerprint("movr", end2)
	tc.churn("movr")
	meta := tc.Gateway().Node.Meta
	if err := meta.Release(ctx, rec2.ID); err != nil {
		t.Fatal(err)
	}
	if d := tc.gc(); d == 0 {
		t.Fatal("GC without the protection removed nothing")
	}
	if got := tc.fingerprint("movr", end2); got == atEnd2 {
		t.Fatalf("without its protection, GC at TTL 0 left the backup's end time %s readable; the test cannot fail", end2)
	}
	if err := meta.Protect(ctx, rec2); err != nil {
		t.Fatal(err)
	}
	tc.exec(fmt.Sprintf("CANCEL JOB %d", id2))
	if r := tc.wait(id2, func(r jobs.Record) bool { return r.State.Terminal() }); r.State != jobs.StateCanceled {
		t.Fatalf("second backup ended %s, want canceled", r.State)
	}
	close(g2.release)
	if left := tc.protections(); len(left) != 0 {
		t.Fatalf("protections left after every backup ended: %+v", left)
	}
}
