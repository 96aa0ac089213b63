// Package gcsstore is cairn's Google Cloud Storage backend: a
// storage.Store over one bucket (and a key prefix in it), opened from a
// URI
//
//	gs://bucket/some/prefix?AUTH=specified&CREDENTIALS=<base64 JSON key>
//	gs://bucket/some/prefix?AUTH=implicit
//	gs://bucket?GCS_ENDPOINT=http://127.0.0.1:4443/storage/v1/
//
// AUTH=specified (the default when CREDENTIALS is set) authenticates with
// the key file in CREDENTIALS, a service_account or authorized_user JSON
// key; AUTH=implicit uses Application Default Credentials. GCS_ENDPOINT
// points the client at an emulator; without CREDENTIALS (and without
// AUTH=implicit) it then sends no credentials at all.
// COCKROACH_LOCALITY is accepted and ignored; any other parameter is
// refused. (The client library obeys STORAGE_EMULATOR_HOST in the
// plugin's environment over all of these; leave it unset.)
//
// Writes stream through a resumable upload in ChunkSize parts (small
// objects in one request), so memory does not grow with the object; an object appears only when the final
// part commits it, and Abort (or a cancelled context) cancels the upload
// before that. IfNotExists is the DoesNotExist precondition
// (ifGenerationMatch=0), checked by the service at commit. Reads use the
// JSON API (see storage.WithJSONReads) on every endpoint, so the path
// the tests exercise against the emulator is the one production uses.
//
// Transient failures (408, 429, 5xx, connection resets) are retried by
// the client with jittered exponential backoff for a bounded number of
// attempts, every call included: writes and deletes of this store are
// idempotent in cairn's use (a rewrite of the same bytes, a delete of a
// missing object is nil). One ambiguity remains: a conditional write
// whose first attempt committed but whose reply was lost is retried and
// then reports ErrAlreadyExists.
package gcsstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"cloud.google.com/go/auth"
	gcs "cloud.google.com/go/storage"
	"github.com/googleapis/gax-go/v2"
	"golang.org/x/oauth2"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"

	"github.com/cairnbackup/cairn/sdk/storage"
)

const (
	// ChunkSize is the part size of uploads: what a writer buffers.
	ChunkSize = 8 << 20
	// listPageSize is how many entries one List request asks for (the
	// service's maximum is 1,000).
	listPageSize = 1000
	// maxAttempts bounds the client's retries of transient failures.
	maxAttempts = 5
)

// Provider opens gs:// URIs. The zero value is ready to use.
type Provider struct {
	// Logger receives the store's log lines; nil discards them. Secrets
	// never reach it.
	Logger *slog.Logger
}

var _ storage.Provider = Provider{}

// Schemes implements storage.Provider.
func (Provider) Schemes() []string { return []string{Scheme} }

// Open implements storage.Provider. It checks the bucket exists and the
// credentials may list it (one List of at most one object), so that a
// wrong bucket or key fails here, at once, rather than mid-backup.
func (p Provider) Open(ctx context.Context, uri string) (storage.Store, error) {
	cfg, err := parseURI(uri)
	if err != nil {
		return nil, err
	}
	logger := p.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("bucket", cfg.bucket)

	opts := []option.ClientOption{gcs.WithJSONReads()}
	if cfg.endpoint != "" {
		opts = append(opts, option.WithEndpoint(cfg.endpoint))
	}
	switch cfg.auth {
	case authNone:
		opts = append(opts, option.WithoutAuthentication())
	case authSpecified:
		opts = append(opts, option.WithAuthCredentialsJSON(option.CredentialsType(cfg.credType), cfg.credentials))
	case authImplicit:
		// The client finds Application Default Credentials itself.
	}
	s := &Store{cfg: cfg, logger: logger}
	// The client outlives this call: its credentials must not be tied to
	// the Open call's context (token refreshes may use it).
	client, err := gcs.NewClient(context.WithoutCancel(ctx), opts...)
	if err != nil {
		return nil, s.errorf(ctx, err, storage.ErrPermissionDenied, "opening %s: creating the GCS client", cfg)
	}
	client.SetRetry(
		gcs.WithBackoff(gax.Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2}),
		gcs.WithMaxAttempts(maxAttempts),
		gcs.WithPolicy(gcs.RetryAlways),
	)
	s.client = client
	s.bucket = client.Bucket(cfg.bucket)

	it := s.bucket.Objects(ctx, &gcs.Query{Prefix: cfg.root})
	it.PageInfo().MaxSize = 1
	if _, err := it.Next(); err != nil && err != iterator.Done {
		client.Close()
		return nil, s.errorf(ctx, err, nil, "opening %s: listing bucket %s", cfg, cfg.bucket)
	}
	logger.Debug("opened store", "uri", cfg.uri, "root", cfg.root)
	return s, nil
}

