package clustertest

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/core/backup"
	"github.com/cairnbackup/cairn/core/jobs"
)

// Knobs of the kill tests. The defaults keep `go test` within CI's
// budget; `make soak` raises them.
const (
	envSoakKills = "CAIRN_SOAK_KILLS" // coordinator kills per backup, at least 5
	envSoakBytes = "CAIRN_SOAK_BYTES" // size loaded before the backup
)

func envOr(t *testing.T, name, def string) string {
	if v := os.Getenv(name); v != "" {
		t.Logf("%s=%s", name, v)
		return v
	}
	return def
}

// chaosFlags are the node flags of the kill tests: a dead node is noticed
// within about two seconds, and idle nodes look for jobs often.
var chaosFlags = []string{"--insecure", "--liveness-ttl", "2", "--adopt-interval", "100ms", "--checkpoint-interval", "100ms"}

// killPhase is a point of a backup's life at which the test kills the
// coordinator; ready says, from the job and its newest checkpoint, that
// the backup has reached it.
type killPhase struct {
	name  string
	ready func(rec jobs.Record, prog backup.Progress, done map[int]bool) bool
}

// killPhases returns n ≥ 5 distinct phases: as soon as a node claims the
// job; once the plan is persisted, before any span is checkpointed; after
// the first checkpoint; at evenly spaced fractions of the spans; and with
// every span checkpointed but the manifest not yet written (the nodes hold
// that phase with CAIRN_TESTING_FINISH_DELAY). Each phase after the third
// also needs more checkpointed spans than the previous kill saw, so the
// phases differ even when a threshold was passed early.
func killPhases(n int, prevDone *int) []killPhase {
	phases := []killPhase{
		{"claimed", func(rec jobs.Record, _ backup.Progress, _ map[int]bool) bool {
			return rec.ClaimNode != 0
		}},
		{"plan persisted, nothing checkpointed", func(rec jobs.Record, prog backup.Progress, done map[int]bool) bool {
			return rec.ClaimNode != 0 && prog.Resolved && len(done) == 0
		}},
		{"first checkpoint", func(rec jobs.Record, prog backup.Progress, done map[int]bool) bool {
			return rec.ClaimNode != 0 && len(done) >= 1 && len(done) < prog.TotalSpans
		}},
	}
	mid := n - 4
	for i := 1; i <= mid; i++ {
		phases = append(phases, killPhase{fmt.Sprintf("%d/%d of the spans", i, mid+1), func(rec jobs.Record, prog backup.Progress, done map[int]bool) bool {
			want := max(prog.TotalSpans*i/(mid+1), *prevDone+1)
			return rec.ClaimNode != 0 && len(done) >= want && len(done) < prog.TotalSpans
		}})
	}
	phases = append(phases, killPhase{"every span checkpointed, no manifest", func(rec jobs.Record, prog backup.Progress, done map[int]bool) bool {
		return rec.ClaimNode != 0 && prog.TotalSpans > 0 && len(done) == prog.TotalSpans
	}})
	return phases
}

