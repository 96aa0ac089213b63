package s3store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cairnbackup/cairn/core/redact"
	"github.com/cairnbackup/cairn/internal/testservers"
	"github.com/cairnbackup/cairn/plugins/storage-s3/s3store"
	"github.com/cairnbackup/cairn/sdk/storage"
	"github.com/cairnbackup/cairn/sdk/storage/storagetest"
)

// logCapture is a slog handler keeping every line, to check that no
// secret is logged.
type logCapture struct {
	mu    *sync.Mutex
	buf   *bytes.Buffer
	inner slog.Handler
}

func newLogCapture() *logCapture {
	c := &logCapture{mu: &sync.Mutex{}, buf: &bytes.Buffer{}}
	c.inner = slog.NewJSONHandler(lockedBuffer{c}, &slog.HandlerOptions{Level: slog.LevelDebug})
	return c
}

type lockedBuffer struct{ c *logCapture }

func (l lockedBuffer) Write(p []byte) (int, error) {
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	return l.c.buf.Write(p)
}

func (c *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (c *logCapture) Handle(ctx context.Context, r slog.Record) error {
	return c.inner.Handle(ctx, r)
}
func (c *logCapture) WithAttrs(a []slog.Attr) slog.Handler {
	return &logCapture{mu: c.mu, buf: c.buf, inner: c.inner.WithAttrs(a)}
}
func (c *logCapture) WithGroup(g string) slog.Handler {
	return &logCapture{mu: c.mu, buf: c.buf, inner: c.inner.WithGroup(g)}
}
func (c *logCapture) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

func open(t testing.TB, uri string, logger *slog.Logger) storage.Store {
	t.Helper()
	s, err := s3store.Provider{Logger: logger}.Open(context.Background(), uri)
	if err != nil {
		t.Fatalf("opening %s: %v", redact.URI(uri), err)
	}
	return s
}

// noSecrets fails the test if the MinIO secret shows in the captured logs.
func noSecrets(t *testing.T, m *testservers.MinIO, logs *logCapture) {
	t.Cleanup(func() {
		if strings.Contains(logs.String(), m.SecretKey) {
			t.Errorf("the secret key appears in the logs")
		}
	})
}

func TestConformance(t *testing.T) {
	m := testservers.StartMinIO(t)
	logs := newLogCapture()
	noSecrets(t, m, logs)
	storagetest.Run(t, storagetest.Config{
		NewStore: func(t *testing.T) storage.Store {
			return open(t, m.URI(m.CreateBucket(t), "", ""), slog.New(logs))
		},
		SkipLarge: testing.Short(),
		// MinIO cannot list an object that is also a directory, and the
		// store refuses to make one there (see conflicts.go).
		FileDirConflicts: true,
	})
	checkNoUploads(t, m)
}

// TestConformancePrefixed runs the kit on stores rooted at
// bucket/sub/path/N, next to objects that share the root's name as a
// string prefix, and checks afterwards that nothing escaped the root.
func TestConformancePrefixed(t *testing.T) {
	m := testservers.StartMinIO(t)
	logs := newLogCapture()
	noSecrets(t, m, logs)
	client := m.Client()
	ctx := context.Background()
	neighbours := map[string]string{}
	var n atomic.Int64
	storagetest.Run(t, storagetest.Config{
		NewStore: func(t *testing.T) storage.Store {
			root := fmt.Sprintf("sub/path/%d", n.Add(1))
			// Objects the store must neither see nor touch. (Not one at
			// root itself: on MinIO that would hide everything below it.)
			for _, k := range []string{root + "x", root + "x/obj", root + ".d/obj", "sub/path/top"} {
				putRaw(t, client, m.Bucket, k, "neighbour "+k)
				neighbours[k] = "neighbour " + k
			}
			t.Cleanup(func() {
				pages := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: aws.String(m.Bucket)})
				for pages.HasMorePages() {
					out, err := pages.NextPage(ctx)
					if err != nil {
						t.Fatalf("listing the bucket: %v", err)
					}
					for _, o := range out.Contents {
						k := aws.ToString(o.Key)
						if _, ok := neighbours[k]; !ok && !storeRoot.MatchString(k) {
							t.Errorf("object %q escaped its store's root", k)
						}
					}
				}
			})
			return open(t, m.URI(m.Bucket, root, ""), slog.New(logs))
		},
		SkipLarge:        true, // the root store runs it
		FileDirConflicts: true,
		// Keep the listing cases quick: paging is checked at the root.
		ManyObjects: 1100,
	})
	for k, want := range neighbours {
		if got := getRaw(t, client, m.Bucket, k); got != want {
			t.Errorf("neighbour %q = %q, want %q", k, got, want)
		}
	}
	checkNoUploads(t, m)
}

