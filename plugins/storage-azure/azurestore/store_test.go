package azurestore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/cairnbackup/cairn/internal/testservers"
	"github.com/cairnbackup/cairn/sdk/storage"
	"github.com/cairnbackup/cairn/sdk/storage/storagetest"
)

func open(t *testing.T, p Provider, uri string) storage.Store {
	t.Helper()
	s, err := p.Open(context.Background(), uri)
	if err != nil {
		t.Fatalf("opening %s: %v", url.QueryEscape(uri), err)
	}
	return s
}

func TestConformance(t *testing.T) {
	az := testservers.StartAzurite(t)
	storagetest.Run(t, storagetest.Config{
		NewStore: func(t *testing.T) storage.Store {
			return open(t, Provider{}, az.URI(az.NewContainer(t)))
		},
		SkipLarge: testing.Short(),
	})
}

// TestConformancePrefixed runs the kit on a store rooted at sub/path of a
// container that also holds an object outside it, and checks after each
// case that nothing was written outside the root and the outsider is
// untouched.
func TestConformancePrefixed(t *testing.T) {
	az := testservers.StartAzurite(t)
	storagetest.Run(t, storagetest.Config{
		NewStore: func(t *testing.T) storage.Store {
			c := az.NewContainer(t)
			root := open(t, Provider{}, az.URI(c))
			ctx := context.Background()
			outside := []string{"outside", "sub/pat", "sub/path.x", "sub/pathology/y"}
			for _, name := range outside {
				if err := storage.WriteAll(ctx, root, name, []byte(name), storage.WriteOptions{}); err != nil {
					t.Fatalf("writing %s: %v", name, err)
				}
			}
			t.Cleanup(func() {
				defer root.Close()
				for _, name := range outside {
					got, err := storage.ReadAll(ctx, root, name)
					if err != nil || string(got) != name {
						t.Errorf("object %s outside the store's root: %q, %v", name, got, err)
					}
				}
				err := root.List(ctx, storage.ListOptions{}, func(o storage.ObjectInfo) error {
					for _, name := range outside {
						if o.Name == name {
							return nil
						}
					}
					if !strings.HasPrefix(o.Name, "sub/path/") {
						t.Errorf("object %s escaped the store's root sub/path", o.Name)
					}
					return nil
				})
				if err != nil {
					t.Errorf("listing the container: %v", err)
				}
			})
			return open(t, Provider{pageSize: 100}, az.URI(c+"/sub/path"))
		},
		SkipLarge:   true, // the direct run covers it; the prefix changes nothing there
		ManyObjects: 350,  // pages of 100
	})
}

// TestConformanceSmallBlocks runs the kit with 1 MiB blocks and
// 100-entry listing pages, so that the kit's multi-MiB writes (and their
// cancellation) stage several blocks and commit a block list, and
// listings page often. Blocks stay above the kit's 96 KiB concurrent
// overwrites of one name: two writers committing block lists to one blob
// at once make the service discard the loser's staged blocks (see
// TestConcurrentBlockListWriters).
func TestConformanceSmallBlocks(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	az := testservers.StartAzurite(t)
	p := Provider{blockSize: 1 << 20, pageSize: 100}
	storagetest.Run(t, storagetest.Config{
		NewStore: func(t *testing.T) storage.Store {
			return open(t, p, az.URI(az.NewContainer(t)))
		},
		SkipLarge:   true,
		ManyObjects: 450,
	})
}