// Store is one bucket, under a key prefix. It is safe for concurrent use.
type Store struct {
	cfg    *config
	logger *slog.Logger
	client *gcs.Client
	bucket *gcs.BucketHandle
}

var _ storage.Store = (*Store)(nil)

func (s *Store) key(name string) string { return s.cfg.root + name }

// check validates name and reports a cancelled ctx.
func (s *Store) check(ctx context.Context, op, name string) error {
	if err := validName(name); err != nil {
		return fmt.Errorf("%s %q in bucket %s: %v: %w", op, name, s.cfg.bucket, err, storage.ErrInvalidArgument)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %s in bucket %s: %w", op, name, s.cfg.bucket, err)
	}
	return nil
}

// Stat implements storage.Store.
func (s *Store) Stat(ctx context.Context, name string) (storage.ObjectInfo, error) {
	if err := s.check(ctx, "statting", name); err != nil {
		return storage.ObjectInfo{}, err
	}
	attrs, err := s.bucket.Object(s.key(name)).Attrs(ctx)
	if err != nil {
		return storage.ObjectInfo{}, s.errorf(ctx, err, nil, "statting %s in bucket %s", name, s.cfg.bucket)
	}
	return storage.ObjectInfo{Name: name, Size: attrs.Size, ModTime: attrs.Updated}, nil
}

// List implements storage.Store. It fetches pages of listPageSize
// entries and reports them in name order, merging each page's objects and
// common prefixes (which the service returns apart), and drops entries at
// or before StartAfter or already reported.
//
// A page is trusted only up to its last object: a common prefix after it
// is held back and merged into the next page. Real GCS bounds a page's
// prefixes by the page's range, but fake-gcs-server reports every prefix
// at or after the page token on every page, and without the hold-back
// those would be reported before objects of later pages that sort ahead
// of them. What is held back is at most one page.
func (s *Store) List(ctx context.Context, opts storage.ListOptions, fn func(storage.ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("listing bucket %s: %w", s.cfg.bucket, err)
	}
	if !validListPrefix(opts.Prefix) {
		return nil
	}
	q := &gcs.Query{Prefix: s.key(opts.Prefix), Delimiter: opts.Delimiter}
	// Every name after StartAfter is at or after it; so is every common
	// prefix after it, since a prefix sorts before the names it holds.
	last, haveLast := "", false
	if opts.StartAfter != "" {
		q.StartOffset = s.key(opts.StartAfter)
		last, haveLast = q.StartOffset, true
	}
	if err := q.SetAttrSelection([]string{"Name", "Size", "Updated"}); err != nil {
		return fmt.Errorf("listing bucket %s: %v: %w", s.cfg.bucket, err, storage.ErrInvalidArgument)
	}
	pager := iterator.NewPager(s.bucket.Objects(ctx, q), listPageSize, "")
	var held []storage.ObjectInfo
	for {
		var page []*gcs.ObjectAttrs
		next, err := pager.NextPage(&page)
		if err != nil {
			return s.errorf(ctx, err, nil, "listing %q in bucket %s", opts.Prefix, s.cfg.bucket)
		}
		entries := held
		held = nil
		boundary, haveObjects := "", false
		for _, a := range page {
			if a.Prefix != "" {
				entries = append(entries, storage.ObjectInfo{Name: a.Prefix, IsPrefix: true})
				continue
			}
			entries = append(entries, storage.ObjectInfo{Name: a.Name, Size: a.Size, ModTime: a.Updated})
			if !haveObjects || a.Name > boundary {
				boundary, haveObjects = a.Name, true
			}
		}
		slices.SortFunc(entries, func(a, b storage.ObjectInfo) int { return strings.Compare(a.Name, b.Name) })
		for _, e := range entries {
			if haveLast && e.Name <= last {
				continue
			}
			if next != "" && haveObjects && e.Name > boundary {
				held = append(held, e)
				continue
			}
			last, haveLast = e.Name, true
			e.Name = strings.TrimPrefix(e.Name, s.cfg.root)
			if !e.IsPrefix && validName(e.Name) != nil {
				// Not written by a Store ("dir/" placeholders of the
				// console, say): not an object of this store.
				s.logger.Debug("listing: skipping an object with an invalid name", "name", e.Name)
				continue
			}
			if err := fn(e); err != nil {
				return err
			}
		}
		if next == "" {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("listing bucket %s: %w", s.cfg.bucket, err)
		}
	}
}

