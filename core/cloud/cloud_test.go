package cloud_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/core/cloud"
	"github.com/cairnbackup/cairn/core/cloud/local"
	"github.com/cairnbackup/cairn/sdk/storage"
	"github.com/cairnbackup/cairn/sdk/storage/memstore"
)

// localRegistry has nodes 1 to 3, with node 2 as self, each with its own
// directory below base.
func localRegistry(t *testing.T) (*cloud.Registry, string) {
	base := t.TempDir()
	r := cloud.NewRegistry()
	cloud.RegisterLocal(r, 2, func(id int32) (string, error) {
		if id < 1 || id > 3 {
			return "", fmt.Errorf("node %d: %w", id, storage.ErrNotFound)
		}
		return filepath.Join(base, fmt.Sprintf("n%d", id)), nil
	})
	return r, base
}

func TestRouting(t *testing.T) {
	r, base := localRegistry(t)
	abs := filepath.Join(base, "abs dir")
	for _, tc := range []struct {
		uri      string
		wantRoot string
	}{
		{"nodelocal://1/backups", filepath.Join(base, "n1", "backups")},
		{"nodelocal://3/backups/x", filepath.Join(base, "n3", "backups", "x")},
		{"nodelocal://self/backups", filepath.Join(base, "n2", "backups")},
		{"NODELOCAL://self/backups", filepath.Join(base, "n2", "backups")},
		{"nodelocal://1", filepath.Join(base, "n1")},
		{"nodelocal://1/", filepath.Join(base, "n1")},
		{"nodelocal://1//a/./b//c/", filepath.Join(base, "n1", "a", "b", "c")},
		{"nodelocal://1/with%20space", filepath.Join(base, "n1", "with space")},
		{"nodelocal://1/a?COCKROACH_LOCALITY=region%3Dus-east1", filepath.Join(base, "n1", "a")},
		{"nodelocal://1/a?COCKROACH_LOCALITY=default", filepath.Join(base, "n1", "a")},
		{"file://" + filepath.ToSlash(abs), abs},
		{"file://" + filepath.ToSlash(abs) + "/sub?COCKROACH_LOCALITY=default", filepath.Join(abs, "sub")},
	} {
		t.Run(tc.uri, func(t *testing.T) {
			s, err := r.Open(context.Background(), tc.uri)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer s.Close()
			ls, ok := s.(*local.Store)
			if !ok {
				t.Fatalf("Open returned %T, want *local.Store", s)
			}
			if ls.Root() != tc.wantRoot {
				t.Errorf("root = %q, want %q", ls.Root(), tc.wantRoot)
			}
		})
	}
}