// TestSoakKillCoordinator backs up 500 MB on three processes while a
// workload writes, and SIGKILLs whichever node coordinates the backup at
// five (CAIRN_SOAK_KILLS) distinct phases. Every time another node adopts
// the job and resumes it from its checkpoint; no span that a checkpoint
// held at a kill is exported again after it; the restore equals the source
// at the backup's end time.
func TestSoakKillCoordinator(t *testing.T) {
	kills, err := strconv.Atoi(envOr(t, envSoakKills, "5"))
	if err != nil || kills < 5 {
		t.Fatalf("%s must be a number ≥ 5", envSoakKills)
	}
	size := envOr(t, envSoakBytes, "500MB")
	// Six processors (two per node) wait 700ms before each span: the
	// backup lasts long enough to be caught in every phase, and a phase
	// is held much longer than the test's polling interval.
	c := startChaosCluster(t, []string{"CAIRN_TESTING_EXPORT_DELAY=700ms", "CAIRN_TESTING_FINISH_DELAY=2s"}, chaosFlags...)

	start := time.Now()
	mustCairn(t, "workload", "init", "movr", "--insecure", "--host", c.gateway(), "--bytes", size)
	t.Logf("loaded %s in %s", size, time.Since(start).Round(time.Millisecond))

	workloadRan, stopWorkload := c.workload("movr", 100)
	defer stopWorkload()
	// The workload writes before the backup's end time too.
	waitFor(t, "a workload run to complete", 60*time.Second, workloadRan)
	start = time.Now()
	job := c.backupDetached(c.gateway(), "movr")

	type killed struct {
		phase  string
		victim int32
		done   map[int]bool // checkpointed spans at the kill
		label  string
	}
	var history []killed
	prevDone := -1
	phases := killPhases(kills, &prevDone)
	for k, ph := range phases {
		var rec jobs.Record
		var prog backup.Progress
		var done map[int]bool
		waitFor(t, fmt.Sprintf("phase %q of kill %d", ph.name, k+1), 120*time.Second, func() bool {
			rec, prog = c.job(job)
			if rec.State.Terminal() {
				t.Fatalf("job %d is %s (%s) before kill %d (%s)", job, rec.State, rec.Error, k+1, ph.name)
			}
			done = c.checkpointed(prog)
			return ph.ready(rec, prog, done)
		})
		victim := rec.ClaimNode
		if victim == 1 {
			t.Fatalf("drained node 1 coordinates job %d", job)
		}
		c.node(victim).kill()
		// The victim is gone: the checkpoint read now is the last one it
		// wrote, and nobody else coordinates until its claim expires.
		_, prog = c.job(job)
		done = c.checkpointed(prog)
		label := strconv.Itoa(k + 1)
		c.mark(label)
		history = append(history, killed{phase: ph.name, victim: victim, done: done, label: label})
		prevDone = len(done)
		t.Logf("kill %d (%s): SIGKILLed coordinator node %d with %d/%d spans checkpointed", k+1, ph.name, victim, len(done), prog.TotalSpans)

		rec, _ = c.waitJob(job, fmt.Sprintf("another node to adopt job %d after kill %d", job, k+1), 60*time.Second,
			func(rec jobs.Record, _ backup.Progress) bool {
				// Succeeded while the victim is down: another node
				// adopted and finished it between two polls.
				return rec.ClaimNode != 0 && rec.ClaimNode != victim || rec.State == jobs.StateSucceeded
			})
		t.Logf("kill %d: node %d adopted the job (0: it already finished)", k+1, rec.ClaimNode)
		// The victim comes back on its store while the backup goes on;
		// the next victim is the new coordinator, never a node still
		// starting.
		c.relaunch(victim)
	}
	c.waitAllLive()

	_, prog := c.waitJob(job, fmt.Sprintf("job %d to succeed", job), 120*time.Second, func(rec jobs.Record, _ backup.Progress) bool {
		return rec.State == jobs.StateSucceeded
	})
	t.Logf("backup with %d kills took %s (%d spans)", kills, time.Since(start).Round(time.Millisecond), prog.TotalSpans)
	runs, ops := stopWorkload()
	if runs == 0 || ops == 0 {
		t.Fatalf("the workload completed %d runs with %d operations: nothing wrote during the backup", runs, ops)
	}
	t.Logf("the workload applied %d operations in %d runs", ops, runs)

	// No span held by a checkpoint at a kill was exported after it.
	after, all := c.exportsAfterMarks(job)
	for _, h := range history {
		for _, e := range after[h.label] {
			if h.done[e.span] {
				t.Errorf("span %d was exported again by node %d after kill %s (%s), though the checkpoint held it", e.span, e.node, h.label, h.phase)
			}
		}
	}
	// Every span was exported, and spans not yet checkpointed at the
	// last kill were exported after it, by nodes other than its victim
	// or by it after its restart.
	exported := map[int]bool{}
	for _, e := range all {
		exported[e.span] = true
	}
	if len(exported) != prog.TotalSpans {
		t.Errorf("%d of %d spans have an export start in the log", len(exported), prog.TotalSpans)
	}
	// The kills hit distinct phases: nothing checkpointed at the second,
	// then strictly more at each, and every span at the last.
	victims := map[int32]bool{}
	var counts []int
	for _, h := range history {
		victims[h.victim] = true
		counts = append(counts, len(h.done))
	}
	distinct := counts[1] == 0 && counts[2] >= 1 && counts[kills-1] == prog.TotalSpans
	for k := 3; k < kills; k++ {
		distinct = distinct && counts[k] > counts[k-1]
	}
	if !distinct {
		t.Errorf("spans checkpointed at the kills: %v; want 0 at the second, then strictly more, all %d at the last", counts, prog.TotalSpans)
	}
	t.Logf("spans checkpointed at the kills: %v; victims: %v", counts, victims)

	c.verifyRestore(prog, "movr")
}

