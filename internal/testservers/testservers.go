// Package testservers starts the real storage servers the cloud plugins'
// tests run against (MinIO, Azurite, fake-gcs-server) on 127.0.0.1, and
// stops them when the test ends.
//
// Servers are found in $CAIRN_TEST_BIN, in ~/.cache/cairn/bin (where
// `make test-servers` installs them), in the repository's .cache/bin, or
// on $PATH. A test that needs a
// server it cannot find skips, except under CI=true, where it fails: CI
// must never pass by skipping.
package testservers

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FreePort returns a port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// RepoRoot walks up from the working directory to the directory holding
// go.mod.
func RepoRoot() string {
	dir, _ := os.Getwd()
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return dir
		}
	}
}

// Find locates an executable by name: $CAIRN_TEST_BIN, ~/.cache/cairn/bin,
// .cache/bin of the repository, .cache/npm/node_modules/.bin, then $PATH.
func Find(name string) (string, bool) {
	var dirs []string
	if d := os.Getenv("CAIRN_TEST_BIN"); d != "" {
		dirs = append(dirs, d)
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, ".cache", "cairn", "bin"))
	}
	root := RepoRoot()
	dirs = append(dirs, filepath.Join(root, ".cache", "bin"), filepath.Join(root, ".cache", "npm", "node_modules", ".bin"))
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, true
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, true
	}
	return "", false
}

// Require finds name or ends the test: Fatal under CI=true, Skip
// otherwise, with a message saying how to install it.
func Require(t testing.TB, name string) string {
	t.Helper()
	p, ok := Find(name)
	if ok {
		return p
	}
	msg := fmt.Sprintf("%s not found on $PATH, $CAIRN_TEST_BIN or .cache/bin; run `make test-servers`", name)
	if InCI() {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// InCI reports whether the tests run under CI (CI=true).
func InCI() bool { return strings.EqualFold(os.Getenv("CI"), "true") }

// WaitTCP waits until addr accepts connections or the deadline passes.
func WaitTCP(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for %s: %w", addr, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Process is a started server.
type Process struct {
	Cmd *exec.Cmd
	out *lockedWriter
}

// Output returns what the server printed so far (its first MiB).
func (p *Process) Output() string {
	p.out.mu.Lock()
	defer p.out.mu.Unlock()
	return p.out.b.String()
}

// StartProcess runs bin with args, its output kept for failure messages,
// and stops it (SIGKILL, then wait) when the test ends.
func StartProcess(t testing.TB, bin string, env []string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out := &lockedWriter{b: &strings.Builder{}}
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return &Process{Cmd: cmd, out: out}
}
