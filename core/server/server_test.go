package server_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/core/backup"
	"github.com/cairnbackup/cairn/core/cluster"
	"github.com/cairnbackup/cairn/core/hlc"
	"github.com/cairnbackup/cairn/core/jobs"
	"github.com/cairnbackup/cairn/core/server"
	"github.com/cairnbackup/cairn/core/workload/movr"
)

type testCluster struct {
	*server.Server
	t     *testing.T
	ids   map[string]uint32
	stats movr.Stats
}

func start(t *testing.T, nodes int, knobs backup.Knobs, rows int) *testCluster {
	t.Helper()
	ctx := context.Background()
	srv, err := server.StartLocal(ctx, server.Config{
		Dir: t.TempDir(), Nodes: nodes, RegionOf: movr.RegionOfKey, AdoptInterval: 100 * time.Millisecond,
		CheckpointEvery: time.Nanosecond, TargetFileSize: 64 << 10, Knobs: knobs,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	tc := &testCluster{Server: srv, t: t}
	if rows > 0 {
		tc.ids, err = srv.CreateMovr(ctx, "movr")
		if err != nil {
			t.Fatal(err)
		}
		tc.stats, err = movr.Load(ctx, server.KV{Node: srv.Gateway().Node}, tc.ids, movr.Config{Seed: 7, Rows: rows, Concurrency: 4}, nil)
		if err != nil {
			t.Fatal(err)
		}
	}
	return tc
}

func (tc *testCluster) exec(stmt string) *server.Result {
	tc.t.Helper()
	res, err := tc.Exec(context.Background(), stmt, server.ExecOptions{})
	if err != nil {
		tc.t.Fatalf("%s: %v", stmt, err)
	}
	return res
}

func (tc *testCluster) execErr(stmt string, opts server.ExecOptions) error {
	tc.t.Helper()
	_, err := tc.Exec(context.Background(), stmt, opts)
	if err == nil {
		tc.t.Fatalf("%s: want an error, got none", stmt)
	}
	return err
}

func (tc *testCluster) wait(id int64, cond func(jobs.Record) bool) jobs.Record {
	tc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rec, err := tc.Gateway().Registry.WaitFor(ctx, id, cond)
	if err != nil {
		tc.t.Fatalf("waiting for job %d: %v", id, err)
	}
	return rec
}

func (tc *testCluster) extern(node int32, rel string) string {
	return filepath.Join(tc.Node(node).Node.ExternalIODir(), rel)
}

// endTime reads a backup's end time from SHOW BACKUP.
func (tc *testCluster) endTime(uri string) hlc.Timestamp {
	tc.t.Helper()
	res := tc.exec(fmt.Sprintf("SHOW BACKUP FROM LATEST IN '%s'", uri))
	ts, err := hlc.Parse(res.Rows[0][5])
	if err != nil {
		tc.t.Fatal(err)
	}
	return ts
}

func (tc *testCluster) assertRestoredEqual(uri, restored string) {
	tc.t.Helper()
	end := tc.endTime(uri)
	tc.exec(fmt.Sprintf("RESTORE DATABASE movr FROM LATEST IN '%s' WITH new_db_name = '%s'", uri, restored))
	ctx := context.Background()
	src, err := tc.Fingerprint(ctx, "movr", end)
	if err != nil {
		tc.t.Fatal(err)
	}
	dst, err := tc.Fingerprint(ctx, restored, tc.Gateway().Node.Clock.Now())
	if err != nil {
		tc.t.Fatal(err)
	}
	if src != dst || src.Rows == 0 {
		tc.t.Fatalf("restored %s = %s, source at %s = %s", restored, dst, end, src)
	}
}

// TestBackupUnderWritesRestoresExactly backs up movr on nine nodes while a
// workload writes, and checks the restore equals the source at the
// backup's end time, and differs from the source now.
func TestBackupUnderWritesRestoresExactly(t *testing.T) {
	tc := start(t, 9, backup.Knobs{}, 3000)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var runStats movr.RunStats
	var runErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		runStats, runErr = movr.Run(ctx, server.KV{Node: tc.Nodes[4].Node}, tc.ids, movr.RunConfig{Seed: 8, LoadSeed: 7, Concurrency: 3, LoadedRows: tc.stats.PerTable})
	}()
	// Let the workload get going, so writes race the backup.
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if fp, _ := tc.Fingerprint(context.Background(), "movr", tc.Gateway().Node.Clock.Now()); fp.Rows != int64(3000) {
			break
		}
	}
	tc.exec("BACKUP DATABASE movr INTO 'nodelocal://1/under-writes'")
	// More writes after the backup, so "now" differs from the end time.
	before := tc.Gateway().Node.Clock.Now()
	for {
		fp1, _ := tc.Fingerprint(context.Background(), "movr", before)
		fp2, _ := tc.Fingerprint(context.Background(), "movr", tc.Gateway().Node.Clock.Now())
		if fp1 != fp2 {
			break
		}
	}
	cancel()
	wg.Wait()
	if runErr != nil {
		t.Fatal(runErr)
	}
	if runStats.Ops() == 0 {
		t.Fatal("the workload wrote nothing")
	}
	tc.assertRestoredEqual("nodelocal://1/under-writes", "movr_restored")
	now, _ := tc.Fingerprint(context.Background(), "movr", tc.Gateway().Node.Clock.Now())
	restored, _ := tc.Fingerprint(context.Background(), "movr_restored", tc.Gateway().Node.Clock.Now())
	if now == restored {
		t.Fatal("the source did not change after the backup; the test proves nothing")
	}
	res := tc.exec("SHOW BACKUPS IN 'nodelocal://1/under-writes'")
	if len(res.Rows) != 1 {
		t.Fatalf("SHOW BACKUPS: %v", res.Rows)
	}
}

