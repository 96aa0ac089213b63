package clustertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cairnbackup/cairn/core/backup"
	"github.com/cairnbackup/cairn/core/cloud/local"
	"github.com/cairnbackup/cairn/core/cluster"
	"github.com/cairnbackup/cairn/core/jobs"
	"github.com/cairnbackup/cairn/core/manifest"
	"github.com/cairnbackup/cairn/core/manifest/manifestpb"
)

// The chaos harness runs a cluster whose nodes can be SIGKILLed and
// restarted on the same store, with the same flags and gRPC address. Node
// 1 embeds the cluster's etcd and is drained at once, so it never
// coordinates a job and is never killed: it keeps etcd up, serves as the
// gateway of the test's commands and still exports and serves its
// replicas. Nodes 2-4 connect to its etcd and run the jobs, so any two of
// them can be down at once. The test observes jobs through its own etcd
// client, and checkpoints by reading the destination directory, without
// spawning a process per poll.

// freeAddrs returns n distinct free 127.0.0.1 addresses. They are closed
// before use, so another process could take one in between; a node that
// cannot listen fails its start loudly.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().String())
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}

// proc is one `cairn start` process that can be killed and started again
// with the same store, flags and addresses. Its output goes to node.log in
// its directory, across restarts.
type proc struct {
	t    *testing.T
	id   int32
	dir  string
	args []string
	env  []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	info nodeInfo
}

func (p *proc) listeningFile() string { return filepath.Join(p.dir, "listening.json") }
func (p *proc) logFile() string       { return filepath.Join(p.dir, "node.log") }