// storeRoot matches the keys TestConformancePrefixed's stores may write.
var storeRoot = regexp.MustCompile(`^sub/path/[0-9]+/`)

// TestConformanceOverPlugin runs the kit through the storage-s3 binary,
// as cairn's host talks to it.
func TestConformanceOverPlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the plugin binary")
	}
	m := testservers.StartMinIO(t)
	bin := filepath.Join(t.TempDir(), "storage-s3")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/cairnbackup/cairn/plugins/storage-s3")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the plugin: %v\n%s", err, out)
	}
	storagetest.Run(t, storagetest.Config{
		NewStore: func(t *testing.T) storage.Store {
			return storagetest.OverPlugin(t, bin, m.URI(m.CreateBucket(t), "over/plugin", ""))
		},
		SkipLarge:        true,
		FileDirConflicts: true,
	})
}

func TestMultipart(t *testing.T) {
	m := testservers.StartMinIO(t)
	ctx := context.Background()
	s := open(t, m.URI(m.Bucket, "mp", ""), nil)
	defer s.Close()
	big := pattern(1, 2*s3store.PartSize+12345)

	// A write of several parts, in odd-sized chunks.
	w, err := s.Write(ctx, "big", storage.WriteOptions{IfNotExists: true})
	if err != nil {
		t.Fatal(err)
	}
	for rest := big; len(rest) > 0; {
		k := min(len(rest), 3<<20+7)
		if _, err := w.Write(rest[:k]); err != nil {
			t.Fatalf("writing: %v", err)
		}
		rest = rest[k:]
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	mustRead(t, s, "big", 0, -1, big)
	mustRead(t, s, "big", s3store.PartSize-10, 20, big[s3store.PartSize-10:s3store.PartSize+10])

	// A conditional multipart write loses to the existing object, and
	// leaves no upload behind.
	if err := storage.WriteAll(ctx, s, "big", pattern(2, s3store.PartSize+1), storage.WriteOptions{IfNotExists: true}); !errors.Is(err, storage.ErrAlreadyExists) {
		t.Errorf("conditional multipart overwrite = %v, want ErrAlreadyExists", err)
	}
	mustRead(t, s, "big", 0, -1, big)

	// Aborting after some parts leaves nothing, and the old object.
	w, err = s.Write(ctx, "big", storage.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(pattern(3, s3store.PartSize+5)); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(); err != nil {
		t.Fatalf("Abort: %v", err)
	}
	mustRead(t, s, "big", 0, -1, big)

	// An exact multiple of the part size.
	exact := pattern(4, s3store.PartSize)
	if err := storage.WriteAll(ctx, s, "exact", exact, storage.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	mustRead(t, s, "exact", 0, -1, exact)
	checkNoUploads(t, m)
}

func TestStorageClass(t *testing.T) {
	m := testservers.StartMinIO(t)
	ctx := context.Background()
	s := open(t, m.URI(m.Bucket, "", "S3_STORAGE_CLASS=REDUCED_REDUNDANCY"), nil)
	defer s.Close()
	if err := storage.WriteAll(ctx, s, "obj", []byte("x"), storage.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	out, err := m.Client().HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(m.Bucket), Key: aws.String("obj")})
	if err != nil {
		t.Fatal(err)
	}
	if out.StorageClass != "REDUCED_REDUNDANCY" {
		t.Errorf("storage class = %q, want REDUCED_REDUNDANCY", out.StorageClass)
	}
}

// TestBadCredentials checks that a wrong secret or an unknown key gives
// ErrPermissionDenied after one request (no retries), with neither secret
// in the errors or the logs.
func TestBadCredentials(t *testing.T) {
	m := testservers.StartMinIO(t)
	proxy := testservers.StartFaultProxy(t, m.Endpoint, testservers.FaultConfig{})
	const wrongSecret = "wrong-secret-7d1e9a"
	logs := newLogCapture()
	for _, tc := range []struct{ name, uri string }{
		{"WrongSecret", fmt.Sprintf("s3://%s/p?AWS_ACCESS_KEY_ID=%s&AWS_SECRET_ACCESS_KEY=%s&AWS_ENDPOINT=%s", m.Bucket, m.AccessKey, wrongSecret, proxy.URL)},
		{"UnknownKey", fmt.Sprintf("s3://%s/p?AWS_ACCESS_KEY_ID=NOSUCHKEY&AWS_SECRET_ACCESS_KEY=%s&AWS_SESSION_TOKEN=%s&AWS_ENDPOINT=%s", m.Bucket, wrongSecret, wrongSecret+"-tok", proxy.URL)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t, tc.uri, slog.New(logs))
			defer s.Close()
			ctx := context.Background()
			for op, call := range ops(s) {
				before := proxy.Requests()
				err := call(ctx)
				if !errors.Is(err, storage.ErrPermissionDenied) {
					t.Errorf("%s = %v, want ErrPermissionDenied", op, err)
					continue
				}
				if storage.IsRetryable(err) {
					t.Errorf("%s = %v, marked retryable", op, err)
				}
				// Write checks for name conflicts first (two requests).
				if n, want := proxy.Requests()-before, map[bool]int64{true: 3, false: 1}[op == "Write"]; n > want {
					t.Errorf("%s made %d requests, want at most %d (no retries)", op, n, want)
				}
				if strings.Contains(err.Error(), wrongSecret) {
					t.Errorf("%s: error %q holds the secret", op, err)
				}
			}
		})
	}
	if strings.Contains(logs.String(), wrongSecret) {
		t.Errorf("the secret appears in the logs")
	}
}

