package clustertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

var cairnBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cairn-clustertest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cairnBin = filepath.Join(dir, "cairn")
	build := exec.Command("go", "build", "-o", cairnBin, "github.com/cairnbackup/cairn/cmd/cairn")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building cairn:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type nodeInfo struct {
	NodeID        int32    `json:"node_id"`
	Addr          string   `json:"addr"`
	HTTPAddr      string   `json:"http_addr"`
	EtcdEndpoints []string `json:"etcd_endpoints"`
	PID           int      `json:"pid"`
}

// stopGroup ends the process group of pid: SIGTERM, then SIGKILL if it
// has not exited within a deadline.
func stopGroup(cmd *exec.Cmd, done <-chan struct{}) {
	syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// startNode runs `cairn start` with args plus a store, dynamic ports and a
// listening file, and returns once the node serves. The process is
// stopped when the test ends.
func startNode(t *testing.T, env []string, args ...string) nodeInfo {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "listening.json")
	all := append([]string{"start", "--store", filepath.Join(dir, "store"), "--listen-addr", "127.0.0.1:0",
		"--http-addr", "127.0.0.1:0", "--listening-file", file}, args...)
	cmd := exec.Command(cairnBin, all...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		stopGroup(cmd, done)
		if t.Failed() {
			t.Logf("node output (%v):\n%s", args, out.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if data, err := os.ReadFile(file); err == nil && len(data) > 0 {
			var info nodeInfo
			if err := json.Unmarshal(data, &info); err != nil {
				t.Fatal(err)
			}
			return info
		}
		select {
		case <-done:
			t.Fatalf("node exited before serving (%v): %s", waitErr, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("node did not serve within 30s: %s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cairn runs the CLI and returns its stdout; stderr goes into the error.
func cairn(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, cairnBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("cairn %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), err
}

func mustCairn(t *testing.T, args ...string) string {
	t.Helper()
	out, err := cairn(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitFor polls cond until it returns true or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var fpRE = regexp.MustCompile(`: ([0-9a-f]+) rows=(\d+)`)

func fingerprintOf(t *testing.T, out string) string {
	t.Helper()
	m := fpRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no fingerprint in %q", out)
	}
	return m[1] + " rows=" + m[2]
}

type statusRow struct {
	ID          string `json:"id"`
	Address     string `json:"address"`
	Live        string `json:"is_live"`
	Draining    string `json:"is_draining"`
	RunningJobs string `json:"running_jobs"`
}

func nodeStatus(t *testing.T, args ...string) []statusRow {
	t.Helper()
	out := mustCairn(t, append([]string{"node", "status", "--format", "json"}, args...)...)
	var rows []statusRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("decoding node status %q: %v", out, err)
	}
	return rows
}

// startThree starts node 1 embedding etcd, node 2 joining through node 1's
// gateway and node 3 connecting to etcd directly.
func startThree(t *testing.T, env []string, secArgs ...string) []nodeInfo {
	n1 := startNode(t, env, append([]string{"--locality", "region=us-east1,zone=us-east1-a"}, secArgs...)...)
	n2 := startNode(t, env, append([]string{"--locality", "region=us-west1,zone=us-west1-a", "--join", n1.Addr}, secArgs...)...)
	n3 := startNode(t, env, append([]string{"--locality", "region=europe-west1,zone=europe-west1-a", "--etcd-endpoints", strings.Join(n1.EtcdEndpoints, ",")}, secArgs...)...)
	return []nodeInfo{n1, n2, n3}
}

func TestThreeProcessBackupRestore(t *testing.T) {
	nodes := startThree(t, nil, "--insecure")
	h1, h2, h3 := nodes[0].Addr, nodes[1].Addr, nodes[2].Addr

	rows := nodeStatus(t, "--insecure", "--host", h3)
	if len(rows) != 3 {
		t.Fatalf("node status lists %d nodes, want 3: %+v", len(rows), rows)
	}
	for _, r := range rows {
		if r.Live != "true" || r.Draining != "false" {
			t.Errorf("node %s: live=%s draining=%s, want live and not draining", r.ID, r.Live, r.Draining)
		}
	}

	mustCairn(t, "workload", "init", "movr", "--insecure", "--host", h2, "--bytes", "2MB")
	out := mustCairn(t, "sql", "--insecure", "--host", h1, "-e", "BACKUP DATABASE movr INTO 'nodelocal://3/b'")
	if !strings.Contains(out, "succeeded") {
		t.Fatalf("backup: %s", out)
	}
	out = mustCairn(t, "sql", "--insecure", "--host", h2, "-e", "RESTORE DATABASE movr FROM LATEST IN 'nodelocal://3/b' WITH new_db_name = 'movr2'")
	if !strings.Contains(out, "succeeded") {
		t.Fatalf("restore: %s", out)
	}
	// movr is not written to after the load, so now is the backup's state.
	src := fingerprintOf(t, mustCairn(t, "fingerprint", "--insecure", "--host", h3, "--database", "movr"))
	dst := fingerprintOf(t, mustCairn(t, "fingerprint", "--insecure", "--host", h1, "--database", "movr2"))
	if src != dst {
		t.Fatalf("fingerprints differ: movr %s, movr2 %s", src, dst)
	}
	if out := mustCairn(t, "backups", "nodelocal://3/b", "--insecure", "--host", h1); !strings.Contains(out, "(1 row)") {
		t.Fatalf("backups: %s", out)
	}

	// Every node serves the named metrics; some node exported files.
	var exported bool
	for _, n := range nodes {
		resp, err := http.Get("http://" + n.HTTPAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, name := range []string{"cairn_jobs{", "cairn_exported_bytes_total{", "cairn_exported_files_total{",
			"cairn_span_retries_total{", "cairn_checkpoint_age_seconds{", "cairn_plugin_errors_total{"} {
			if !bytes.Contains(body, []byte(name)) {
				t.Errorf("node %d's /metrics lacks %s", n.NodeID, name)
			}
		}
		if !bytes.Contains(body, []byte(`cairn_jobs{node="`+fmt.Sprint(n.NodeID)+`",state="succeeded"} 2`)) {
			t.Errorf("node %d's /metrics does not count 2 succeeded jobs", n.NodeID)
		}
		exported = exported || regexp.MustCompile(`cairn_exported_files_total\{node="\d+"\} [1-9]`).Match(body)
	}
	if !exported {
		t.Error("no node counted exported files")
	}
}

func TestDrainHandsJobOver(t *testing.T) {
	// Every span's export waits, so the backup runs long enough to be
	// caught running; the drain then hands it over mid-flight.
	nodes := startThree(t, []string{"CAIRN_TESTING_EXPORT_DELAY=400ms"}, "--insecure", "--checkpoint-interval", "200ms")
	h1 := nodes[0].Addr
	mustCairn(t, "workload", "init", "movr", "--insecure", "--host", h1, "--bytes", "1MB")
	out := mustCairn(t, "sql", "--insecure", "--host", h1, "--format", "json", "-e", "BACKUP DATABASE movr INTO 'nodelocal://1/b' WITH detached")
	var res []map[string]string
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res) != 1 {
		t.Fatalf("detached backup: %q %v", out, err)
	}
	job := res[0]["job_id"]

	coordinator := ""
	waitFor(t, "the backup to have a coordinator", 30*time.Second, func() bool {
		for _, r := range nodeStatus(t, "--insecure", "--host", h1) {
			if r.RunningJobs == job {
				coordinator = r.ID
				return true
			}
		}
		return false
	})
	out = mustCairn(t, "node", "drain", coordinator, "--insecure", "--host", h1)
	if !strings.Contains(out, "jobs handed over: "+job) {
		t.Fatalf("drain of node %s did not hand over job %s: %s", coordinator, job, out)
	}
	// Another node adopts the job and runs it to success; the drained one
	// stays up, draining, and never takes it back.
	waitFor(t, "another node to adopt the job", 30*time.Second, func() bool {
		for _, r := range nodeStatus(t, "--insecure", "--host", h1) {
			if r.ID == coordinator && (r.Draining != "true" || r.RunningJobs != "") {
				t.Fatalf("drained node %s: draining=%s jobs=%q", r.ID, r.Draining, r.RunningJobs)
			}
			if r.ID != coordinator && r.RunningJobs == job {
				return true
			}
		}
		// It may also have finished already.
		out := mustCairn(t, "jobs", "show", job, "--insecure", "--host", h1)
		return strings.Contains(out, "succeeded")
	})
	out = mustCairn(t, "jobs", "show", job, "--wait", "--insecure", "--host", h1)
	if !strings.Contains(out, "succeeded") {
		t.Fatalf("job %s after the drain: %s", job, out)
	}
}

func TestTLS(t *testing.T) {
	certs := t.TempDir()
	mustCairn(t, "cert", "create-ca", "--certs-dir", certs)
	mustCairn(t, "cert", "create-node", "--certs-dir", certs, "127.0.0.1", "localhost")
	if _, err := cairn(t, "cert", "create-ca", "--certs-dir", certs); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("create-ca over an existing CA: %v", err)
	}
	n1 := startNode(t, nil, "--certs-dir", certs)
	n2 := startNode(t, nil, "--certs-dir", certs, "--join", n1.Addr, "--locality", "region=us-west1,zone=us-west1-a")

	// The load writes through node 2 to replicas on node 1: node-to-node
	// mTLS works.
	mustCairn(t, "workload", "init", "movr", "--certs-dir", certs, "--host", n2.Addr, "--bytes", "200KB")
	if rows := nodeStatus(t, "--certs-dir", certs, "--host", n1.Addr); len(rows) != 2 {
		t.Fatalf("node status: %+v", rows)
	}

	// A certificate from another CA is refused, and so is plaintext.
	other := t.TempDir()
	mustCairn(t, "cert", "create-ca", "--certs-dir", other)
	mustCairn(t, "cert", "create-node", "--certs-dir", other, "127.0.0.1")
	if _, err := cairn(t, "node", "status", "--certs-dir", other, "--host", n1.Addr); err == nil {
		t.Fatal("a client with another CA's certificate was accepted")
	}
	if _, err := cairn(t, "node", "status", "--insecure", "--host", n1.Addr); err == nil {
		t.Fatal("a plaintext client was accepted")
	}
	// A node with another CA's certificate joins etcd, but its reads of
	// the others' ranges are refused in the TLS handshake.
	n3 := startNode(t, nil, "--certs-dir", other, "--etcd-endpoints", strings.Join(n1.EtcdEndpoints, ","))
	if _, err := cairn(t, "fingerprint", "--certs-dir", other, "--host", n3.Addr, "--database", "movr"); err == nil {
		t.Fatal("a node with another CA's certificate read the cluster's data")
	}
}

func TestClusterUpDown(t *testing.T) {
	dir := t.TempDir()
	t.Cleanup(func() { cairn(t, "cluster", "down", "--dir", dir) })
	out := mustCairn(t, "cluster", "up", "--dir", dir, "--nodes", "4", "--insecure")
	if !strings.Contains(out, "cluster of 4 nodes up") {
		t.Fatalf("cluster up: %s", out)
	}
	rows := nodeStatus(t, "--insecure", "--dir", dir)
	if len(rows) != 4 {
		t.Fatalf("node status: %+v", rows)
	}
	for _, r := range rows {
		if r.Live != "true" {
			t.Errorf("node %s is not live", r.ID)
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, "cluster.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Nodes []nodeInfo `json:"nodes"`
	}
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	out = mustCairn(t, "cluster", "down", "--dir", dir)
	if strings.Count(out, "stopped") != 4 {
		t.Fatalf("cluster down: %s", out)
	}
	for _, n := range st.Nodes {
		if syscall.Kill(n.PID, 0) == nil {
			t.Errorf("node %d (pid %d) still runs after cluster down", n.NodeID, n.PID)
		}
	}
}