// launch starts the process without waiting for it to serve.
func (p *proc) launch() {
	p.t.Helper()
	os.Remove(p.listeningFile())
	logf, err := os.OpenFile(p.logFile(), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	fmt.Fprintf(logf, "=== start %s\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(cairnBin, append(p.args, "--listening-file", p.listeningFile())...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), p.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		p.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
}

// waitServing waits until the process wrote its listening file.
func (p *proc) waitServing() {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	relaunched := false
	for {
		if data, err := os.ReadFile(p.listeningFile()); err == nil && len(data) > 0 {
			var info nodeInfo
			if err := json.Unmarshal(data, &info); err != nil {
				p.t.Fatal(err)
			}
			p.mu.Lock()
			p.info = info
			p.mu.Unlock()
			return
		}
		select {
		case <-p.doneChan():
			p.t.Fatalf("node %d exited before serving:\n%s", p.id, p.tail())
		default:
		}
		if time.Now().After(deadline) {
			if !relaunched {
				// Known open issue: a restart after SIGKILL has, rarely,
				// hung before serving. Keep its goroutine dump in the log
				// (SIGQUIT) for diagnosis and start it once more, so the
				// failure tests go on measuring what they are about.
				p.quit()
				p.t.Logf("node %d did not serve within 30s; restarting it once. Its log:\n%s", p.id, p.tail())
				relaunched = true
				p.launch()
				deadline = time.Now().Add(30 * time.Second)
				continue
			}
			p.t.Fatalf("node %d did not serve within 30s, twice:\n%s", p.id, p.tail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// up reports whether the process runs.
func (p *proc) up() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// kill SIGKILLs the process group and waits for the process to be gone.
func (p *proc) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
}

// quit sends SIGQUIT, which makes a Go process print every goroutine's
// stack and exit, and waits for it to be gone.
func (p *proc) quit() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	syscall.Kill(cmd.Process.Pid, syscall.SIGQUIT)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
}

// stop ends the process group gently, then by force.
func (p *proc) stop() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd != nil {
		stopGroup(cmd, done)
	}
}

// tail is the end of the node's log, for failure messages.
func (p *proc) tail() string {
	data, _ := os.ReadFile(p.logFile())
	if len(data) > 20000 {
		data = data[len(data)-20000:]
	}
	return string(data)
}

// chaosCluster is four restartable nodes and the test's view of etcd.
type chaosCluster struct {
	t     *testing.T
	procs []*proc // node id i is procs[i-1]
	cli   *clientv3.Client
	reg   *jobs.Registry
	meta  *cluster.Meta
	// dest is the backup collection's directory (file://dest), on no
	// node's store, so it survives every kill.
	dest      string
	exportLog string
}

// startChaosCluster starts node 1 with the embedded etcd, drains it, and
// starts nodes 2-4 against its etcd, all with env and extra flags.
// CAIRN_TESTING_EXPORT_LOG is set to c.exportLog.
func startChaosCluster(t *testing.T, env []string, extra ...string) *chaosCluster {
	t.Helper()
	base := t.TempDir()
	c := &chaosCluster{t: t, dest: filepath.Join(base, "dest"), exportLog: filepath.Join(base, "exports.log")}
	env = append(env, "CAIRN_TESTING_EXPORT_LOG="+c.exportLog)
	const n = 4
	addrs := freeAddrs(t, n)
	localities := []string{"region=us-east1,zone=us-east1-a", "region=us-west1,zone=us-west1-a",
		"region=europe-west1,zone=europe-west1-a", "region=us-east1,zone=us-east1-b"}
	for i := range n {
		dir := filepath.Join(base, fmt.Sprintf("n%d", i+1))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		args := append([]string{"start", "--store", filepath.Join(dir, "store"), "--node-id", strconv.Itoa(i + 1),
			"--listen-addr", addrs[i], "--http-addr", "", "--locality", localities[i]}, extra...)
		c.procs = append(c.procs, &proc{t: t, id: int32(i + 1), dir: dir, args: args, env: env})
	}
	t.Cleanup(func() {
		// A node stuck starting dumps its goroutines into its log.
		if t.Failed() {
			for _, p := range c.procs {
				if _, err := os.Stat(p.listeningFile()); err != nil && p.up() {
					p.quit()
				}
			}
		}
		// Nodes 2-4 first: node 1 holds etcd, which they need to stop
		// cleanly.
		var wg sync.WaitGroup
		for _, p := range c.procs[1:] {
			wg.Go(p.stop)
		}
		wg.Wait()
		c.procs[0].stop()
		if t.Failed() {
			for _, p := range c.procs {
				t.Logf("node %d log (tail):\n%s", p.id, p.tail())
			}
		}
	})
	c.procs[0].launch()
	c.procs[0].waitServing()
	endpoints := c.procs[0].info.EtcdEndpoints
	for _, p := range c.procs[1:] {
		p.args = append(p.args, "--etcd-endpoints", strings.Join(endpoints, ","))
		p.launch()
	}
	for _, p := range c.procs[1:] {
		p.waitServing()
	}
	mustCairn(t, "node", "drain", "--insecure", "--host", c.procs[0].info.Addr)
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	c.cli, c.meta = cli, cluster.NewMeta(cli)
	c.reg = jobs.NewRegistry(cli, jobs.Options{Prefix: cluster.Prefix})
	return c
}

func (c *chaosCluster) node(id int32) *proc { return c.procs[id-1] }

// gateway is the address of node 1, which is never killed.
func (c *chaosCluster) gateway() string { return c.procs[0].info.Addr }

// relaunch starts a killed node again on its store, without waiting.
func (c *chaosCluster) relaunch(id int32) { c.node(id).launch() }

// waitAllLive waits until every node serves and is live.
func (c *chaosCluster) waitAllLive() {
	c.t.Helper()
	for _, p := range c.procs {
		p.waitServing()
	}
	waitFor(c.t, "every node to be live", 30*time.Second, func() bool {
		live, err := c.liveNodes()
		return err == nil && len(live) == len(c.procs)
	})
}

func (c *chaosCluster) liveNodes() (map[int32]bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.meta.LiveNodes(ctx)
}

// job reads a job's record and, for a backup, its progress. Reads can fail
// for a moment while an etcd member is down: it retries.
func (c *chaosCluster) job(id int64) (jobs.Record, backup.Progress) {
	c.t.Helper()
	var rec jobs.Record
	var err error
	for attempt := 0; attempt < 100; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		rec, err = c.reg.Get(ctx, id)
		cancel()
		if err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		c.t.Fatalf("reading job %d: %v", id, err)
	}
	var prog backup.Progress
	if len(rec.Progress) > 0 {
		if err := json.Unmarshal(rec.Progress, &prog); err != nil {
			c.t.Fatalf("decoding progress of job %d: %v", id, err)
		}
	}
	return rec, prog
}

// checkpointed returns the indexes of the spans in the newest checkpoint of
// the layer prog names (none before resolution or the first checkpoint).
func (c *chaosCluster) checkpointed(prog backup.Progress) map[int]bool {
	c.t.Helper()
	done := map[int]bool{}
	if !prog.Resolved {
		return done
	}
	store, err := local.New(c.dest)
	if err != nil {
		c.t.Fatal(err)
	}
	defer store.Close()
	var cp *manifestpb.BackupManifest
	var ok bool
	// A checkpoint being replaced can vanish between listing and reading.
	for attempt := 0; ; attempt++ {
		cp, ok, err = manifest.ReadLatestCheckpoint(context.Background(), store, prog.Subdir)
		if err == nil || attempt == 20 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		c.t.Fatalf("reading the newest checkpoint: %v", err)
	}
	if !ok {
		return done
	}
	index := map[string]int{}
	for _, a := range prog.Plan {
		for _, ps := range a.Spans {
			index[string(ps.Span.Key)+"\x00"+string(ps.Span.EndKey)] = ps.Index
		}
	}
	for _, s := range cp.CompletedSpans {
		i, found := index[string(s.Key)+"\x00"+string(s.EndKey)]
		if !found {
			c.t.Fatalf("checkpoint completes span %x-%x, which is not in the plan", s.Key, s.EndKey)
		}
		done[i] = true
	}
	return done
}

// mark appends a marker line to the export log: export starts logged
// after it happened after the call.
func (c *chaosCluster) mark(label string) {
	c.t.Helper()
	f, err := os.OpenFile(c.exportLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "mark %s\n", label); err != nil {
		c.t.Fatal(err)
	}
}

// exportStart is one line of the export log.
type exportStart struct {
	job  int64
	span int
	node int32
}

// exportsAfterMarks parses the export log: for every marker, the export
// starts logged after it (and before the end).
func (c *chaosCluster) exportsAfterMarks(job int64) (map[string][]exportStart, []exportStart) {
	c.t.Helper()
	data, err := os.ReadFile(c.exportLog)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		c.t.Fatal(err)
	}
	after := map[string][]exportStart{}
	var open []string
	var all []exportStart
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "mark" {
			open = append(open, f[1])
			after[f[1]] = nil
			continue
		}
		if len(f) != 3 {
			continue
		}
		j, err1 := strconv.ParseInt(f[0], 10, 64)
		s, err2 := strconv.Atoi(f[1])
		n, err3 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil || err3 != nil {
			c.t.Fatalf("bad export log line %q", line)
		}
		if j != job {
			continue
		}
		e := exportStart{job: j, span: s, node: int32(n)}
		all = append(all, e)
		for _, m := range open {
			after[m] = append(after[m], e)
		}
	}
	return after, all
}