// TestMissingBucket checks that a missing bucket is ErrNotFound naming it,
// after one request.
func TestMissingBucket(t *testing.T) {
	m := testservers.StartMinIO(t)
	proxy := testservers.StartFaultProxy(t, m.Endpoint, testservers.FaultConfig{})
	const bucket = "no-such-bucket-here"
	s := open(t, fmt.Sprintf("s3://%s/p?AWS_ACCESS_KEY_ID=%s&AWS_SECRET_ACCESS_KEY=%s&AWS_ENDPOINT=%s", bucket, m.AccessKey, m.SecretKey, proxy.URL), nil)
	defer s.Close()
	ctx := context.Background()
	for op, call := range ops(s) {
		before := proxy.Requests()
		err := call(ctx)
		if !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%s = %v, want ErrNotFound", op, err)
			continue
		}
		if n, want := proxy.Requests()-before, map[bool]int64{true: 3, false: 1}[op == "Write"]; n > want {
			t.Errorf("%s made %d requests, want at most %d (no retries)", op, n, want)
		}
		// HEAD replies have no body, so Stat cannot tell a missing
		// bucket from a missing object; the others must say which.
		if op != "Stat" && !strings.Contains(err.Error(), `bucket "`+bucket+`" does not exist`) {
			t.Errorf("%s = %q, want it to say the bucket %s does not exist", op, err, bucket)
		}
	}
}

// ops are one call of each kind, for the error tests.
func ops(s storage.Store) map[string]func(context.Context) error {
	return map[string]func(context.Context) error{
		"Stat": func(ctx context.Context) error { _, err := s.Stat(ctx, "obj"); return err },
		"Read": func(ctx context.Context) error {
			r, err := s.Read(ctx, "obj", 0, -1)
			if err == nil {
				r.Close()
			}
			return err
		},
		"List": func(ctx context.Context) error {
			return s.List(ctx, storage.ListOptions{}, func(storage.ObjectInfo) error { return nil })
		},
		"Write": func(ctx context.Context) error {
			return storage.WriteAll(ctx, s, "obj", []byte("x"), storage.WriteOptions{})
		},
		"Delete": func(ctx context.Context) error { return s.Delete(ctx, "obj") },
	}
}

func TestUnknownParameter(t *testing.T) {
	t.Parallel()
	_, err := s3store.Provider{}.Open(context.Background(), "s3://b/p?AWS_ACCESS_KEY_ID=a&AWS_SECRET_ACCESS_KEY=shh-secret&AWS_REGOIN=x")
	if !errors.Is(err, storage.ErrInvalidArgument) || !strings.Contains(err.Error(), "AWS_REGOIN") {
		t.Errorf("Open = %v, want ErrInvalidArgument naming AWS_REGOIN", err)
	}
	if err != nil && strings.Contains(err.Error(), "shh-secret") {
		t.Errorf("error %q holds the secret", err)
	}
}

