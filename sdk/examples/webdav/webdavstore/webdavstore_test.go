package webdavstore_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/net/webdav"

	"github.com/cairnbackup/cairn/sdk/examples/webdav/webdavstore"
	"github.com/cairnbackup/cairn/sdk/storage"
	"github.com/cairnbackup/cairn/sdk/storage/storagetest"
)

// pluginBinary is the plugin built by TestMain, or "" with buildErr.
var (
	pluginBinary string
	buildErr     error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "storage-webdav-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin := filepath.Join(dir, "storage-webdav")
	// Built the way the README tells authors to: from the plugin's own
	// directory, the parent of this package.
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		buildErr = fmt.Errorf("building the plugin: %v\n%s", err, out)
	} else {
		pluginBinary = bin
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// moveKey marks the context of a MOVE that may overwrite.
type moveKey struct{}

// renameOverFS makes x/net/webdav's overwriting MOVE atomic, as nginx's
// is. x/net/webdav follows RFC 4918 9.9.3 to the letter: it deletes the
// destination, then renames the source onto it, so for a moment the name
// is missing and a concurrent reader gets 404 (the kit's
// ConcurrentReadersWriters case catches it a few times in a hundred
// runs). Here the delete of a file by a MOVE is skipped, and the rename
// (os.Rename) replaces the file atomically. Collections are still
// deleted as the RFC says; the store never MOVEs onto one that holds
// objects.
type renameOverFS struct{ webdav.FileSystem }

func (fs renameOverFS) RemoveAll(ctx context.Context, name string) error {
	if ctx.Value(moveKey{}) != nil {
		if fi, err := fs.Stat(ctx, name); err == nil && !fi.IsDir() {
			return nil
		}
	}
	return fs.FileSystem.RemoveAll(ctx, name)
}

// newServer starts an x/net/webdav server on a fresh directory, with
// overwriting MOVEs made atomic (see renameOverFS). middleware, when set,
// wraps its handler.
func newServer(t *testing.T, middleware func(http.Handler) http.Handler) *httptest.Server {
	t.Helper()
	dav := &webdav.Handler{
		FileSystem: renameOverFS{webdav.Dir(t.TempDir())},
		LockSystem: webdav.NewMemLS(),
	}
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "MOVE" {
			r = r.WithContext(context.WithValue(r.Context(), moveKey{}, true))
		}
		dav.ServeHTTP(w, r)
	})
	if middleware != nil {
		h = middleware(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func uriOf(srv *httptest.Server, path string) string {
	return "webdav+http://" + srv.Listener.Addr().String() + path
}

func open(t *testing.T, uri string) storage.Store {
	t.Helper()
	s, err := webdavstore.Provider{}.Open(context.Background(), uri)
	if err != nil {
		t.Fatalf("opening %s: %v", uri, err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, storagetest.Config{
		NewStore: func(t *testing.T) storage.Store {
			return open(t, uriOf(newServer(t, nil), "/"))
		},
		FileDirConflicts: true,
		SkipLarge:        testing.Short(),
	})
}

// TestConformanceSubPath runs the kit on a store opened at a path below
// the server's root, which does not exist yet, next to objects it must
// not see or touch, one of them a sibling whose name extends the root's.
func TestConformanceSubPath(t *testing.T) {
	outside := map[string]string{
		"outside":          "at the server's root",
		"nested/rootx":     "a sibling whose name starts like the root",
		"nested/other/obj": "in a sibling collection",
	}
	storagetest.Run(t, storagetest.Config{
		NewStore: func(t *testing.T) storage.Store {
			srv := newServer(t, nil)
			top := open(t, uriOf(srv, "/"))
			ctx := context.Background()
			for name, data := range outside {
				if err := storage.WriteAll(ctx, top, name, []byte(data), storage.WriteOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			t.Cleanup(func() {
				defer top.Close()
				for name, want := range outside {
					got, err := storage.ReadAll(ctx, top, name)
					if err != nil || string(got) != want {
						t.Errorf("object %s outside the store's root: %q, %v; want %q", name, got, err, want)
					}
				}
			})
			return open(t, uriOf(srv, "/nested/root"))
		},
		FileDirConflicts: true,
		SkipLarge:        true, // the same code path as TestConformance
	})
}

// TestConformancePrefixed runs the kit through storage.Prefixed, the
// wrapper cairn uses for sub-directories of a store.
func TestConformancePrefixed(t *testing.T) {
	storagetest.Run(t, storagetest.Config{
		NewStore: func(t *testing.T) storage.Store {
			return storagetest.PrefixedStore(open(t, uriOf(newServer(t, nil), "/")), "tenant/backups")
		},
		FileDirConflicts: true,
		SkipLarge:        true,
	})
}

// TestConformanceOverPlugin runs the kit on the plugin binary, over
// go-plugin's gRPC, as cairn's host talks to it.
func TestConformanceOverPlugin(t *testing.T) {
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	storagetest.Run(t, storagetest.Config{
		NewStore: func(t *testing.T) storage.Store {
			return storagetest.OverPlugin(t, pluginBinary, uriOf(newServer(t, nil), "/over/plugin"))
		},
		FileDirConflicts: true,
		SkipLarge:        testing.Short(),
	})
}

func TestOpenRefuses(t *testing.T) {
	const password = "pa55-w0rd+secret"
	srv := newServer(t, nil)
	host := srv.Listener.Addr().String()
	pw := url.QueryEscape(password)
	for _, tc := range []struct {
		uri  string
		want string // in the error
	}{
		{"s3://" + host + "/x", "scheme"},
		{"webdav+http:///x", "no host"},
		{"webdav+http://" + host + "/x?WEBDAV_USER=u&WEBDAV_PASSWORD=" + pw + "&REGION=x&AUTH=y", "unknown parameters AUTH, REGION"},
		{"webdav+http://u:" + pw + "@" + host + "/x", "user info"},
		{"webdav+http://" + host + "/x?WEBDAV_PASSWORD=" + pw, "without WEBDAV_USER"},
		{"webdav+http://" + host + "/x?WEBDAV_USER=u&WEBDAV_PASSWORD=" + pw + "&WEBDAV_INSECURE_SKIP_VERIFY=" + pw, "not true or false"},
		{"webdav+http://" + host + "/x?WEBDAV_USER=u&WEBDAV_USER=v&WEBDAV_PASSWORD=" + pw, "given 2 times"},
		{"webdav+http://" + host + "/x?WEBDAV_PASSWORD=" + pw + "&WEBDAV_USER=%zz", "malformed"},
		{"webdav+http://" + host + "/x%zz?WEBDAV_PASSWORD=" + pw, "malformed"},
		{"webdav+http://" + host + "/x#frag?WEBDAV_PASSWORD=" + pw, "fragment"},
	} {
		_, err := webdavstore.Provider{}.Open(context.Background(), tc.uri)
		if !errors.Is(err, storage.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%s) = %v, want ErrInvalidArgument saying %q", tc.uri, err, tc.want)
		}
		checkNoSecret(t, err, password)
	}
}

func checkNoSecret(t *testing.T, err error, secret string) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range []string{secret, url.QueryEscape(secret), url.PathEscape(secret)} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q contains the password", err)
		}
	}
}

// basicAuth refuses requests without user "cairn" and password.
func basicAuth(password string) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != "cairn" || p != password {
				w.Header().Set("WWW-Authenticate", `Basic realm="dav"`)
				http.Error(w, "who are you?", http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
}

// TestPasswordNeverInErrors collects the errors of every call against a
// server that refuses the password, a server that went away and a server
// that fails, and looks for the password in them.
func TestPasswordNeverInErrors(t *testing.T) {
	const password = "Hunter2:/?#[]@!$&'()*+,;=%"
	ctx := context.Background()
	srv := newServer(t, basicAuth(password))
	query := "?WEBDAV_USER=cairn&WEBDAV_PASSWORD=" + url.QueryEscape(password)

	// The right password works.
	s := open(t, uriOf(srv, "/dir"+query))
	if err := storage.WriteAll(ctx, s, "a/b", []byte("x"), storage.WriteOptions{}); err != nil {
		t.Fatalf("writing with the right password: %v", err)
	}
	if got, err := storage.ReadAll(ctx, s, "a/b"); err != nil || string(got) != "x" {
		t.Fatalf("reading with the right password: %q, %v", got, err)
	}
	if str := fmt.Sprint(s); strings.Contains(str, url.QueryEscape(password)) || strings.Contains(str, password) {
		t.Errorf("the store's String %q contains the password", str)
	}
	s.Close()

	// A wrong password is refused at Open.
	wrong := "?WEBDAV_USER=cairn&WEBDAV_PASSWORD=" + url.QueryEscape(password+"x")
	_, err := webdavstore.Provider{}.Open(ctx, uriOf(srv, "/dir"+wrong))
	if !errors.Is(err, storage.ErrPermissionDenied) {
		t.Errorf("Open with a wrong password = %v, want ErrPermissionDenied", err)
	}
	checkNoSecret(t, err, password)

	// Every call of a store whose server fails, or has gone away.
	failing := newServer(t, func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == "PROPFIND" && r.URL.Path == "/dir/" && r.Header.Get("Depth") == "0" {
				w.WriteHeader(http.StatusNotFound) // lets Open succeed
				return
			}
			http.Error(w, "no: "+r.Header.Get("Authorization"), http.StatusForbidden)
		})
	})
	gone := newServer(t, nil)
	goneStore := open(t, uriOf(gone, "/dir"+query))
	gone.Close()
	for _, s := range []storage.Store{open(t, uriOf(failing, "/dir"+query)), goneStore} {
		var errs []error
		_, err := s.Stat(ctx, "a")
		errs = append(errs, err)
		_, err = s.Read(ctx, "a", 0, -1)
		errs = append(errs, err)
		errs = append(errs, s.List(ctx, storage.ListOptions{}, func(storage.ObjectInfo) error { return nil }))
		errs = append(errs, s.Delete(ctx, "a"))
		errs = append(errs, storage.WriteAll(ctx, s, "a", []byte("x"), storage.WriteOptions{}))
		for _, err := range errs {
			if err == nil {
				t.Errorf("a call to a failing server returned no error")
			}
			checkNoSecret(t, err, password)
		}
		s.Close()
	}
	_, err = webdavstore.Provider{}.Open(ctx, uriOf(gone, "/dir"+query))
	if !storage.IsRetryable(err) {
		t.Errorf("Open of a server that went away = %v, want a retryable error", err)
	}
	checkNoSecret(t, err, password)
}