// TestConcurrentBlockListWriters pins down what happens when writers
// stage blocks for one name at once: conditional writers still see
// exactly one winner and ErrAlreadyExists for the others; an
// unconditional writer whose blocks were discarded gets a retryable
// ErrUnavailable (the host rewrites from its copy), and whatever is
// committed is one writer's whole data.
func TestConcurrentBlockListWriters(t *testing.T) {
	az := testservers.StartAzurite(t)
	ctx := context.Background()
	s := open(t, Provider{blockSize: 1 << 10}, az.URI(az.NewContainer(t)))
	defer s.Close()
	data := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i)}, 5<<10+i) }
	for _, cond := range []bool{true, false} {
		name := fmt.Sprintf("obj-%v", cond)
		const writers = 6
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			errs  = make([]error, writers)
		)
		for i := range writers {
			wg.Go(func() {
				w, err := s.Write(ctx, name, storage.WriteOptions{IfNotExists: cond})
				if err != nil {
					errs[i] = err
					return
				}
				defer w.Abort()
				if _, err := w.Write(data(i)); err != nil {
					errs[i] = err
					return
				}
				<-start
				errs[i] = w.Close()
			})
		}
		close(start)
		wg.Wait()
		won := 0
		for i, err := range errs {
			switch {
			case err == nil:
				won++
			case cond && errors.Is(err, storage.ErrAlreadyExists):
			case !cond && errors.Is(err, storage.ErrUnavailable) && storage.IsRetryable(err):
			default:
				t.Errorf("IfNotExists=%v: writer %d: %v", cond, i, err)
			}
		}
		if won == 0 || (cond && won != 1) {
			t.Errorf("IfNotExists=%v: %d writers won", cond, won)
		}
		got, err := storage.ReadAll(ctx, s, name)
		if err != nil {
			t.Fatal(err)
		}
		whole := false
		for i := range writers {
			whole = whole || bytes.Equal(got, data(i))
		}
		if !whole {
			t.Errorf("IfNotExists=%v: committed %d bytes that are no writer's data", cond, len(got))
		}
	}
}

func TestStagedBlocksStayInvisible(t *testing.T) {
	az := testservers.StartAzurite(t)
	ctx := context.Background()
	s := open(t, Provider{blockSize: 1 << 10}, az.URI(az.NewContainer(t)))
	defer s.Close()
	data := bytes.Repeat([]byte("0123456789abcdef"), 200) // 3 full blocks and a tail

	check := func(when string) {
		t.Helper()
		if _, err := s.Stat(ctx, "d/obj"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%s: Stat = %v, want ErrNotFound", when, err)
		}
		for _, delim := range []string{"", "/"} {
			err := s.List(ctx, storage.ListOptions{Delimiter: delim}, func(o storage.ObjectInfo) error {
				t.Errorf("%s: List(delimiter %q) shows %+v", when, delim, o)
				return nil
			})
			if err != nil {
				t.Errorf("%s: List: %v", when, err)
			}
		}
	}
	for _, cond := range []bool{false, true} {
		w, err := s.Write(ctx, "d/obj", storage.WriteOptions{IfNotExists: cond})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
		check("with staged blocks")
		if err := w.Abort(); err != nil {
			t.Fatal(err)
		}
		check("after Abort")
	}
	// The name is free, and a block-list commit with IfNotExists works.
	if err := storage.WriteAll(ctx, s, "d/obj", data, storage.WriteOptions{IfNotExists: true}); err != nil {
		t.Fatalf("conditional block-list write: %v", err)
	}
	if err := storage.WriteAll(ctx, s, "d/obj", data, storage.WriteOptions{IfNotExists: true}); !errors.Is(err, storage.ErrAlreadyExists) {
		t.Fatalf("second conditional block-list write = %v, want ErrAlreadyExists", err)
	}
	got, err := storage.ReadAll(ctx, s, "d/obj")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("reading back: %d bytes, %v", len(got), err)
	}
}

