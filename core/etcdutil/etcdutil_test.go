package etcdutil

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestStartEmbeddedPutGet(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	s, err := StartEmbedded(ctx, t.TempDir(), logger)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Client.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}

	// A second client through Connect sees the write.
	cli, err := Connect(ctx, s.Endpoints)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("got %v, want k=v", resp.Kvs)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// etcd logs at info level and below are dropped.
	if strings.Contains(logs.String(), "level=INFO") {
		t.Errorf("info-level etcd logs were forwarded:\n%s", logs.String())
	}
}

func TestStartEmbeddedRestartKeepsData(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	s, err := StartEmbedded(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client.Put(ctx, "k", "v"); err != nil {
		s.Close()
		t.Fatal(err)
	}
	s.Close()

	s, err = StartEmbedded(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	resp, err := s.Client.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 {
		t.Fatalf("data lost across restart: %v", resp.Kvs)
	}
}

func TestStartEmbeddedTwoServers(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := StartEmbedded(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := StartEmbedded(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if a.Endpoints[0] == b.Endpoints[0] {
		t.Fatalf("both servers on %s", a.Endpoints[0])
	}
}

func TestConnectNoEndpoints(t *testing.T) {
	t.Parallel()
	if _, err := Connect(context.Background(), nil); err == nil {
		t.Fatal("Connect(nil) succeeded")
	}
}

func TestConnectUnreachable(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := Connect(ctx, []string{"http://" + addr}); err == nil {
		t.Fatal("Connect to a closed port succeeded")
	}
}