// TestKillNonCoordinator SIGKILLs a node that exports part of a backup,
// but does not coordinate it, while its spans are being exported. The
// coordinator keeps the job, re-plans the dead node's unfinished spans on
// live nodes, and the backup restores to the source at its end time.
func TestKillNonCoordinator(t *testing.T) {
	c := startChaosCluster(t, []string{"CAIRN_TESTING_EXPORT_DELAY=500ms"}, chaosFlags...)
	mustCairn(t, "workload", "init", "movr", "--insecure", "--host", c.gateway(), "--bytes", "20MB")
	workloadRan, stopWorkload := c.workload("movr", 100)
	defer stopWorkload()
	waitFor(t, "a workload run to complete", 60*time.Second, workloadRan)
	job := c.backupDetached(c.gateway(), "movr")

	// Mid-export: something is checkpointed, and a node other than the
	// coordinator (and node 1, which is never killed) still has spans to
	// export.
	var coordinator, victim int32
	var done map[int]bool
	var unfinished []int
	c.waitJob(job, "a processor node with spans left to export", 60*time.Second, func(rec jobs.Record, prog backup.Progress) bool {
		coordinator = rec.ClaimNode
		done = c.checkpointed(prog)
		if coordinator == 0 || len(done) == 0 {
			return false
		}
		for _, a := range prog.Plan {
			if a.Node == 1 || a.Node == coordinator {
				continue
			}
			unfinished = unfinished[:0]
			for _, ps := range a.Spans {
				if !done[ps.Index] {
					unfinished = append(unfinished, ps.Index)
				}
			}
			if len(unfinished) > 0 {
				victim = a.Node
				return true
			}
		}
		return false
	})
	c.node(victim).kill()
	_, prog := c.job(job)
	done = c.checkpointed(prog)
	c.mark("kill")
	unfinished = slices.DeleteFunc(unfinished, func(s int) bool { return done[s] })
	t.Logf("SIGKILLed node %d (coordinator: node %d) with %d spans of its own left, %d/%d checkpointed",
		victim, coordinator, len(unfinished), len(done), prog.TotalSpans)

	rec, prog := c.waitJob(job, fmt.Sprintf("job %d to succeed", job), 120*time.Second, func(rec jobs.Record, _ backup.Progress) bool {
		if rec.State == jobs.StateRunning && rec.ClaimNode != coordinator {
			t.Fatalf("job %d moved from node %d to node %d, though its coordinator stayed up", job, coordinator, rec.ClaimNode)
		}
		return rec.State == jobs.StateSucceeded
	})
	if rec.Retries > 0 || rec.RunningStatus != "" {
		t.Logf("job record at the end: retries=%d status=%q", rec.Retries, rec.RunningStatus)
	}
	stopWorkload()

	after, _ := c.exportsAfterMarks(job)
	exportedBy := map[int]int32{}
	for _, e := range after["kill"] {
		if done[e.span] {
			t.Errorf("span %d was exported again by node %d after the kill, though the checkpoint held it", e.span, e.node)
		}
		if e.node == victim {
			t.Errorf("dead node %d started exporting span %d after it was killed", victim, e.span)
		}
		exportedBy[e.span] = e.node
	}
	// Spans the victim was exporting may have reached the coordinator
	// just before the kill, but not all of them can have: some of its
	// spans were planned again on live nodes.
	var again []int
	for _, s := range unfinished {
		if _, ok := exportedBy[s]; ok && !done[s] {
			again = append(again, s)
		}
	}
	if len(again) == 0 {
		t.Errorf("none of the spans %v left by killed node %d was exported again by another node", unfinished, victim)
	}
	t.Logf("spans of node %d exported again by live nodes: %v", victim, again)

	c.relaunch(victim)
	c.waitAllLive()
	c.verifyRestore(prog, "movr")
}