// TestFaults runs writes (single and multipart, plain and conditional),
// ranged reads, listings and deletes through a proxy that fails one
// request in five: a 503 SlowDown, a 500, a reset connection, a delay, a
// lost reply after the server acted, or a body cut halfway. Every operation must succeed through
// the retries and every byte must be right.
func TestFaults(t *testing.T) {
	m := testservers.StartMinIO(t)
	proxy := testservers.StartFaultProxy(t, m.Endpoint, testservers.FaultConfig{
		Seed: 42,
		Rate: 0.2,
		Weights: map[testservers.Fault]int{
			testservers.FaultSlowDown: 1, testservers.FaultInternalError: 2, testservers.FaultReset: 2,
			testservers.FaultDelay: 2, testservers.FaultLoseReply: 2, testservers.FaultCutBody: 2,
		},
		MaxDelay: 20 * time.Millisecond,
	})
	logs := newLogCapture()
	noSecrets(t, m, logs)
	uri := fmt.Sprintf("s3://%s/faulty?AWS_ACCESS_KEY_ID=%s&AWS_SECRET_ACCESS_KEY=%s&AWS_ENDPOINT=%s", m.Bucket, m.AccessKey, m.SecretKey, proxy.URL)
	s := open(t, uri, slog.New(logs))
	defer s.Close()
	ctx := context.Background()

	const objects = 50
	size := func(i int) int {
		switch {
		case i%17 == 3:
			return s3store.PartSize*2 + i*1000 // multipart
		case i%10 == 0:
			return 0
		default:
			return 1 + (i*7919)%(300<<10)
		}
	}
	name := func(i int) string { return fmt.Sprintf("dir%d/obj-%02d", i%4, i) }
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i := range objects {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			// Every third write is conditional: a lost reply must not
			// turn its own success into ErrAlreadyExists.
			opts := storage.WriteOptions{IfNotExists: i%3 == 0}
			if err := storage.WriteAll(ctx, s, name(i), pattern(uint64(i), size(i)), opts); err != nil {
				t.Errorf("writing %s: %v", name(i), err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for i := range objects {
		data := pattern(uint64(i), size(i))
		mustRead(t, s, name(i), 0, -1, data)
		if n := len(data); n > 10 {
			mustRead(t, s, name(i), int64(n/3), int64(n/2), data[n/3:n/3+n/2])
			mustRead(t, s, name(i), int64(n-7), -1, data[n-7:])
		}
		info, err := s.Stat(ctx, name(i))
		if err != nil || info.Size != int64(len(data)) {
			t.Errorf("Stat(%s) = %+v, %v; want size %d", name(i), info, err, len(data))
		}
	}
	// Conditional writes over existing objects still lose.
	for i := range 5 {
		err := storage.WriteAll(ctx, s, name(i), []byte("late"), storage.WriteOptions{IfNotExists: true})
		if !errors.Is(err, storage.ErrAlreadyExists) {
			t.Errorf("conditional overwrite of %s = %v, want ErrAlreadyExists", name(i), err)
		}
	}
	var listed []string
	if err := s.List(ctx, storage.ListOptions{}, func(o storage.ObjectInfo) error {
		listed = append(listed, o.Name)
		return nil
	}); err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(listed) != objects {
		t.Errorf("List returned %d names, want %d", len(listed), objects)
	}
	var dirs []string
	if err := s.List(ctx, storage.ListOptions{Delimiter: "/"}, func(o storage.ObjectInfo) error {
		dirs = append(dirs, o.Name)
		return nil
	}); err != nil {
		t.Fatalf("delimited List: %v", err)
	}
	if want := "[dir0/ dir1/ dir2/ dir3/]"; fmt.Sprint(dirs) != want {
		t.Errorf("delimited List = %v, want %s", dirs, want)
	}
	for i := range objects / 2 {
		if err := s.Delete(ctx, name(i)); err != nil {
			t.Errorf("Delete(%s): %v", name(i), err)
		}
		if _, err := s.Stat(ctx, name(i)); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Stat(%s) after Delete = %v, want ErrNotFound", name(i), err)
		}
	}

	t.Logf("fault proxy: %s", proxy.Summary())
	for _, f := range []testservers.Fault{testservers.FaultSlowDown, testservers.FaultInternalError,
		testservers.FaultReset, testservers.FaultDelay, testservers.FaultLoseReply, testservers.FaultCutBody} {
		if proxy.Count(f) == 0 {
			t.Errorf("no %s fault was injected", f)
		}
	}
	if frac := float64(proxy.Injected()) / float64(proxy.Requests()); frac < 0.1 {
		t.Errorf("only %.0f%% of requests were faulted", 100*frac)
	}
	// Lost replies of CreateMultipartUpload leave orphan uploads on a real
	// service too (a bucket lifecycle rule cleans them); the aborted and
	// completed ones must be gone.
}

// TestSecretsNotInErrors provokes errors of every kind with a distinctive
// secret and session token and checks that neither appears.
func TestSecretsNotInErrors(t *testing.T) {
	m := testservers.StartMinIO(t)
	logs := newLogCapture()
	const secret, token = "Zq8-very-secret-value", "tok-very-secret-value"
	ctx := context.Background()
	var errs []error
	for _, uri := range []string{
		fmt.Sprintf("s3://%s/p?AWS_ACCESS_KEY_ID=%s&AWS_SECRET_ACCESS_KEY=%s&AWS_SESSION_TOKEN=%s&AWS_ENDPOINT=%s", m.Bucket, m.AccessKey, secret, token, m.Endpoint),
		fmt.Sprintf("s3://nobucket/p?AWS_ACCESS_KEY_ID=%s&AWS_SECRET_ACCESS_KEY=%s&AWS_ENDPOINT=%s", m.AccessKey, secret, m.Endpoint),
		fmt.Sprintf("s3://%s/p?AWS_ACCESS_KEY_ID=%s&AWS_SECRET_ACCESS_KEY=%s&AWS_ENDPOINT=http://127.0.0.1:1", m.Bucket, m.AccessKey, secret),
	} {
		s, err := s3store.Provider{Logger: slog.New(logs)}.Open(ctx, uri)
		if err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		for _, call := range ops(s) {
			errs = append(errs, call(cctx))
		}
		cancel()
		s.Close()
	}
	for _, uri := range []string{
		"s3://b/p?AWS_SECRET_ACCESS_KEY=" + secret,
		"s3://b/p?AWS_SECRET_ACCESS_KEY=" + secret + "&BOGUS=" + secret,
		"s3://b/p?AWS_SECRET_ACCESS_KEY=" + secret + "%zz",
		"s3://b/p?AUTH=implicit&AWS_SESSION_TOKEN=" + token,
		"http://[::1/?AWS_SECRET_ACCESS_KEY=" + secret,
	} {
		_, err := s3store.Provider{}.Open(ctx, uri)
		errs = append(errs, err)
	}
	for _, err := range errs {
		if err == nil {
			t.Errorf("an operation meant to fail succeeded")
			continue
		}
		if msg := err.Error(); strings.Contains(msg, secret) || strings.Contains(msg, token) {
			t.Errorf("error holds a secret: %s", msg)
		}
	}
	if l := logs.String(); strings.Contains(l, secret) || strings.Contains(l, token) {
		t.Errorf("logs hold a secret")
	}
}

// ---------------------------------------------------------------------------
// Helpers.

func pattern(seed uint64, n int) []byte {
	b := make([]byte, n)
	x := seed*0x9e3779b97f4a7c15 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

func mustRead(t *testing.T, s storage.Store, name string, off, n int64, want []byte) {
	t.Helper()
	r, err := s.Read(context.Background(), name, off, n)
	if err != nil {
		t.Errorf("Read(%s, %d, %d): %v", name, off, n, err)
		return
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Errorf("Read(%s, %d, %d): reading: %v", name, off, n, err)
		return
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Read(%s, %d, %d) = %d bytes, want %d bytes (content differs)", name, off, n, len(got), len(want))
	}
}

func putRaw(t *testing.T, c *s3.Client, bucket, key, body string) {
	t.Helper()
	if _, err := c.PutObject(context.Background(), &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader(body),
	}); err != nil {
		t.Fatalf("putting %s: %v", key, err)
	}
}

func getRaw(t *testing.T, c *s3.Client, bucket, key string) string {
	t.Helper()
	out, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("getting %s: %v", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatalf("getting %s: %v", key, err)
	}
	return string(b)
}

// checkNoUploads fails if any multipart upload is left in any bucket.
func checkNoUploads(t *testing.T, m *testservers.MinIO) {
	t.Helper()
	ctx := context.Background()
	c := m.Client()
	buckets, err := c.ListBuckets(ctx, &s3.ListBucketsInput{})
	if err != nil {
		t.Fatalf("listing buckets: %v", err)
	}
	for _, b := range buckets.Buckets {
		out, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: b.Name})
		if err != nil {
			t.Fatalf("listing uploads of %s: %v", aws.ToString(b.Name), err)
		}
		for _, u := range out.Uploads {
			t.Errorf("bucket %s: multipart upload of %q left behind", aws.ToString(b.Name), aws.ToString(u.Key))
		}
	}
}
