package testservers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// FakeGCS is a running fake-gcs-server.
type FakeGCS struct {
	// URL is the server's base URL, http://127.0.0.1:PORT.
	URL string
	// Endpoint is the JSON API endpoint for option.WithEndpoint and the
	// gs:// plugin's GCS_ENDPOINT: URL + "/storage/v1/".
	Endpoint string
	// Bucket was created empty for the test.
	Bucket string
	Proc   *Process
}

// StartFakeGCS starts fake-gcs-server on a free port of 127.0.0.1, waits
// until it accepts connections, and creates the bucket "cairn-test" (so
// its JSON API answers). The server is stopped when the test ends.
//
// It runs the memory backend, not the filesystem one: the filesystem
// backend stores object "a/b" as file b in directory a, so objects "a"
// and "a/b", which object stores allow side by side, cannot coexist (the
// second write gets a 500, which clients retry). The data lives in the
// server process, which is discarded with it.
func StartFakeGCS(t testing.TB) *FakeGCS {
	t.Helper()
	bin := Require(t, "fake-gcs-server")
	port := FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	base := "http://" + addr
	proc := StartProcess(t, bin, nil,
		"-scheme", "http", "-host", "127.0.0.1", "-port", strconv.Itoa(port),
		"-external-url", base, "-public-host", addr,
		"-backend", "memory",
		"-log-level", "warn")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := WaitTCP(ctx, addr, time.Minute); err != nil {
		t.Fatalf("starting fake-gcs-server: %v\n%s", err, proc.Output())
	}
	g := &FakeGCS{URL: base, Endpoint: base + "/storage/v1/", Bucket: "cairn-test", Proc: proc}
	if err := g.CreateBucket(ctx, g.Bucket); err != nil {
		t.Fatalf("starting fake-gcs-server: %v\n%s", err, proc.Output())
	}
	return g
}

// CreateBucket creates a bucket through the JSON API.
func (g *FakeGCS) CreateBucket(ctx context.Context, name string) error {
	body, _ := json.Marshal(map[string]string{"name": name})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.Endpoint+"b?project=cairn-test", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("creating bucket %s: %w", name, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("creating bucket %s: %w", name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("creating bucket %s: %s: %s", name, resp.Status, msg)
	}
	return nil
}