// TestPauseResumeOnAnotherNode pauses a running backup through its
// coordinator and resumes it through another node; the resumed job
// exports only what the pause's checkpoint did not hold, and restores to
// the source at its end time.
func TestPauseResumeOnAnotherNode(t *testing.T) {
	c := startChaosCluster(t, []string{"CAIRN_TESTING_EXPORT_DELAY=500ms"}, chaosFlags...)
	mustCairn(t, "workload", "init", "movr", "--insecure", "--host", c.gateway(), "--bytes", "20MB")
	workloadRan, stopWorkload := c.workload("movr", 100)
	defer stopWorkload()
	waitFor(t, "a workload run to complete", 60*time.Second, workloadRan)
	job := c.backupDetached(c.gateway(), "movr")

	rec, _ := c.waitJob(job, "the backup to checkpoint a span", 60*time.Second, func(rec jobs.Record, prog backup.Progress) bool {
		return rec.ClaimNode != 0 && len(c.checkpointed(prog)) > 0
	})
	coordinator := rec.ClaimNode
	out := mustCairn(t, "sql", "--insecure", "--host", c.node(coordinator).info.Addr, "-e", fmt.Sprintf("PAUSE JOB %d", job))
	if !strings.Contains(out, strconv.FormatInt(job, 10)) {
		t.Fatalf("PAUSE JOB: %s", out)
	}
	_, prog := c.waitJob(job, "the job to pause", 60*time.Second, func(rec jobs.Record, _ backup.Progress) bool {
		return rec.State == jobs.StatePaused
	})
	done := c.checkpointed(prog)
	c.mark("paused")
	if len(done) == prog.TotalSpans {
		t.Fatalf("the job checkpointed every span before it paused: the test needs a longer backup")
	}
	if rec, _ := c.job(job); rec.ClaimNode != 0 {
		t.Fatalf("paused job %d is still claimed by node %d", job, rec.ClaimNode)
	}
	t.Logf("paused job %d on node %d with %d/%d spans checkpointed", job, coordinator, len(done), prog.TotalSpans)

	// RESUME through another node than the one that paused it.
	other := int32(2)
	if other == coordinator {
		other = 3
	}
	mustCairn(t, "jobs", "resume", strconv.FormatInt(job, 10), "--insecure", "--host", c.node(other).info.Addr)
	adopters := map[int32]bool{}
	_, prog = c.waitJob(job, fmt.Sprintf("job %d to succeed", job), 120*time.Second, func(rec jobs.Record, _ backup.Progress) bool {
		if rec.ClaimNode != 0 {
			adopters[rec.ClaimNode] = true
		}
		return rec.State == jobs.StateSucceeded
	})
	stopWorkload()
	t.Logf("resumed through node %d; ran on nodes %v after the resume", other, adopters)

	after, _ := c.exportsAfterMarks(job)
	if len(after["paused"]) == 0 {
		t.Error("no span was exported after the resume")
	}
	for _, e := range after["paused"] {
		if done[e.span] {
			t.Errorf("span %d was exported again by node %d after the resume, though the pause's checkpoint held it", e.span, e.node)
		}
	}
	c.verifyRestore(prog, "movr")
}