// Read implements storage.Store.
func (s *Store) Read(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	if err := s.check(ctx, "reading", name); err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("reading %s in bucket %s: negative offset %d: %w", name, s.cfg.bucket, offset, storage.ErrInvalidArgument)
	}
	obj := s.bucket.Object(s.key(name))
	if length == 0 {
		// Nothing to read, but a missing object is still an error.
		if _, err := obj.Attrs(ctx); err != nil {
			return nil, s.errorf(ctx, err, nil, "reading %s in bucket %s", name, s.cfg.bucket)
		}
		return io.NopCloser(strings.NewReader("")), nil
	}
	if length < 0 {
		length = -1
	}
	r, err := obj.NewRangeReader(ctx, offset, length)
	if err != nil {
		var ge *googleapi.Error
		if errors.As(err, &ge) && ge.Code == http.StatusRequestedRangeNotSatisfiable {
			// The object exists; the range starts at or past its end.
			return io.NopCloser(strings.NewReader("")), nil
		}
		return nil, s.errorf(ctx, err, nil, "reading %s in bucket %s", name, s.cfg.bucket)
	}
	return &reader{s: s, ctx: ctx, name: name, r: r}, nil
}

type reader struct {
	s    *Store
	ctx  context.Context
	name string
	r    *gcs.Reader
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		err = r.s.errorf(r.ctx, err, nil, "reading %s in bucket %s", r.name, r.s.cfg.bucket)
	}
	return n, err
}

func (r *reader) Close() error { return r.r.Close() }

// Write implements storage.Store.
func (s *Store) Write(ctx context.Context, name string, opts storage.WriteOptions) (storage.Writer, error) {
	if err := s.check(ctx, "writing", name); err != nil {
		return nil, err
	}
	obj := s.bucket.Object(s.key(name))
	if opts.IfNotExists {
		obj = obj.If(gcs.Conditions{DoesNotExist: true})
	}
	w := &writer{s: s, ctx: ctx, name: name, cond: opts.IfNotExists}
	// The client's upload retries ignore WithMaxAttempts (they go on until
	// the context ends), so the writer bounds them itself: at most
	// maxAttempts-1 retries in a row without progress. Retryer changes
	// the handle's own copy of the retry settings (Object makes one), not
	// the client's.
	w.obj = obj.Retryer(gcs.WithErrorFunc(func(err error) bool {
		return gcs.ShouldRetry(err) && w.failures.Add(1) < maxAttempts
	}))
	w.wctx, w.cancel = context.WithCancel(ctx)
	return w, nil
}

// writer streams into an upload. Until Close sends the final part,
// nothing is committed, so cancelling the upload's context is a complete
// abort.
//
// The upload starts once more than smallObject bytes have come, with
// ChunkSize parts; an object that is whole by then (a manifest, a lock)
// goes up with smallObject parts, which is one request. The client
// allocates one part per upload, so this spares small objects a ChunkSize
// buffer each.
type writer struct {
	s        *Store
	ctx      context.Context
	name     string
	cond     bool
	obj      *gcs.ObjectHandle
	failures atomic.Int32
	wctx     context.Context
	cancel   context.CancelFunc
	small    []byte      // bytes held until the upload starts
	w        *gcs.Writer // nil until the upload starts
	done     bool
}

// smallObject is the smallest part size the service accepts.
const smallObject = 256 << 10

func (w *writer) start(chunkSize int) {
	w.w = w.obj.NewWriter(w.wctx)
	w.w.ChunkSize = chunkSize
	// Without a content type the writer sniffs the first bytes.
	w.w.ContentType = "application/octet-stream"
	w.w.ProgressFunc = func(int64) { w.failures.Store(0) }
}

func (w *writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, fmt.Errorf("writing %s in bucket %s: the writer is closed: %w", w.name, w.s.cfg.bucket, storage.ErrInvalidArgument)
	}
	if err := w.ctx.Err(); err != nil {
		return 0, fmt.Errorf("writing %s in bucket %s: %w", w.name, w.s.cfg.bucket, err)
	}
	if w.w == nil {
		if len(w.small)+len(p) <= smallObject {
			w.small = append(w.small, p...)
			return len(p), nil
		}
		w.start(ChunkSize)
		held := w.small
		w.small = nil
		if _, err := w.w.Write(held); err != nil {
			return 0, w.fail(err)
		}
	}
	n, err := w.w.Write(p)
	if err != nil {
		return n, w.fail(err)
	}
	return n, nil
}

func (w *writer) Close() error {
	if w.done {
		return fmt.Errorf("committing %s in bucket %s: the writer is closed: %w", w.name, w.s.cfg.bucket, storage.ErrInvalidArgument)
	}
	w.done = true
	defer w.cancel()
	if err := w.ctx.Err(); err != nil {
		w.cancel()
		if w.w != nil {
			_ = w.w.Close()
		}
		return fmt.Errorf("committing %s in bucket %s: %w", w.name, w.s.cfg.bucket, err)
	}
	if w.w == nil {
		w.start(smallObject)
		held := w.small
		w.small = nil
		if _, err := w.w.Write(held); err != nil {
			w.cancel()
			_ = w.w.Close()
			return w.fail(err)
		}
	}
	if err := w.w.Close(); err != nil {
		return w.fail(err)
	}
	return nil
}