// logBuffer collects every log line at every level.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestErrors(t *testing.T) {
	az := testservers.StartAzurite(t)
	ctx := context.Background()
	wrongKey := "d3Jvbmcta2V5LWZvci10aGUtZGV2LWFjY291bnQtLTEyMzQ1Njc4OTA="
	clientSecret := "client-secret-value-42"
	var logs logBuffer
	p := Provider{Logger: logs.logger()}
	var shown []string // every error text produced
	note := func(err error) error {
		if err != nil {
			shown = append(shown, err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err))
		}
		return err
	}
	withParam := func(uri, name, value string) string {
		u, _ := url.Parse(uri)
		q := u.Query()
		q.Set(name, value)
		u.RawQuery = q.Encode()
		return u.String()
	}

	t.Run("BadCredentials", func(t *testing.T) {
		_, err := p.Open(ctx, withParam(az.URI(az.Container), ParamAccountKey, wrongKey))
		if note(err); !errors.Is(err, storage.ErrPermissionDenied) || storage.IsRetryable(err) {
			t.Fatalf("Open with a wrong key = %v, want ErrPermissionDenied, not retryable", err)
		}
		_, err = p.Open(ctx, withParam(az.URI(az.Container), ParamAccountKey, "not base64!"+clientSecret))
		if note(err); !errors.Is(err, storage.ErrInvalidArgument) {
			t.Fatalf("Open with a key that is not base64 = %v, want ErrInvalidArgument", err)
		}
	})
	t.Run("MissingContainer", func(t *testing.T) {
		_, err := p.Open(ctx, az.URI("no-such-container/x"))
		if note(err); !errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), `"no-such-container"`) || storage.IsRetryable(err) {
			t.Fatalf("Open of a missing container = %v, want ErrNotFound naming it", err)
		}
	})
	t.Run("ContainerDeletedUnderneath", func(t *testing.T) {
		c := az.NewContainer(t)
		s, err := p.Open(ctx, az.URI(c))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := s.(*Store).cc.Delete(ctx, nil); err != nil {
			t.Fatalf("deleting the container: %v", err)
		}
		_, err = s.Stat(ctx, "obj")
		if note(err); !errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), c) {
			t.Errorf("Stat in a deleted container = %v, want ErrNotFound naming it", err)
		}
		err = storage.WriteAll(ctx, s, "obj", []byte("x"), storage.WriteOptions{})
		if note(err); !errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), c) {
			t.Errorf("writing in a deleted container = %v, want ErrNotFound naming it", err)
		}
		err = s.List(ctx, storage.ListOptions{}, func(storage.ObjectInfo) error { return nil })
		if note(err); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("listing a deleted container = %v, want ErrNotFound", err)
		}
	})
	t.Run("UnknownParameter", func(t *testing.T) {
		_, err := p.Open(ctx, withParam(az.URI(az.Container), "AZURE_SAS_TOKEN", clientSecret))
		if note(err); !errors.Is(err, storage.ErrInvalidArgument) || !strings.Contains(err.Error(), "AZURE_SAS_TOKEN") {
			t.Fatalf("Open with an unknown parameter = %v, want ErrInvalidArgument naming it", err)
		}
	})
	t.Run("Unavailable", func(t *testing.T) {
		quick := Provider{Logger: p.Logger, retry: &policy.RetryOptions{MaxRetries: 1, RetryDelay: time.Millisecond, MaxRetryDelay: time.Millisecond}}
		dead := "http://127.0.0.1:" + fmt.Sprint(testservers.FreePort(t)) + "/" + az.Account
		_, err := quick.Open(ctx, withParam(az.URI(az.Container), ParamBlobEndpoint, dead))
		if note(err); !errors.Is(err, storage.ErrUnavailable) || !storage.IsRetryable(err) {
			t.Fatalf("Open with nothing listening = %v, want retryable ErrUnavailable", err)
		}
	})
	t.Run("ClientSecretMixedWithKey", func(t *testing.T) {
		uri := withParam(withParam(withParam(az.URI(az.Container), ParamClientID, "id"), ParamClientSecret, clientSecret), ParamTenantID, "tenant")
		_, err := p.Open(ctx, uri)
		if note(err); !errors.Is(err, storage.ErrInvalidArgument) {
			t.Fatalf("Open with both credentials = %v, want ErrInvalidArgument", err)
		}
	})
	t.Run("OpenLogs", func(t *testing.T) {
		s, err := p.Open(ctx, az.URI(az.Container))
		if err != nil {
			t.Fatal(err)
		}
		shown = append(shown, fmt.Sprint(s), fmt.Sprintf("%+v", s))
		s.Close()
	})

	out := logs.String()
	if !strings.Contains(out, "committing a blob") || !strings.Contains(out, "opened azure blob store") {
		t.Errorf("expected log lines missing; logs:\n%s", out)
	}
	for _, secret := range []string{az.Key, url.QueryEscape(az.Key), wrongKey, clientSecret} {
		if strings.Contains(out, secret) {
			t.Errorf("a secret appears in the logs:\n%s", out)
		}
		for _, s := range shown {
			if strings.Contains(s, secret) {
				t.Errorf("a secret appears in an error or a printed store: %s", s)
			}
		}
	}
}
