package gcsstore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cairnbackup/cairn/internal/testservers"
	"github.com/cairnbackup/cairn/plugins/storage-gcs/gcsstore"
	"github.com/cairnbackup/cairn/sdk/storage"
	"github.com/cairnbackup/cairn/sdk/storage/storagetest"
)

// emulatorURI is the URI of bucket (and path) on the emulator.
func emulatorURI(g *testservers.FakeGCS, bucketPath string) string {
	return "gs://" + bucketPath + "?GCS_ENDPOINT=" + url.QueryEscape(g.Endpoint)
}

func open(t testing.TB, uri string) storage.Store {
	t.Helper()
	s, err := gcsstore.Provider{}.Open(context.Background(), uri)
	if err != nil {
		t.Fatalf("opening store: %v", err)
	}
	return s
}

// newBucket creates an empty bucket for one subtest.
func newBucket(t *testing.T, g *testservers.FakeGCS) string {
	t.Helper()
	name := fmt.Sprintf("t-%d", bucketSeq.Add(1))
	if err := g.CreateBucket(context.Background(), name); err != nil {
		t.Fatal(err)
	}
	return name
}

var bucketSeq atomic.Int64

func TestConformance(t *testing.T) {
	g := testservers.StartFakeGCS(t)
	storagetest.Run(t, storagetest.Config{
		NewStore: func(t *testing.T) storage.Store {
			return open(t, emulatorURI(g, newBucket(t, g)))
		},
		SkipLarge: testing.Short(),
	})
}