// gate holds up the processors: spans (or files) with index >= after wait
// until release is closed.
type gate struct {
	after   int
	release chan struct{}
	mu      sync.Mutex
	counts  map[int]int
	reached chan struct{}
	once    sync.Once
}

func newGate(after int) *gate {
	return &gate{after: after, release: make(chan struct{}), counts: map[int]int{}, reached: make(chan struct{})}
}

func (g *gate) hook(ctx context.Context, jobID int64, idx int) error {
	g.mu.Lock()
	g.counts[idx]++
	g.mu.Unlock()
	if idx < g.after {
		return nil
	}
	g.once.Do(func() { close(g.reached) })
	select {
	case <-g.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gate) count(idx int) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.counts[idx]
}

func TestPauseResumeFinishesFromCheckpoint(t *testing.T) {
	g := newGate(6)
	tc := start(t, 3, backup.Knobs{BeforeExportSpan: g.hook}, 1500)
	res := tc.exec("BACKUP DATABASE movr INTO 'nodelocal://1/pause' WITH detached")
	id := res.JobID
	<-g.reached
	// Wait until the spans before the gate are in a checkpoint.
	var prog backup.Progress
	tc.wait(id, func(r jobs.Record) bool {
		prog = backup.Progress{}
		if len(r.Progress) > 0 {
			decodeJSON(t, r.Progress, &prog)
		}
		return prog.DoneSpans >= 6
	})
	tc.exec(fmt.Sprintf("PAUSE JOB %d", id))
	rec := tc.wait(id, func(r jobs.Record) bool { return r.State == jobs.StatePaused })
	if rec.Fraction <= 0 {
		t.Fatalf("paused job shows no progress: %+v", rec)
	}
	shown := tc.exec(fmt.Sprintf("SHOW JOB %d", id))
	if shown.Rows[0][2] != "paused" {
		t.Fatalf("SHOW JOB: %v", shown.Rows)
	}
	close(g.release)
	tc.exec(fmt.Sprintf("RESUME JOB %d", id))
	rec = tc.wait(id, func(r jobs.Record) bool { return r.State.Terminal() })
	if rec.State != jobs.StateSucceeded {
		t.Fatalf("job ended %s: %s", rec.State, rec.Error)
	}
	// Spans finished before the pause were not exported again.
	for i := 0; i < 6; i++ {
		if c := g.count(i); c != 1 {
			t.Errorf("span %d was exported %d times, want 1 (it was checkpointed before the pause)", i, c)
		}
	}
	tc.assertRestoredEqual("nodelocal://1/pause", "movr_pause")
}