// TestRoutedStoresShareData: two URIs naming the same directory see the
// same objects, and a store opened on a subdirectory sees its part.
func TestRoutedStoresShareData(t *testing.T) {
	ctx := context.Background()
	r, base := localRegistry(t)
	a, err := r.Open(ctx, "nodelocal://2/coll")
	if err != nil {
		t.Fatal(err)
	}
	if err := storage.WriteAll(ctx, a, "sub/obj", []byte("hello"), storage.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, uri := range []string{"nodelocal://self/coll", "file://" + filepath.ToSlash(filepath.Join(base, "n2", "coll"))} {
		b, err := r.Open(ctx, uri)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := storage.ReadAll(ctx, b, "sub/obj"); err != nil || string(got) != "hello" {
			t.Errorf("%s: sub/obj = %q, %v", uri, got, err)
		}
	}
	sub, err := r.Open(ctx, "nodelocal://2/coll/sub")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := storage.ReadAll(ctx, sub, "obj"); err != nil || string(got) != "hello" {
		t.Errorf("nodelocal://2/coll/sub: obj = %q, %v", got, err)
	}
	other, err := r.Open(ctx, "nodelocal://1/coll")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Stat(ctx, "sub/obj"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("node 1 sees node 2's object: %v", err)
	}
}

func TestBadURIs(t *testing.T) {
	r, _ := localRegistry(t)
	for _, tc := range []struct {
		uri      string
		sentinel error
		mention  string // the error must contain this
	}{
		{"", storage.ErrInvalidArgument, "no scheme"},
		{"/tmp/backups", storage.ErrInvalidArgument, "no scheme"},
		{"s3://bucket/path", storage.ErrInvalidArgument, `unknown scheme "s3" (want one of file, nodelocal)`},
		{"nodelocal:///path", storage.ErrInvalidArgument, "no node ID"},
		{"nodelocal://0/path", storage.ErrInvalidArgument, `node ID "0"`},
		{"nodelocal://-1/path", storage.ErrInvalidArgument, `node ID "-1"`},
		{"nodelocal://+1/path", storage.ErrInvalidArgument, `node ID "+1"`},
		{"nodelocal://one/path", storage.ErrInvalidArgument, `node ID "one"`},
		{"nodelocal://1:80/path", storage.ErrInvalidArgument, `node ID "1:80"`},
		{"nodelocal://99999999999/path", storage.ErrInvalidArgument, "node ID"},
		{"nodelocal://4/path", storage.ErrNotFound, "directory of node 4"},
		{"nodelocal://user@1/path", storage.ErrInvalidArgument, "user information"},
		{"nodelocal:1/path", storage.ErrInvalidArgument, "nodelocal://"},
		{"nodelocal://1/path#frag", storage.ErrInvalidArgument, "fragment"},
		{"nodelocal://1/path?AWS_SECRET_ACCESS_KEY=hunter2&zone=x", storage.ErrInvalidArgument, "AWS_SECRET_ACCESS_KEY, zone"},
		{"nodelocal://1/path?%zz", storage.ErrInvalidArgument, "query"},
		{"nodelocal://1/a%00b", storage.ErrInvalidArgument, "NUL"},
		{"file://host/abs/path", storage.ErrInvalidArgument, `host "host"`},
		{"file:relative/path", storage.ErrInvalidArgument, "file://"},
		{"file://", storage.ErrInvalidArgument, "absolute path"},
		{"file:///abs?foo=bar", storage.ErrInvalidArgument, "foo"},
		{"nodelocal://1/%zz", storage.ErrInvalidArgument, "parsing URI"},
		{"nodelocal://1/a b\x7f", storage.ErrInvalidArgument, "parsing URI"},
	} {
		t.Run(tc.uri, func(t *testing.T) {
			s, err := r.Open(context.Background(), tc.uri)
			if err == nil {
				s.Close()
				t.Fatalf("Open succeeded, want an error")
			}
			if !errors.Is(err, tc.sentinel) {
				t.Errorf("Open = %v, want it to wrap %v", err, tc.sentinel)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("Open = %q, want it to mention %q", err, tc.mention)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("Open = %q shows a secret", err)
			}
		})
	}
}

func TestTraversalRefused(t *testing.T) {
	r, base := localRegistry(t)
	for _, uri := range []string{
		"nodelocal://1/..",
		"nodelocal://1/../n2",
		"nodelocal://1/a/../../n2",
		"nodelocal://1/a/..",
		"nodelocal://1/%2e%2e/n2",
		"nodelocal://1/a%2F..%2F..%2Fn2",
		"nodelocal://self/../../etc",
		"file:///tmp/../etc",
		"file:///..",
	} {
		t.Run(uri, func(t *testing.T) {
			s, err := r.Open(context.Background(), uri)
			if err == nil {
				root := s.(*local.Store).Root()
				s.Close()
				t.Fatalf("Open succeeded with root %s", root)
			}
			if !errors.Is(err, storage.ErrInvalidArgument) || !strings.Contains(err.Error(), `".."`) {
				t.Errorf("Open = %v, want ErrInvalidArgument naming \"..\"", err)
			}
		})
	}
	// Nothing was created next to the node directories.
	matches, _ := filepath.Glob(filepath.Join(base, "*"))
	if len(matches) != 0 {
		t.Errorf("refused URIs created %q", matches)
	}
}

func TestSelfWithoutNode(t *testing.T) {
	r := cloud.NewRegistry()
	cloud.RegisterLocal(r, 0, func(int32) (string, error) { return t.TempDir(), nil })
	if _, err := r.Open(context.Background(), "nodelocal://self/x"); !errors.Is(err, storage.ErrInvalidArgument) {
		t.Errorf("nodelocal://self without a local node = %v, want ErrInvalidArgument", err)
	}
}

func TestRegistry(t *testing.T) {
	ctx := context.Background()
	r := cloud.NewRegistry()
	if got := r.Schemes(); len(got) != 0 {
		t.Errorf("Schemes of an empty registry = %q", got)
	}
	var gotURL *url.URL
	mem := memstore.New()
	r.Register("Mem", func(ctx context.Context, u *url.URL) (storage.Store, error) {
		gotURL = u
		return mem, nil
	})
	r.Register("broken", func(ctx context.Context, u *url.URL) (storage.Store, error) {
		return nil, fmt.Errorf("dialing: %w", storage.ErrUnavailable)
	})
	if got := r.Schemes(); !slices.Equal(got, []string{"broken", "mem"}) {
		t.Errorf("Schemes = %q, want [broken mem]", got)
	}
	s, err := r.Open(ctx, "MEM://bucket/p?x=1")
	if err != nil || s != mem {
		t.Fatalf("Open(mem) = %v, %v", s, err)
	}
	if gotURL.Host != "bucket" || gotURL.Path != "/p" || gotURL.Query().Get("x") != "1" {
		t.Errorf("Opener got %v", gotURL)
	}
	_, err = r.Open(ctx, "broken://u:pw@b/p?SECRET=s3cr3t&region=x")
	if !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Open(broken) = %v, want the Opener's error", err)
	}
	if msg := err.Error(); strings.Contains(msg, "s3cr3t") || strings.Contains(msg, "pw") ||
		!strings.Contains(msg, "broken://u:redacted@b/p?SECRET=redacted&region=x") {
		t.Errorf("Open(broken) = %q, want the URI shown redacted", msg)
	}
	for _, bad := range []func(){
		func() { r.Register("mem", func(context.Context, *url.URL) (storage.Store, error) { return nil, nil }) },
		func() { r.Register("", func(context.Context, *url.URL) (storage.Store, error) { return nil, nil }) },
		func() { r.Register("x", nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register did not panic")
				}
			}()
			bad()
		}()
	}
}