// statusServer answers every request for which fail says so with its
// status, and passes the others to x/net/webdav.
func statusServer(t *testing.T, fail func(r *http.Request) int) *httptest.Server {
	return newServer(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if code := fail(r); code != 0 {
				http.Error(w, http.StatusText(code), code)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
}

func TestStatusMapping(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		method    string
		status    int
		want      error
		retryable bool
	}{
		{"PROPFIND", http.StatusUnauthorized, storage.ErrPermissionDenied, false},
		{"PROPFIND", http.StatusForbidden, storage.ErrPermissionDenied, false},
		{"PROPFIND", http.StatusTooManyRequests, storage.ErrUnavailable, true},
		{"PROPFIND", http.StatusBadGateway, storage.ErrUnavailable, true},
		{"GET", http.StatusServiceUnavailable, storage.ErrUnavailable, true},
		{"PUT", http.StatusInsufficientStorage, storage.ErrResourceExhausted, true},
		{"PUT", http.StatusInternalServerError, storage.ErrUnavailable, true},
		{"MOVE", http.StatusForbidden, storage.ErrPermissionDenied, false},
		{"MOVE", http.StatusServiceUnavailable, storage.ErrUnavailable, true},
		{"MKCOL", http.StatusInsufficientStorage, storage.ErrResourceExhausted, true},
	} {
		t.Run(fmt.Sprintf("%s-%d", tc.method, tc.status), func(t *testing.T) {
			var failing atomic.Bool
			srv := statusServer(t, func(r *http.Request) int {
				if failing.Load() && r.Method == tc.method {
					return tc.status
				}
				return 0
			})
			s := open(t, uriOf(srv, "/"))
			defer s.Close()
			if err := storage.WriteAll(ctx, s, "obj", []byte("data"), storage.WriteOptions{}); err != nil {
				t.Fatal(err)
			}
			failing.Store(true)
			var err error
			switch tc.method {
			case "PROPFIND":
				_, err = s.Stat(ctx, "obj")
			case "GET":
				_, err = storage.ReadAll(ctx, s, "obj")
			default:
				err = storage.WriteAll(ctx, s, "new/obj", []byte("data"), storage.WriteOptions{})
			}
			if !errors.Is(err, tc.want) || storage.IsRetryable(err) != tc.retryable {
				t.Errorf("got %v (retryable: %v), want %v (retryable: %v)", err, storage.IsRetryable(err), tc.want, tc.retryable)
			}
			failing.Store(false)
			mustList(t, s, storage.ListOptions{}, "obj")
		})
	}
}

// TestRetries checks that transient failures of idempotent calls, and of
// a MOVE the server did not perform, are retried.
func TestRetries(t *testing.T) {
	ctx := context.Background()
	var calls, failures atomic.Int32
	srv := statusServer(t, func(r *http.Request) int {
		calls.Add(1)
		// Fail every other request with a status a retry may cure.
		if calls.Load()%2 == 0 && r.Method != http.MethodPut {
			failures.Add(1)
			return []int{http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusLocked}[calls.Load()%3]
		}
		return 0
	})
	s := open(t, uriOf(srv, "/"))
	defer s.Close()
	if err := storage.WriteAll(ctx, s, "a/b/c", []byte("data"), storage.WriteOptions{IfNotExists: true}); err != nil {
		t.Fatalf("writing: %v", err)
	}
	if got, err := storage.ReadAll(ctx, s, "a/b/c"); err != nil || string(got) != "data" {
		t.Fatalf("reading: %q, %v", got, err)
	}
	mustList(t, s, storage.ListOptions{}, "a/b/c")
	if err := s.Delete(ctx, "a/b/c"); err != nil {
		t.Fatalf("deleting: %v", err)
	}
	mustList(t, s, storage.ListOptions{})
	if failures.Load() == 0 {
		t.Fatalf("no request failed; the test tests nothing")
	}
}

func mustList(t *testing.T, s storage.Store, opts storage.ListOptions, want ...string) {
	t.Helper()
	var got []string
	if err := s.List(context.Background(), opts, func(o storage.ObjectInfo) error {
		got = append(got, o.Name)
		return nil
	}); err != nil {
		t.Fatalf("List(%+v): %v", opts, err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("List(%+v) = %q, want %q", opts, got, want)
	}
}

// TestCollections checks what the kit cannot see: empty collections left
// by deletes are invisible and may become objects, TempDir is reserved,
// and a failed write leaves no temporary resource behind.
func TestCollections(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	srv := httptest.NewServer(&webdav.Handler{FileSystem: webdav.Dir(dir), LockSystem: webdav.NewMemLS()})
	defer srv.Close()
	s := open(t, uriOf(srv, "/"))
	defer s.Close()

	for _, name := range []string{"a/b/c", "a/d"} {
		if err := storage.WriteAll(ctx, s, name, []byte(name), storage.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"a/b/c", "a/d"} {
		if err := s.Delete(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "a", "b")); err != nil {
		t.Fatalf("the emptied collection a/b is gone from the server (%v); the test expects it to remain", err)
	}
	mustList(t, s, storage.ListOptions{})
	mustList(t, s, storage.ListOptions{Delimiter: "/"})
	mustList(t, s, storage.ListOptions{Prefix: "a/", Delimiter: "/"})

	// An object may take the name of an empty collection.
	if err := storage.WriteAll(ctx, s, "a/b", []byte("now an object"), storage.WriteOptions{IfNotExists: true}); err != nil {
		t.Fatalf("writing over the empty collection a/b: %v", err)
	}
	if err := storage.WriteAll(ctx, s, "a", []byte("x"), storage.WriteOptions{}); !errors.Is(err, storage.ErrAlreadyExists) {
		t.Errorf("writing a, a prefix of a/b = %v, want ErrAlreadyExists", err)
	}
	mustList(t, s, storage.ListOptions{Delimiter: "/"}, "a/")

	// TempDir is reserved.
	if _, err := s.Stat(ctx, webdavstore.TempDir+"/x"); !errors.Is(err, storage.ErrInvalidArgument) {
		t.Errorf("Stat under %s = %v, want ErrInvalidArgument", webdavstore.TempDir, err)
	}
	mustList(t, s, storage.ListOptions{Prefix: webdavstore.TempDir + "/"})

	// Failed and aborted writes leave TempDir empty.
	w, err := s.Write(ctx, "c/d", storage.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("abandoned"))
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if err := storage.WriteAll(ctx, s, "a/b/below", []byte("x"), storage.WriteOptions{}); !errors.Is(err, storage.ErrAlreadyExists) {
		t.Errorf("writing below the object a/b = %v, want ErrAlreadyExists", err)
	}
	if err := storage.WriteAll(ctx, s, "a/b", []byte("y"), storage.WriteOptions{IfNotExists: true}); !errors.Is(err, storage.ErrAlreadyExists) {
		t.Errorf("conditional write of the existing a/b = %v, want ErrAlreadyExists", err)
	}
	left, err := os.ReadDir(filepath.Join(dir, webdavstore.TempDir))
	if err != nil || len(left) != 0 {
		t.Errorf("%s holds %v (%v), want nothing", webdavstore.TempDir, left, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "c")); !os.IsNotExist(err) {
		t.Errorf("an aborted write of c/d left the collection c (%v)", err)
	}
}

// TestLocalityParam: cairn hands Open the whole URI of a locality-aware
// backup, COCKROACH_LOCALITY included.
func TestLocalityParam(t *testing.T) {
	srv := newServer(t, nil)
	for _, q := range []string{"region%3Dus-east1", "default"} {
		s := open(t, uriOf(srv, "/loc?"+webdavstore.ParamLocality+"="+q))
		s.Close()
	}
}

func TestTLS(t *testing.T) {
	srv := httptest.NewTLSServer(&webdav.Handler{FileSystem: webdav.Dir(t.TempDir()), LockSystem: webdav.NewMemLS()})
	defer srv.Close()
	uri := "webdav://" + srv.Listener.Addr().String() + "/tls"
	if _, err := (webdavstore.Provider{}).Open(context.Background(), uri); err == nil {
		t.Errorf("Open of a server with a self-signed certificate succeeded without %s", webdavstore.ParamInsecureSkipVerify)
	}
	s := open(t, uri+"?"+webdavstore.ParamInsecureSkipVerify+"=true")
	defer s.Close()
	if err := storage.WriteAll(context.Background(), s, "obj", []byte("over TLS"), storage.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	mustList(t, s, storage.ListOptions{}, "obj")
}
