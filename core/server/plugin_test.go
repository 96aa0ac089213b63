package server_test

import (
	"bytes"
	"context"
	"fmt"
	"github.com/cairnbackup/cairn/sdk/locality/rules"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/core/backup"
	"github.com/cairnbackup/cairn/core/server"
	"github.com/cairnbackup/cairn/core/workload/movr"
)

var (
	pluginOnce sync.Once
	pluginDir  string // holds the storage-local plugin
	pluginErr  error
	pluginTmp  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if pluginTmp != "" {
		os.RemoveAll(pluginTmp)
	}
	os.Exit(code)
}

// storagePluginDir builds plugins/storage-local once into a plugin
// directory.
func storagePluginDir(t *testing.T) string {
	t.Helper()
	pluginOnce.Do(func() {
		pluginTmp, pluginErr = os.MkdirTemp("", "server-plugins")
		if pluginErr != nil {
			return
		}
		pluginDir = filepath.Join(pluginTmp, "plugins")
		for _, name := range []string{"storage-local", "locality"} {
			out, err := exec.Command("go", "build", "-o", filepath.Join(pluginDir, name), "../../plugins/"+name).CombinedOutput()
			if err != nil {
				pluginErr = fmt.Errorf("building %s: %v\n%s", name, err, out)
				return
			}
		}
	})
	if pluginErr != nil {
		t.Fatal(pluginErr)
	}
	return pluginDir
}

func startWithPlugins(t *testing.T, nodes int, knobs backup.Knobs, rows int) *testCluster {
	t.Helper()
	ctx := context.Background()
	srv, err := server.StartLocal(ctx, server.Config{
		Dir: t.TempDir(), Nodes: nodes, RegionOf: movr.RegionOfKey, AdoptInterval: 100 * time.Millisecond,
		CheckpointEvery: time.Nanosecond, TargetFileSize: 64 << 10, Knobs: knobs,
		PluginDir: storagePluginDir(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	tc := &testCluster{Server: srv, t: t}
	tc.ids, err = srv.CreateMovr(ctx, "movr")
	if err != nil {
		t.Fatal(err)
	}
	tc.stats, err = movr.Load(ctx, server.KV{Node: srv.Gateway().Node}, tc.ids, movr.Config{Seed: 7, Rows: rows, Concurrency: 4}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tc
}

// pluginPIDs returns the pid of the storage plugin of every node.
func (tc *testCluster) pluginPIDs() []int {
	var out []int
	for _, n := range tc.Nodes {
		for _, p := range n.Plugins.Plugins() {
			out = append(out, p.PID)
		}
	}
	return out
}

// TestBackupRestoreThroughStoragePlugin backs up to file:// with the
// storage-local plugin installed, so every node writes through its own
// plugin process, and restores to the same fingerprint.
func TestBackupRestoreThroughStoragePlugin(t *testing.T) {
	tc := startWithPlugins(t, 3, backup.Knobs{}, 300)
	if pids := tc.pluginPIDs(); len(pids) != 6 {
		t.Fatalf("plugin processes %v, want two per node (storage-local and locality)", pids)
	}
	for _, n := range tc.Nodes {
		// Jobs are planned by the locality plugin's policy, not the
		// in-process rules.
		if _, inProcess := n.Env.Policy.(rules.Default); n.Env.Policy == nil || inProcess {
			t.Fatalf("node %d plans with %T, want the locality plugin's policy", n.Node.ID, n.Env.Policy)
		}
		if !strings.Contains(fmt.Sprintf("%v", n.Env.Cloud.Schemes()), "file") {
			t.Fatalf("node %d offers %v", n.Node.ID, n.Env.Cloud.Schemes())
		}
	}
	uri := "file://" + filepath.Join(t.TempDir(), "backups")
	tc.exec(fmt.Sprintf("BACKUP DATABASE movr INTO '%s'", uri))
	tc.assertRestoredEqual(uri, "movr_restored")
}

// TestBackupSurvivesStoragePluginCrash kills every node's storage plugin
// (SIGKILL) while the backup exports, after some files are written and
// while others are in flight; the hosts restart the plugins, replay the
// writes, and the backup restores to the same fingerprint.
func TestBackupSurvivesStoragePluginCrash(t *testing.T) {
	var (
		once   sync.Once
		tcPtr  *testCluster
		ready  = make(chan struct{})
		killed []int
	)
	hook := func(ctx context.Context, jobID int64, spanIndex int) error {
		if spanIndex < 3 {
			return nil
		}
		once.Do(func() {
			<-ready
			for _, pid := range tcPtr.pluginPIDs() {
				if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
					killed = append(killed, pid)
				}
			}
		})
		return nil
	}
	tc := startWithPlugins(t, 3, backup.Knobs{BeforeExportSpan: hook}, 600)
	tcPtr = tc
	close(ready)
	uri := "file://" + filepath.Join(t.TempDir(), "backups")
	tc.exec(fmt.Sprintf("BACKUP DATABASE movr INTO '%s'", uri))
	if len(killed) == 0 {
		t.Fatal("the hook killed no plugin: the backup had fewer than 4 spans")
	}
	restarts := 0
	for _, n := range tc.Nodes {
		for _, p := range n.Plugins.Plugins() {
			restarts += p.Restarts
		}
	}
	if restarts == 0 {
		t.Fatalf("killed %v but no plugin was restarted", killed)
	}
	tc.assertRestoredEqual(uri, "movr_restored")
}

// TestNoPluginOutlivesServer checks that closing the server stops the
// plugin processes of every node.
func TestNoPluginOutlivesServer(t *testing.T) {
	tc := startWithPlugins(t, 3, backup.Knobs{}, 10)
	pids := tc.pluginPIDs()
	kids := children(t)
	for _, pid := range pids {
		if !kids[pid] {
			t.Fatalf("plugin %d is not a child of this process", pid)
		}
	}
	if err := tc.Close(); err != nil {
		t.Fatal(err)
	}
	kids = children(t)
	for _, pid := range pids {
		if kids[pid] {
			t.Errorf("plugin %d runs after the server closed", pid)
		}
	}
}

// children lists the processes whose parent is this one.
func children(t *testing.T) map[int]bool {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	out := map[int]bool{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 1 {
			if ppid, _ := strconv.Atoi(f[1]); ppid == os.Getpid() {
				out[pid] = true
			}
		}
	}
	return out
}