func TestCancelReleasesLockAndLeavesNoBackup(t *testing.T) {
	g := newGate(3)
	tc := start(t, 3, backup.Knobs{BeforeExportSpan: g.hook}, 600)
	res := tc.exec("BACKUP DATABASE movr INTO 'nodelocal://1/cancel' WITH detached")
	<-g.reached
	tc.exec(fmt.Sprintf("CANCEL JOB %d", res.JobID))
	rec := tc.wait(res.JobID, func(r jobs.Record) bool { return r.State.Terminal() })
	if rec.State != jobs.StateCanceled {
		t.Fatalf("job ended %s, want canceled", rec.State)
	}
	close(g.release)
	if rows := tc.exec("SHOW BACKUPS IN 'nodelocal://1/cancel'").Rows; len(rows) != 0 {
		t.Fatalf("a cancelled backup is listed: %v", rows)
	}
	// No lock and no data files remain.
	var left []string
	filepath.Walk(tc.extern(1, "cancel"), func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && !strings.Contains(p, ".cairn-tmp") {
			left = append(left, p)
		}
		return nil
	})
	for _, p := range left {
		if strings.Contains(p, "BACKUP-LOCK") || strings.HasSuffix(p, ".sst") {
			t.Errorf("left behind: %s", p)
		}
	}
	// The collection takes a new backup afterwards.
	tc.exec("BACKUP DATABASE movr INTO 'nodelocal://1/cancel'")
	if rows := tc.exec("SHOW BACKUPS IN 'nodelocal://1/cancel'").Rows; len(rows) != 1 {
		t.Fatalf("SHOW BACKUPS after a new backup: %v", rows)
	}
}

func TestSecondBackupIntoSameSubdirIsRefusedByLock(t *testing.T) {
	g := newGate(1)
	tc := start(t, 3, backup.Knobs{BeforeExportSpan: g.hook}, 300)
	first := tc.exec("BACKUP DATABASE movr INTO '2026/01/02-030405.00' IN 'nodelocal://1/lock' WITH detached")
	<-g.reached
	err := tc.execErr("BACKUP DATABASE movr INTO '2026/01/02-030405.00' IN 'nodelocal://1/lock'", server.ExecOptions{})
	if !strings.Contains(err.Error(), fmt.Sprintf("job %d", first.JobID)) || !strings.Contains(err.Error(), "lock") {
		t.Fatalf("second backup: %v; want a lock error naming job %d", err, first.JobID)
	}
	close(g.release)
	rec := tc.wait(first.JobID, func(r jobs.Record) bool { return r.State.Terminal() })
	if rec.State != jobs.StateSucceeded {
		t.Fatalf("first backup ended %s: %s", rec.State, rec.Error)
	}
	// With the first finished, the subdirectory holds a backup: refused too.
	err = tc.execErr("BACKUP DATABASE movr INTO '2026/01/02-030405.00' IN 'nodelocal://1/lock'", server.ExecOptions{})
	if !strings.Contains(err.Error(), "already") {
		t.Fatalf("backup into a finished layer: %v", err)
	}
}