// TestConformancePrefixed runs the kit on a store opened at
// bucket/sub/path, next to objects outside that path, and checks that
// nothing was written, changed or deleted outside it.
func TestConformancePrefixed(t *testing.T) {
	g := testservers.StartFakeGCS(t)
	outside := []string{"sub/pat", "sub/path", "sub/path.x", "sub/pathx/y", "sub0", "other/sub/path/z"}
	storagetest.Run(t, storagetest.Config{
		NewStore: func(t *testing.T) storage.Store {
			bucket := newBucket(t, g)
			root := open(t, emulatorURI(g, bucket))
			for _, name := range outside {
				if err := storage.WriteAll(context.Background(), root, name, []byte("outside "+name), storage.WriteOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			t.Cleanup(func() {
				defer root.Close()
				ctx := context.Background()
				for _, name := range outside {
					got, err := storage.ReadAll(ctx, root, name)
					if err != nil || string(got) != "outside "+name {
						t.Errorf("object %s outside the store's path: %q, %v", name, got, err)
					}
				}
				err := root.List(ctx, storage.ListOptions{}, func(o storage.ObjectInfo) error {
					if !strings.HasPrefix(o.Name, "sub/path/") && !contains(outside, o.Name) {
						t.Errorf("object %s written outside the store's path sub/path/", o.Name)
					}
					return nil
				})
				if err != nil {
					t.Errorf("listing the bucket: %v", err)
				}
			})
			return open(t, emulatorURI(g, bucket+"/sub/path"))
		},
		SkipLarge: testing.Short(),
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestConformanceOverPlugin runs the kit through the plugin binary, as
// cairn's host uses it.
func TestConformanceOverPlugin(t *testing.T) {
	g := testservers.StartFakeGCS(t)
	bin := pluginBinary(t)
	storagetest.Run(t, storagetest.Config{
		NewStore: func(t *testing.T) storage.Store {
			return storagetest.OverPlugin(t, bin, emulatorURI(g, newBucket(t, g)+"/over/plugin"))
		},
		SkipLarge: testing.Short(),
	})
}

var (
	buildOnce sync.Once
	buildBin  string
	buildErr  error
	buildDir  string
)

func pluginBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "storage-gcs-test")
		if err != nil {
			buildErr = err
			return
		}
		buildDir = dir
		buildBin = filepath.Join(dir, "storage-gcs")
		out, err := exec.Command("go", "build", "-o", buildBin, "github.com/cairnbackup/cairn/plugins/storage-gcs").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("building the plugin: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

func TestUnknownParameter(t *testing.T) {
	_, err := gcsstore.Provider{}.Open(context.Background(), "gs://b?GCS_ENDPOINT=http://127.0.0.1:1/&REGION=eu&AUTH=implicit")
	if !errors.Is(err, storage.ErrInvalidArgument) || !strings.Contains(err.Error(), "REGION") {
		t.Fatalf("Open with an unknown parameter = %v, want ErrInvalidArgument naming REGION", err)
	}
}

func TestMissingBucket(t *testing.T) {
	g := testservers.StartFakeGCS(t)
	// Count requests on the way, to check the 404 is not retried.
	var requests atomic.Int64
	proxy := countingProxy(t, g.URL, &requests)
	_, err := gcsstore.Provider{}.Open(context.Background(), "gs://no-such-bucket/p?GCS_ENDPOINT="+url.QueryEscape(proxy+"/storage/v1/"))
	if !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Open of a missing bucket = %v, want ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), "bucket no-such-bucket does not exist") {
		t.Errorf("Open of a missing bucket = %q, want it to name the bucket", err)
	}
	if storage.IsRetryable(err) {
		t.Errorf("Open of a missing bucket = %v, marked retryable", err)
	}
	if n := requests.Load(); n != 1 {
		t.Errorf("Open of a missing bucket made %d requests, want 1 (no retries)", n)
	}
}

func countingProxy(t *testing.T, target string, n *atomic.Int64) string {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// serviceAccountKey returns a syntactically valid service account key
// whose tokens are fetched from tokenURL, and the secrets in it.
func serviceAccountKey(t *testing.T, tokenURL string) (b64 string, secrets []string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	keyID := "b0f6d1e2c3a4958677a8b9c0d1e2f3a4b5c6d7e8"
	js, err := json.Marshal(map[string]string{
		"type":           "service_account",
		"project_id":     "cairn-test",
		"private_key_id": keyID,
		"private_key":    keyPEM,
		"client_email":   "backup@cairn-test.iam.gserviceaccount.com",
		"client_id":      "1234567890",
		"token_uri":      tokenURL,
	})
	if err != nil {
		t.Fatal(err)
	}
	b64 = base64.StdEncoding.EncodeToString(js)
	// The key body without PEM armour: any 40 characters of it would do.
	body := strings.Join(strings.Split(keyPEM, "\n")[1:4], "")
	return b64, []string{b64, url.QueryEscape(b64), keyID, body}
}

// logCapture is a slog handler keeping every line.
func logCapture() (*slog.Logger, *bytes.Buffer, *sync.Mutex) {
	var (
		buf bytes.Buffer
		mu  sync.Mutex
	)
	h := slog.NewJSONHandler(lockedWriter{&buf, &mu}, &slog.HandlerOptions{Level: slog.LevelDebug})
	return slog.New(h), &buf, &mu
}

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// TestBadCredentials: a key the token service rejects gives
// ErrPermissionDenied at Open, at once, and neither the error nor the
// logs show the key.
func TestBadCredentials(t *testing.T) {
	g := testservers.StartFakeGCS(t)
	var tokenRequests atomic.Int64
	tokens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tokenRequests.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":"invalid_grant","error_description":"Invalid JWT Signature."}`)
	}))
	defer tokens.Close()
	creds, secrets := serviceAccountKey(t, tokens.URL+"/token")
	logger, logs, mu := logCapture()

	for _, uri := range []string{
		"gs://" + g.Bucket + "/p?AUTH=specified&CREDENTIALS=" + url.QueryEscape(creds) + "&GCS_ENDPOINT=" + url.QueryEscape(g.Endpoint),
		"gs://" + g.Bucket + "/p?GCS_ENDPOINT=" + url.QueryEscape(g.Endpoint) + "&CREDENTIALS=" + creds,
	} {
		tokenRequests.Store(0)
		_, err := gcsstore.Provider{Logger: logger}.Open(context.Background(), uri)
		if !errors.Is(err, storage.ErrPermissionDenied) {
			t.Fatalf("Open with a rejected key = %v, want ErrPermissionDenied", err)
		}
		if storage.IsRetryable(err) {
			t.Errorf("Open with a rejected key = %v, marked retryable", err)
		}
		if n := tokenRequests.Load(); n != 1 {
			t.Errorf("Open with a rejected key asked for a token %d times, want 1 (no retries)", n)
		}
		for _, secret := range secrets {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("the error shows a secret: %v", err)
			}
		}
		t.Logf("error: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, secret := range secrets {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the logs show a secret:\n%s", logs)
		}
	}
}

// TestRejectedByService: 401 and 403 from the service are
// ErrPermissionDenied, not retried. (fake-gcs-server checks no
// credentials, so a stand-in answers as GCS does.)
func TestRejectedByService(t *testing.T) {
	for _, code := range []int{http.StatusUnauthorized, http.StatusForbidden} {
		var requests atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			requests.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			fmt.Fprintf(w, `{"error":{"code":%d,"message":"backup@cairn-test.iam.gserviceaccount.com does not have storage.objects.list access to the Google Cloud Storage bucket.","errors":[{"reason":"forbidden"}]}}`, code)
		}))
		_, err := gcsstore.Provider{}.Open(context.Background(), "gs://b?GCS_ENDPOINT="+url.QueryEscape(srv.URL+"/storage/v1/"))
		srv.Close()
		if !errors.Is(err, storage.ErrPermissionDenied) || storage.IsRetryable(err) {
			t.Errorf("Open answered %d = %v, want ErrPermissionDenied, not retryable", code, err)
		}
		if n := requests.Load(); n != 1 {
			t.Errorf("Open answered %d made %d requests, want 1", code, n)
		}
	}
}