func (w *writer) fail(err error) error {
	var ge *googleapi.Error
	if w.cond && errors.As(err, &ge) && ge.Code == http.StatusPreconditionFailed {
		return fmt.Errorf("committing %s in bucket %s: the object exists: %w", w.name, w.s.cfg.bucket, storage.ErrAlreadyExists)
	}
	return w.s.errorf(w.ctx, err, nil, "writing %s in bucket %s", w.name, w.s.cfg.bucket)
}

func (w *writer) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	w.small = nil
	w.cancel()
	if w.w != nil {
		// Wait for the upload goroutine; it fails on the cancelled
		// context without sending the final part.
		_ = w.w.Close()
	}
	return nil
}

// Delete implements storage.Store.
func (s *Store) Delete(ctx context.Context, name string) error {
	if err := s.check(ctx, "deleting", name); err != nil {
		return err
	}
	err := s.bucket.Object(s.key(name)).Delete(ctx)
	if err == nil || errors.Is(err, gcs.ErrObjectNotExist) {
		return nil
	}
	return s.errorf(ctx, err, nil, "deleting %s in bucket %s", name, s.cfg.bucket)
}

// Close implements storage.Store.
func (s *Store) Close() error { return s.client.Close() }

// errorf describes a failed call: what was being done, the cause with
// any secret scrubbed out, and the storage sentinel for its kind (or
// fallback, when the kind is unknown and fallback is not nil). The cause
// itself is not wrapped, only its text kept: SDK errors may carry
// response bodies and requests, and only the closed set of kinds may
// cross the plugin boundary.
func (s *Store) errorf(ctx context.Context, err error, fallback error, format string, args ...any) error {
	what := fmt.Sprintf(format, args...)
	if cerr := ctx.Err(); cerr != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, cerr)) {
		return fmt.Errorf("%s: %w", what, cerr)
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", what, context.Canceled)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", what, context.DeadlineExceeded)
	}
	kind, retry := classify(err)
	if kind == nil {
		kind, retry = fallback, false
		if kind == nil {
			kind, retry = storage.ErrUnavailable, false
		}
	}
	cause := err.Error()
	var ue *url.Error
	if errors.As(err, &ue) {
		// `Get "<URL with the whole query>": ...`: the query is noise.
		if u, perr := url.Parse(ue.URL); perr == nil {
			u.RawQuery = ""
			cause = strings.Replace(cause, ue.URL, u.String(), 1)
		}
	}
	cause = s.scrub(strings.Join(strings.Fields(s.scrub(cause)), " "))
	if errors.Is(err, gcs.ErrBucketNotExist) {
		cause = fmt.Sprintf("bucket %s does not exist", s.cfg.bucket)
	}
	out := fmt.Errorf("%s: %s: %w", what, cause, kind)
	if retry {
		return storage.Retryable(out)
	}
	return out
}

// scrub removes the store's secrets from msg.
func (s *Store) scrub(msg string) string {
	for _, secret := range s.cfg.secrets {
		if secret != "" {
			msg = strings.ReplaceAll(msg, secret, "redacted")
		}
	}
	return msg
}

// classify maps an error of the GCS client to a storage sentinel and
// whether it is transient; nil when it does not know the error.
func classify(err error) (kind error, retry bool) {
	switch {
	case errors.Is(err, gcs.ErrObjectNotExist), errors.Is(err, gcs.ErrBucketNotExist):
		return storage.ErrNotFound, false
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return classifyHTTP(ge.Code)
	}
	// Token exchanges: a rejected key comes back as 400 invalid_grant.
	var ae *auth.Error
	if errors.As(err, &ae) && ae.Response != nil {
		return classifyAuth(ae.Response.StatusCode)
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		return classifyAuth(re.Response.StatusCode)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) {
		return storage.ErrUnavailable, true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return storage.ErrUnavailable, true
	}
	return nil, false
}

func classifyAuth(code int) (error, bool) {
	switch {
	case code == http.StatusTooManyRequests || code >= 500:
		return storage.ErrUnavailable, true
	case code >= 400:
		return storage.ErrPermissionDenied, false
	}
	return nil, false
}

func classifyHTTP(code int) (error, bool) {
	switch {
	case code == http.StatusNotFound:
		return storage.ErrNotFound, false
	case code == http.StatusUnauthorized, code == http.StatusForbidden:
		return storage.ErrPermissionDenied, false
	case code == http.StatusPreconditionFailed, code == http.StatusConflict:
		return storage.ErrAlreadyExists, false
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
		return storage.ErrUnavailable, true
	case code == http.StatusBadRequest, code == http.StatusRequestedRangeNotSatisfiable:
		return storage.ErrInvalidArgument, false
	}
	return nil, false
}