func TestRestoreRefusesDamagedBackups(t *testing.T) {
	tc := start(t, 3, backup.Knobs{}, 500)
	tc.exec("BACKUP DATABASE movr INTO 'nodelocal://1/damaged'")
	subdir := tc.exec("SHOW BACKUPS IN 'nodelocal://1/damaged'").Rows[0][0]
	layer := tc.extern(1, filepath.Join("damaged", subdir))
	ssts, _ := filepath.Glob(filepath.Join(layer, "data", "*.sst"))
	if len(ssts) < 3 {
		t.Fatalf("want several data files, got %v", ssts)
	}
	restore := func(name string) error {
		return tc.execErr(fmt.Sprintf("RESTORE DATABASE movr FROM LATEST IN 'nodelocal://1/damaged' WITH new_db_name = '%s'", name), server.ExecOptions{})
	}
	assertNamed := func(err error, file string) {
		t.Helper()
		if !strings.Contains(err.Error(), file) {
			t.Fatalf("error does not name %s: %v", file, err)
		}
	}
	assertNoDB := func(name string) {
		t.Helper()
		if _, err := tc.Gateway().Node.Meta.Database(context.Background(), name); !errors.Is(err, cluster.ErrNotFound) {
			t.Fatalf("database %s exists after a failed restore: %v", name, err)
		}
	}

	// A corrupted data file: same size, one byte flipped.
	b, _ := os.ReadFile(ssts[0])
	orig := append([]byte(nil), b...)
	b[len(b)/2] ^= 0xff
	os.WriteFile(ssts[0], b, 0o644)
	err := restore("r1")
	assertNamed(err, filepath.Base(ssts[0]))
	if !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("corrupted file: %v", err)
	}
	assertNoDB("r1")
	os.WriteFile(ssts[0], orig, 0o644)

	// A missing data file.
	moved := ssts[1] + ".away"
	os.Rename(ssts[1], moved)
	err = restore("r2")
	assertNamed(err, filepath.Base(ssts[1]))
	assertNoDB("r2")
	os.Rename(moved, ssts[1])

	// A corrupted manifest.
	mpath := filepath.Join(layer, "BACKUP_MANIFEST")
	mb, _ := os.ReadFile(mpath)
	morig := append([]byte(nil), mb...)
	mb[len(mb)-3] ^= 0x01
	os.WriteFile(mpath, mb, 0o644)
	err = restore("r3")
	assertNamed(err, "BACKUP_MANIFEST")
	assertNoDB("r3")
	os.WriteFile(mpath, morig, 0o644)

	// A layer without a manifest.
	os.Rename(mpath, mpath+".away")
	err = restore("r4")
	assertNamed(err, "BACKUP_MANIFEST")
	assertNoDB("r4")
	if rows := tc.exec("SHOW BACKUPS IN 'nodelocal://1/damaged'").Rows; len(rows) != 0 {
		t.Fatalf("a layer without a manifest is listed: %v", rows)
	}
	os.Rename(mpath+".away", mpath)

	// Intact again: the restore works.
	tc.assertRestoredEqual("nodelocal://1/damaged", "r5")
}