// TestTransientErrors: 503s are retried a bounded number of times, then
// reported as retryable ErrUnavailable; a call that recovers succeeds.
func TestTransientErrors(t *testing.T) {
	g := testservers.StartFakeGCS(t)
	u, _ := url.Parse(g.URL)
	rp := httputil.NewSingleHostReverseProxy(u)
	var failures, requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if failures.Add(-1) >= 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"error":{"code":503,"message":"Service Unavailable"}}`)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	defer srv.Close()
	ctx := context.Background()
	s := open(t, "gs://"+g.Bucket+"?GCS_ENDPOINT="+url.QueryEscape(srv.URL+"/storage/v1/"))
	defer s.Close()

	failures.Store(2)
	if err := storage.WriteAll(ctx, s, "obj", []byte("data"), storage.WriteOptions{}); err != nil {
		t.Fatalf("write through two 503s: %v", err)
	}
	failures.Store(2)
	if got, err := storage.ReadAll(ctx, s, "obj"); err != nil || string(got) != "data" {
		t.Fatalf("read through two 503s = %q, %v", got, err)
	}

	failures.Store(1 << 30)
	requests.Store(0)
	_, err := s.Stat(ctx, "obj")
	if !errors.Is(err, storage.ErrUnavailable) || !storage.IsRetryable(err) {
		t.Fatalf("Stat answered 503 = %v, want retryable ErrUnavailable", err)
	}
	if n := requests.Load(); n < 2 || n > 5 {
		t.Errorf("Stat answered 503 made %d requests, want 2 to 5 (bounded retries)", n)
	}
	// Uploads too give up after a bounded number of attempts.
	requests.Store(0)
	err = storage.WriteAll(ctx, s, "obj2", []byte("data"), storage.WriteOptions{})
	if !errors.Is(err, storage.ErrUnavailable) || !storage.IsRetryable(err) {
		t.Fatalf("write answered 503 = %v, want retryable ErrUnavailable", err)
	}
	if n := requests.Load(); n < 2 || n > 5 {
		t.Errorf("write answered 503 made %d requests, want 2 to 5 (bounded retries)", n)
	}
}

// TestSpecifiedCredentials: with CREDENTIALS and GCS_ENDPOINT, the store
// authenticates with the key (its token reaches the server), works, and
// logs nothing secret.
func TestSpecifiedCredentials(t *testing.T) {
	g := testservers.StartFakeGCS(t)
	tokens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"access_token":"ya29.cairn-test-token","token_type":"Bearer","expires_in":3600}`)
	}))
	defer tokens.Close()
	u, _ := url.Parse(g.URL)
	rp := httputil.NewSingleHostReverseProxy(u)
	var unauthenticated atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer ya29.cairn-test-token" {
			unauthenticated.Add(1)
		}
		rp.ServeHTTP(w, r)
	}))
	defer srv.Close()
	creds, secrets := serviceAccountKey(t, tokens.URL+"/token")
	secrets = append(secrets, "ya29.cairn-test-token")
	logger, logs, mu := logCapture()

	ctx := context.Background()
	s, err := gcsstore.Provider{Logger: logger}.Open(ctx, "gs://"+g.Bucket+"/p?AUTH=specified&CREDENTIALS="+url.QueryEscape(creds)+"&GCS_ENDPOINT="+url.QueryEscape(srv.URL+"/storage/v1/"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	if err := storage.WriteAll(ctx, s, "obj", []byte("data"), storage.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, err := storage.ReadAll(ctx, s, "obj"); err != nil || string(got) != "data" {
		t.Fatalf("ReadAll = %q, %v", got, err)
	}
	_, err = s.Stat(ctx, "missing")
	if !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Stat(missing) = %v, want ErrNotFound", err)
	}
	if n := unauthenticated.Load(); n != 0 {
		t.Errorf("%d requests reached the server without the key's token", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if logs.Len() == 0 {
		t.Errorf("nothing logged; want the debug line of Open")
	}
	for _, secret := range secrets {
		if strings.Contains(logs.String()+err.Error(), secret) {
			t.Errorf("a secret is shown in the logs or errors:\n%s\n%v", logs, err)
		}
	}
}