// backupDetached starts BACKUP DATABASE db INTO file://dest on host and
// returns the job id.
func (c *chaosCluster) backupDetached(host, db string) int64 {
	c.t.Helper()
	out := mustCairn(c.t, "sql", "--insecure", "--host", host, "--format", "json", "-e",
		fmt.Sprintf("BACKUP DATABASE %s INTO 'file://%s' WITH detached", db, c.dest))
	var res []map[string]string
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res) != 1 {
		c.t.Fatalf("detached backup: %q %v", out, err)
	}
	id, err := strconv.ParseInt(res[0]["job_id"], 10, 64)
	if err != nil {
		c.t.Fatalf("detached backup: job id %q", res[0]["job_id"])
	}
	return id
}

// waitJob polls job id until cond holds, failing the test when the job
// ends in another state than succeeded first.
func (c *chaosCluster) waitJob(id int64, what string, d time.Duration, cond func(jobs.Record, backup.Progress) bool) (jobs.Record, backup.Progress) {
	c.t.Helper()
	var rec jobs.Record
	var prog backup.Progress
	waitFor(c.t, what, d, func() bool {
		rec, prog = c.job(id)
		if rec.State.Terminal() && rec.State != jobs.StateSucceeded {
			c.t.Fatalf("job %d ended %s while waiting for %s: %s", id, rec.State, what, rec.Error)
		}
		return cond(rec, prog)
	})
	return rec, prog
}