func TestPrivilegesAndUnsupportedOptions(t *testing.T) {
	tc := start(t, 3, backup.Knobs{}, 100)
	ctx := context.Background()
	meta := tc.Gateway().Node.Meta
	if err := meta.PutUser(ctx, cluster.User{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	err := tc.execErr("BACKUP DATABASE movr INTO 'nodelocal://1/priv'", server.ExecOptions{User: "alice"})
	if !strings.Contains(err.Error(), "alice") || !strings.Contains(err.Error(), "BACKUP privilege") {
		t.Fatalf("unprivileged backup: %v", err)
	}
	jobsBefore := len(tc.exec("SHOW JOBS").Rows)
	if err := meta.PutUser(ctx, cluster.User{Name: "alice", Privileges: []string{cluster.PrivBackup}}); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.Exec(ctx, "BACKUP DATABASE movr INTO 'nodelocal://1/priv'", server.ExecOptions{User: "alice"}); err != nil {
		t.Fatalf("granted backup: %v", err)
	}
	err = tc.execErr("RESTORE DATABASE movr FROM LATEST IN 'nodelocal://1/priv' WITH new_db_name = 'x'", server.ExecOptions{User: "alice"})
	if !strings.Contains(err.Error(), "RESTORE privilege") {
		t.Fatalf("unprivileged restore: %v", err)
	}
	if got := len(tc.exec("SHOW JOBS").Rows); got != jobsBefore+1 {
		t.Fatalf("refused statements created jobs: %d jobs, want %d", got, jobsBefore+1)
	}
	for stmt, want := range map[string]string{
		"BACKUP DATABASE movr INTO 'nodelocal://1/x' WITH revision_history":                 "revision_history",
		"BACKUP DATABASE movr INTO LATEST IN 'nodelocal://1/x'":                             "incremental",
		"BACKUP DATABASE movr INTO 'nodelocal://1/x' WITH encryption_passphrase = 'p'":      "encrypted",
		"BACKUP DATABASE movr INTO 'nodelocal://1/x' WITH execution locality = 'region=a'":  "execution locality",
		"BACKUP DATABASE nope INTO 'nodelocal://1/x'":                                       `database "nope" does not exist`,
		"BACKUP TABLE movr.nope INTO 'nodelocal://1/x'":                                     "movr.nope does not exist",
		"BACKUP DATABASE movr INTO 'gs://bucket/x'":                                         "gs",
		"RESTORE DATABASE movr FROM LATEST IN 'nodelocal://1/empty'":                        "no",
		"RESTORE DATABASE movr FROM LATEST IN 'nodelocal://1/priv'":                         "already exists",
		"RESTORE DATABASE other FROM LATEST IN 'nodelocal://1/priv' WITH new_db_name = 'o'": "not in the backup",
	} {
		err := tc.execErr(stmt, server.ExecOptions{})
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want it to mention %q", stmt, err, want)
		}
	}
}

var _ = atomic.Int64{}

// TestBackupSurvivesProcessorNodeDeath stops a node that runs part of a
// backup's export (not the coordinator, not the gateway) while its
// processor is mid-span. The job re-plans that node's spans onto live
// replicas and completes, and the restore equals the source.
func TestBackupSurvivesProcessorNodeDeath(t *testing.T) {
	g := newGate(3)
	tc := start(t, 6, backup.Knobs{BeforeExportSpan: g.hook}, 1500)
	res := tc.exec("BACKUP DATABASE movr INTO 'nodelocal://1/node-death' WITH detached")
	<-g.reached
	var prog backup.Progress
	rec := tc.wait(res.JobID, func(r jobs.Record) bool {
		prog = backup.Progress{}
		if len(r.Progress) > 0 {
			decodeJSON(t, r.Progress, &prog)
		}
		return prog.Resolved && r.ClaimNode != 0
	})
	victim := int32(0)
	for _, a := range prog.Plan {
		if a.Node != rec.ClaimNode && a.Node != 1 && len(a.Spans) > 0 {
			for _, ps := range a.Spans {
				if ps.Index >= 3 {
					victim = a.Node
				}
			}
		}
	}
	if victim == 0 {
		t.Fatalf("no node besides the coordinator %d and the gateway has held-up spans: %+v", rec.ClaimNode, prog.Plan)
	}
	n := tc.Node(victim)
	n.Registry.Stop()
	n.Node.Stop()
	close(g.release)
	rec = tc.wait(res.JobID, func(r jobs.Record) bool { return r.State.Terminal() })
	if rec.State != jobs.StateSucceeded {
		t.Fatalf("job ended %s: %s", rec.State, rec.Error)
	}
	decodeJSON(t, rec.Progress, &prog)
	for _, a := range prog.Plan {
		if a.Node == victim {
			for _, ps := range a.Spans {
				if ps.Index >= 3 {
					t.Fatalf("span %d is still planned on the dead node %d", ps.Index, victim)
				}
			}
		}
	}
	tc.assertRestoredEqual("nodelocal://1/node-death", "movr_after_death")
}
