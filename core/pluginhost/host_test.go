package pluginhost_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairnbackup/cairn/core/cloud"
	"github.com/cairnbackup/cairn/core/pluginhost"
	"github.com/cairnbackup/cairn/sdk/locality"
	"github.com/cairnbackup/cairn/sdk/plugin"
	"github.com/cairnbackup/cairn/sdk/storage"
	"github.com/cairnbackup/cairn/sdk/storage/storagetest"
)

// binDir holds the plugins built once for every test.
var binDir string

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		helperHost()
		return
	}
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "pluginhost-test")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		binDir = dir
		for name, pkg := range map[string]string{
			"storage-local": "../../plugins/storage-local",
			"panicky":       "./testdata/panicky",
			"locality":      "../../plugins/locality",
		} {
			out, err := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg).CombinedOutput()
			if err != nil {
				fmt.Fprintf(os.Stderr, "building %s: %v\n%s", pkg, err, out)
				return 1
			}
		}
		return m.Run()
	}())
}

// pluginDir returns a fresh plugin directory holding the named plugins,
// a script that is not a plugin and a file that is not executable.
func pluginDir(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range names {
		if err := os.Symlink(filepath.Join(binDir, n), filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "not-a-plugin"), []byte("#!/bin/sh\necho hello\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("plugins live here\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func newHost(t *testing.T, names ...string) *pluginhost.Host {
	return newHostWith(t, pluginhost.Config{}, names...)
}

// newHostWith starts a host of the named plugins with cfg (its Dir,
// Logger and CallTimeout are set here).
func newHostWith(t *testing.T, cfg pluginhost.Config, names ...string) *pluginhost.Host {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg.Dir = pluginDir(t, names...)
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg.CallTimeout = 30 * time.Second
	h, err := pluginhost.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// writeModes are the two ways a write reaches a storage plugin: handed
// over as a file at Close (the default), or streamed over the socket.
var writeModes = []struct {
	name   string
	stream bool
}{{"FileHandoff", false}, {"Streamed", true}}

func openFile(t *testing.T, h *pluginhost.Host) storage.Store {
	t.Helper()
	return openFileAt(t, h, t.TempDir())
}

// openFileAt opens file://root through h's storage-local plugin.
func openFileAt(t *testing.T, h *pluginhost.Host, root string) storage.Store {
	t.Helper()
	p, ok := h.Storage("file")
	if !ok {
		t.Fatal("no plugin serves file://")
	}
	s, err := p.Open(context.Background(), "file://"+root)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func pluginInfo(t *testing.T, h *pluginhost.Host, name string) pluginhost.PluginInfo {
	t.Helper()
	for _, p := range h.Plugins() {
		if p.Info.Name == name {
			return p
		}
	}
	t.Fatalf("no plugin %s among %+v", name, h.Plugins())
	return pluginhost.PluginInfo{}
}

func kill(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("killing plugin %d: %v", pid, err)
	}
}

func TestDiscoverAndDescribe(t *testing.T) {
	h := newHost(t, "storage-local", "panicky")
	got := h.Plugins()
	if len(got) != 2 {
		t.Fatalf("Plugins() = %+v, want panicky and storage-local only", got)
	}
	sl := pluginInfo(t, h, "storage-local")
	if want := []string{plugin.KindStorage}; fmt.Sprint(sl.Info.Kinds) != fmt.Sprint(want) {
		t.Errorf("kinds = %v, want %v", sl.Info.Kinds, want)
	}
	if fmt.Sprint(sl.Info.Schemes) != "[file]" || sl.Protocol != plugin.ProtocolVersion || sl.PID <= 0 ||
		fmt.Sprint(sl.Info.Protocols) != "[1]" || sl.Info.Version == "" {
		t.Errorf("storage-local = %+v", sl)
	}
}

func TestRegisterStorageOverridesBuiltIn(t *testing.T) {
	h := newHost(t, "storage-local")
	reg := cloud.NewRegistry()
	cloud.RegisterLocal(reg, 1, func(int32) (string, error) { return t.TempDir(), nil })
	h.RegisterStorage(reg)
	ctx := context.Background()
	s, err := reg.Open(ctx, "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if typ := fmt.Sprintf("%T", s); strings.Contains(typ, "local.Store") {
		t.Errorf("file:// opened the built-in %s, want the plugin's store", typ)
	}
	if err := storage.WriteAll(ctx, s, "a", []byte("x"), storage.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = reg.Open(ctx, "gopher://x/y")
	if !errors.Is(err, storage.ErrInvalidArgument) || !strings.Contains(err.Error(), "file, nodelocal") {
		t.Errorf("unknown scheme: %v, want ErrInvalidArgument listing file, nodelocal", err)
	}
	// Errors of the plugin's Open keep their kind across the boundary.
	_, err = reg.Open(ctx, "file://host/x")
	if !errors.Is(err, storage.ErrInvalidArgument) {
		t.Errorf("file URI with a host: %v, want ErrInvalidArgument", err)
	}
}

// TestConformanceThroughHost runs the kit on stores opened through the
// host's restartable wrapper.
func TestConformanceThroughHost(t *testing.T) {
	for _, mode := range writeModes {
		t.Run(mode.name, func(t *testing.T) {
			spool := t.TempDir()
			h := newHostWith(t, pluginhost.Config{NoFileHandoff: mode.stream, SpoolDir: spool}, "storage-local")
			storagetest.Run(t, storagetest.Config{
				NewStore: func(t *testing.T) storage.Store {
					t.Cleanup(func() { checkSpoolEmpty(t, spool) })
					return openFile(t, h)
				},
				SkipLarge:        testing.Short(),
				FileDirConflicts: true,
			})
		})
	}
}

// checkSpoolEmpty fails when a write left a file in the host's spool.
func checkSpoolEmpty(t *testing.T, spool string) {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(spool, "cairn-spool-*"))
	if len(dirs) != 1 {
		t.Fatalf("spool directories in %s: %q, want one", spool, dirs)
	}
	if left, _ := os.ReadDir(dirs[0]); len(left) > 0 {
		t.Errorf("the spool keeps %d files after the writes ended, e.g. %s", len(left), left[0].Name())
	}
}

// spoolFiles lists the files in the host's spool directory under spool.
func spoolFiles(t *testing.T, spool string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(spool, "cairn-spool-*", "*"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestWriteHandsOverTheSpoolFile shows the bytes of a large write
// crossing to the plugin as a file: the local store keeps the host's
// spool file itself (a hard link), so nothing was copied through the
// socket or on disk. Small writes go inline, and nothing stays in the
// spool.
func TestWriteHandsOverTheSpoolFile(t *testing.T) {
	spool := t.TempDir()
	h := newHostWith(t, pluginhost.Config{SpoolDir: spool}, "storage-local")
	root := t.TempDir()
	s := openFileAt(t, h, root)
	defer s.Close()
	ctx := context.Background()
	data := bytes.Repeat([]byte("handed over "), 1<<20)
	w, err := s.Write(ctx, "dir/big", storage.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	files := spoolFiles(t, spool)
	if len(files) != 1 {
		t.Fatalf("spool files while writing: %q, want one", files)
	}
	spooled, err := os.Stat(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	stored, err := os.Stat(filepath.Join(root, "dir", "big"))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(spooled, stored) {
		t.Errorf("the stored object is not the host's spool file: the bytes were copied")
	}
	if got, err := storage.ReadAll(ctx, s, "dir/big"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("reading back: %d bytes, %v", len(got), err)
	}
	if err := storage.WriteAll(ctx, s, "small", []byte("inline"), storage.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, err := storage.ReadAll(ctx, s, "small"); err != nil || string(got) != "inline" {
		t.Fatalf("reading back the small object: %q, %v", got, err)
	}
	checkSpoolEmpty(t, spool)
	h.Close()
	if left, _ := filepath.Glob(filepath.Join(spool, "*")); len(left) > 0 {
		t.Errorf("after Close the spool holds %q", left)
	}
}

// TestReadHandsOverAFile shows a whole-object read crossing as a file:
// the reader holds the stored object itself (the local store linked it
// into the spool), and the spool keeps no name for it. A ranged read
// streams.
func TestReadHandsOverAFile(t *testing.T) {
	spool := t.TempDir()
	h := newHostWith(t, pluginhost.Config{SpoolDir: spool}, "storage-local")
	root := t.TempDir()
	s := openFileAt(t, h, root)
	defer s.Close()
	ctx := context.Background()
	data := bytes.Repeat([]byte("read as a file "), 1<<18)
	if err := storage.WriteAll(ctx, s, "dir/obj", data, storage.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	before := openFDs(t)
	r, err := s.Read(ctx, "dir/obj", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	stored, err := os.Stat(filepath.Join(root, "dir", "obj"))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for fd, target := range openFDs(t) {
		if _, ok := before[fd]; ok || !strings.Contains(target, spool) {
			continue
		}
		fi, err := os.Stat(fmt.Sprintf("/proc/self/fd/%d", fd))
		if err == nil && os.SameFile(fi, stored) {
			found = true
		}
	}
	if !found {
		t.Errorf("the reader does not hold the stored object through the spool")
	}
	checkSpoolEmpty(t, spool)
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, %v; want the %d written", len(got), err, len(data))
	}
	rr, err := s.Read(ctx, "dir/obj", 5, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer rr.Close()
	if got, err := io.ReadAll(rr); err != nil || !bytes.Equal(got, data[5:15]) {
		t.Fatalf("ranged read: %q, %v", got, err)
	}
	if _, err := s.Read(ctx, "dir/missing", 0, -1); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("reading a missing object: %v, want ErrNotFound", err)
	}
	checkSpoolEmpty(t, spool)
}

// openFDs maps this process's open descriptors to what they point at.
func openFDs(t *testing.T) map[int]string {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]string{}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil {
			out[fd] = target
		}
	}
	return out
}

// TestLocalitySurvivesCrash: the matcher and policies handed out by the
// host keep working after their plugin is killed: the call restarts it.
func TestLocalitySurvivesCrash(t *testing.T) {
	h := newHost(t, "locality")
	pol, ok := h.Policy("default")
	if !ok {
		t.Fatal("no plugin serves the default policy")
	}
	m, ok := h.Matcher()
	if !ok {
		t.Fatal("no plugin serves a locality matcher")
	}
	east, _ := locality.Parse("region=east")
	west, _ := locality.Parse("region=west")
	req := locality.PlanRequest{
		Nodes: []locality.Node{{ID: 1, Locality: east}, {ID: 2, Locality: west}},
		Spans: []locality.SpanRange{{Index: 0, Replicas: []int32{1, 2}, Leaseholder: 2}},
	}
	ctx := context.Background()
	want, err := pol.Plan(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2; i++ {
		kill(t, pluginInfo(t, h, "locality").PID)
		got, err := pol.Plan(ctx, req)
		if err != nil {
			t.Fatalf("Plan after kill %d: %v", i, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("Plan after kill %d = %v, want %v", i, got, want)
		}
		if r := pluginInfo(t, h, "locality").Restarts; r != i {
			t.Errorf("restarts after kill %d = %d", i, r)
		}
	}
	kill(t, pluginInfo(t, h, "locality").PID)
	ids, err := m.MatchNodes(ctx, west, req.Nodes)
	if err != nil || fmt.Sprint(ids) != "[2]" {
		t.Fatalf("MatchNodes after a kill = %v, %v; want [2]", ids, err)
	}
}

// TestLostCommitReplyIsNotAConflict: the plugin commits an IfNotExists
// write and dies before answering; the host's retry finds the object and,
// since it holds the spooled bytes, reports success. Another writer's
// object under the name is still a conflict.
func TestLostCommitReplyIsNotAConflict(t *testing.T) {
	h := newHost(t, "panicky")
	p, ok := h.Storage("crashy")
	if !ok {
		t.Fatal("no plugin serves crashy://")
	}
	root := t.TempDir()
	s, err := p.Open(context.Background(), "crashy://"+root)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for _, size := range []int{100, 3 << 20} { // inline and as a file
		name := fmt.Sprintf("die-after-commit/lock-%d", size)
		data := bytes.Repeat([]byte("L"), size)
		if err := storage.WriteAll(ctx, s, name, data, storage.WriteOptions{IfNotExists: true}); err != nil {
			t.Fatalf("%d bytes: the write whose reply was lost failed: %v", size, err)
		}
		if got, err := storage.ReadAll(ctx, s, name); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%d bytes: reading back: %d bytes, %v", size, len(got), err)
		}
		err := storage.WriteAll(ctx, s, name, []byte("someone else"), storage.WriteOptions{IfNotExists: true})
		if !errors.Is(err, storage.ErrAlreadyExists) {
			t.Errorf("%d bytes: a second IfNotExists write = %v, want ErrAlreadyExists", size, err)
		}
	}
	if r := pluginInfo(t, h, "panicky").Restarts; r != 2 {
		t.Errorf("restarts = %d, want 2 (one per lost reply)", r)
	}
}

// TestWriteFallsBackToStreaming: a plugin that cannot open the handed
// file (here: it is gone) gets the bytes streamed from the host's copy.
func TestWriteFallsBackToStreaming(t *testing.T) {
	spool := t.TempDir()
	h := newHostWith(t, pluginhost.Config{SpoolDir: spool}, "storage-local")
	s := openFile(t, h)
	defer s.Close()
	ctx := context.Background()
	data := bytes.Repeat([]byte("streamed instead "), 1<<18)
	w, err := s.Write(ctx, "obj", storage.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	files := spoolFiles(t, spool)
	if len(files) != 1 {
		t.Fatalf("spool files while writing: %q, want one", files)
	}
	// The host keeps the file open: the replay reads it by descriptor.
	if err := os.Remove(files[0]); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close when the plugin cannot see the file: %v", err)
	}
	if got, err := storage.ReadAll(ctx, s, "obj"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("reading back: %d bytes, %v", len(got), err)
	}
	// Later writes stream from the start.
	if err := storage.WriteAll(ctx, s, "next", data, storage.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, err := storage.ReadAll(ctx, s, "next"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("reading back the next object: %d bytes, %v", len(got), err)
	}
}

// TestStaleSpoolsRemoved: a host removes the spool directories of hosts
// that died without closing, and leaves those of live ones.
func TestStaleSpoolsRemoved(t *testing.T) {
	spool := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	live := exec.Command("sleep", "60")
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { live.Process.Kill(); live.Wait() }()
	deadDir := filepath.Join(spool, fmt.Sprintf("cairn-spool-%d-1234", dead.Process.Pid))
	liveDir := filepath.Join(spool, fmt.Sprintf("cairn-spool-%d-5678", live.Process.Pid))
	other := filepath.Join(spool, "someone-elses")
	for _, d := range []string{deadDir, liveDir, other} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "w-1"), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	newHostWith(t, pluginhost.Config{SpoolDir: spool}, "storage-local")
	if _, err := os.Stat(deadDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the spool of a dead host is still there (%v)", err)
	}
	for _, d := range []string{liveDir, other} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s was removed: %v", d, err)
		}
	}
}

func TestRestartAfterCrash(t *testing.T) {
	h := newHost(t, "storage-local")
	s := openFile(t, h)
	defer s.Close()
	ctx := context.Background()
	if err := storage.WriteAll(ctx, s, "obj", []byte("before"), storage.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	before := pluginInfo(t, h, "storage-local")
	kill(t, before.PID)
	// The call finds the plugin dead, restarts it, replays Open, retries.
	info, err := s.Stat(ctx, "obj")
	if err != nil || info.Size != 6 {
		t.Fatalf("Stat after the crash = %+v, %v", info, err)
	}
	after := pluginInfo(t, h, "storage-local")
	if after.PID == before.PID || after.Restarts != 1 {
		t.Errorf("after the crash: pid %d (was %d), restarts %d; want a new process, 1 restart", after.PID, before.PID, after.Restarts)
	}
	if _, err := s.Stat(ctx, "missing"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stat(missing) = %v, want ErrNotFound", err)
	}
}

func TestWriteInFlightSurvivesCrash(t *testing.T) {
	for _, mode := range writeModes {
		t.Run(mode.name, func(t *testing.T) {
			h := newHostWith(t, pluginhost.Config{NoFileHandoff: mode.stream}, "storage-local")
			s := openFile(t, h)
			defer s.Close()
			ctx := context.Background()
			data := make([]byte, 6<<20)
			for i := range data {
				data[i] = byte(i * 7 / 5)
			}
			w, err := s.Write(ctx, "big", storage.WriteOptions{IfNotExists: true})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Abort()
			if _, err := w.Write(data[:3<<20]); err != nil {
				t.Fatal(err)
			}
			kill(t, pluginInfo(t, h, "storage-local").PID)
			if _, err := w.Write(data[3<<20:]); err != nil {
				t.Fatalf("writing after the crash: %v", err)
			}
			if err := w.Close(); err != nil {
				t.Fatalf("committing after the crash: %v", err)
			}
			got, err := storage.ReadAll(ctx, s, "big")
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("reading back: %d bytes, %v; want the %d bytes written", len(got), err, len(data))
			}
			if r := pluginInfo(t, h, "storage-local").Restarts; r != 1 {
				t.Errorf("restarts = %d, want 1", r)
			}
		})
	}
}

func TestCrashBeforeCommitReplays(t *testing.T) {
	for _, mode := range writeModes {
		t.Run(mode.name, func(t *testing.T) {
			h := newHostWith(t, pluginhost.Config{NoFileHandoff: mode.stream}, "storage-local")
			s := openFile(t, h)
			defer s.Close()
			ctx := context.Background()
			w, err := s.Write(ctx, "small", storage.WriteOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Abort()
			if _, err := w.Write([]byte("kept on the host")); err != nil {
				t.Fatal(err)
			}
			kill(t, pluginInfo(t, h, "storage-local").PID)
			if err := w.Close(); err != nil {
				t.Fatalf("committing after the crash: %v", err)
			}
			if got, err := storage.ReadAll(ctx, s, "small"); err != nil || string(got) != "kept on the host" {
				t.Fatalf("reading back: %q, %v", got, err)
			}
		})
	}
}

func TestReadResumesAfterCrash(t *testing.T) {
	h := newHost(t, "storage-local")
	s := openFile(t, h)
	defer s.Close()
	ctx := context.Background()
	data := make([]byte, 8<<20)
	for i := range data {
		data[i] = byte(i * 13 / 7)
	}
	if err := storage.WriteAll(ctx, s, "big", data, storage.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	r, err := s.Read(ctx, "big", 100, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	head := make([]byte, 1<<20)
	if _, err := io.ReadFull(r, head); err != nil {
		t.Fatal(err)
	}
	kill(t, pluginInfo(t, h, "storage-local").PID)
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("reading after the crash: %v", err)
	}
	if got := append(head, rest...); !bytes.Equal(got, data[100:]) {
		t.Fatalf("read %d bytes across the crash, want the %d bytes of the object from 100", len(got), len(data)-100)
	}
}

func TestPanicBecomesErrorWithStack(t *testing.T) {
	h := newHost(t, "panicky")
	p, ok := h.Storage("mem")
	if !ok {
		t.Fatal("no plugin serves mem://")
	}
	ctx := context.Background()
	s, err := p.Open(ctx, "mem://")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.Stat(ctx, "panic")
	if err == nil || !strings.Contains(err.Error(), "asked to panic") || !strings.Contains(err.Error(), "goroutine") {
		t.Fatalf("Stat(panic) = %v, want an error with the panic and its stack", err)
	}
	if _, err := s.Stat(ctx, "other"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stat after a panic = %v, want ErrNotFound from the same process", err)
	}
	if r := pluginInfo(t, h, "panicky").Restarts; r != 0 {
		t.Errorf("a panic restarted the plugin %d times", r)
	}
}

// children lists the processes whose parent is this one.
func children(t *testing.T) map[int]bool {
	t.Helper()
	out := map[int]bool{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 1 {
			if ppid, _ := strconv.Atoi(f[1]); ppid == self {
				out[pid] = true
			}
		}
	}
	return out
}

func TestNoPluginOutlivesClose(t *testing.T) {
	before := children(t)
	h := newHost(t, "storage-local", "panicky")
	s := openFile(t, h)
	var pids []int
	for _, p := range h.Plugins() {
		if !children(t)[p.PID] || before[p.PID] {
			t.Fatalf("plugin %s (pid %d) is not a child of the host", p.Path, p.PID)
		}
		pids = append(pids, p.PID)
	}
	kill(t, pids[1]) // a restarted process must be stopped too
	if _, err := s.Stat(context.Background(), "x"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Stat after a crash = %v", err)
	}
	pids = nil
	for _, p := range h.Plugins() {
		pids = append(pids, p.PID)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	now := children(t)
	for _, pid := range pids {
		if now[pid] {
			t.Errorf("plugin pid %d is still running after Close", pid)
		}
	}
	if _, err := s.Stat(context.Background(), "x"); err == nil {
		t.Errorf("Stat on a closed host succeeded")
	}
}

const helperEnv = "PLUGINHOST_TEST_HELPER_DIR"

// helperHost is a host process for TestPluginExitsWithHost: it starts
// the plugins, prints their pids and waits to be killed.
func helperHost() {
	h, err := pluginhost.New(context.Background(), pluginhost.Config{Dir: os.Getenv(helperEnv)})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	for _, p := range h.Plugins() {
		fmt.Println(p.PID)
	}
	fmt.Println("ready")
	select {}
}

// TestPluginExitsWithHost kills a host process with SIGKILL, so it cannot
// stop its plugins, and checks that the plugins exit on their own.
func TestPluginExitsWithHost(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+pluginDir(t, "storage-local", "panicky"))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var pidfds []int
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && sc.Text() != "ready" {
		pid, err := strconv.Atoi(sc.Text())
		if err != nil {
			t.Fatalf("helper host said %q", sc.Text())
		}
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			t.Skipf("pidfd_open: %v", err)
		}
		defer unix.Close(fd)
		pidfds = append(pidfds, fd)
	}
	if len(pidfds) != 2 {
		t.Fatalf("helper host started %d plugins, want 2", len(pidfds))
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	// A pidfd becomes readable when its process exits. The bound only
	// keeps a broken build from hanging the test.
	for _, fd := range pidfds {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			n, err := unix.Poll(fds, int((time.Minute).Milliseconds()))
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				t.Fatalf("a plugin still runs a minute after its host was killed")
			}
			break
		}
	}
}