// verifyRestore restores db from the collection's latest layer as
// db+"_restored" and compares its fingerprint with db's at the backup's end
// time.
func (c *chaosCluster) verifyRestore(prog backup.Progress, db string) {
	c.t.Helper()
	store, err := local.New(c.dest)
	if err != nil {
		c.t.Fatal(err)
	}
	defer store.Close()
	m, err := manifest.ReadManifest(context.Background(), store, prog.Subdir)
	if err != nil {
		c.t.Fatalf("reading the manifest: %v", err)
	}
	end := fmt.Sprintf("%d.%010d", m.EndTime.WallTime, m.EndTime.Logical)
	src := fingerprintOf(c.t, mustCairn(c.t, "fingerprint", "--insecure", "--host", c.gateway(), "--database", db, "--as-of", end))
	out := mustCairn(c.t, "sql", "--insecure", "--host", c.gateway(), "-e",
		fmt.Sprintf("RESTORE DATABASE %s FROM LATEST IN 'file://%s' WITH new_db_name = '%s_restored'", db, c.dest, db))
	if !strings.Contains(out, "succeeded") {
		c.t.Fatalf("restore: %s", out)
	}
	dst := fingerprintOf(c.t, mustCairn(c.t, "fingerprint", "--insecure", "--host", c.gateway(), "--database", db+"_restored"))
	if src != dst {
		c.t.Fatalf("fingerprints differ: %s at the backup's end time %s: %s; restored: %s", db, end, src, dst)
	}
	c.t.Logf("%s at %s and its restored copy: %s", db, end, src)
}

// workload keeps `cairn workload run` going through node 1 until stop is
// called, which returns how many runs completed and how many operations
// they applied; stop may be called again. Runs whose writes hit a node
// just killed may fail; the next one starts over. started reports whether
// a run has completed.
func (c *chaosCluster) workload(db string, rate int) (started func() bool, stop func() (runs int, ops int64)) {
	ctx, cancel := context.WithCancel(context.Background())
	var runs atomic.Int64
	var ops int64
	var fails []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ctx.Err() == nil; i++ {
			cmd := exec.CommandContext(ctx, cairnBin, "workload", "run", db, "--insecure", "--host", c.gateway(),
				"--duration", "1s", "--max-rate", strconv.Itoa(rate), "--seed", strconv.Itoa(i+1))
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				if ctx.Err() == nil {
					fails = append(fails, fmt.Sprintf("%v: %s", err, strings.TrimSpace(stderr.String())))
				}
				continue
			}
			var n int64
			if _, err := fmt.Sscanf(stdout.String(), "applied %d operations", &n); err == nil {
				ops += n
				runs.Add(1)
			}
		}
	}()
	started = func() bool { return runs.Load() > 0 }
	var once sync.Once
	stop = func() (int, int64) {
		once.Do(func() {
			cancel()
			<-done
			if len(fails) > 0 {
				c.t.Logf("%d workload runs failed (a node they wrote to was killed), e.g. %s", len(fails), fails[0])
			}
		})
		return int(runs.Load()), ops
	}
	return started, stop
}

func (p *proc) doneChan() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}
