// Package s3store is cairn's storage.Store for Amazon S3 and S3-compatible
// services (MinIO, versitygw, ...), served by the storage-s3 plugin.
//
// URI: s3://BUCKET/PREFIX?PARAMS, where PREFIX is the store's root inside
// the bucket. Parameters (see ParseURI): AUTH=specified|implicit,
// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION
// (default us-east-1), AWS_ENDPOINT, AWS_USE_PATH_STYLE (default true with
// AWS_ENDPOINT), S3_STORAGE_CLASS, AWS_SERVER_ENC_MODE (AES256|aws:kms),
// AWS_SERVER_KMS_ID; COCKROACH_LOCALITY is accepted and ignored.
//
// Open does no I/O: a missing bucket or bad credentials show on the first
// call, as ErrNotFound naming the bucket or ErrPermissionDenied, without
// retries. Throttling, 5xx replies and broken connections are retried by
// the SDK's standard retryer (exponential backoff with jitter, bounded
// attempts, no retry quota) and, when the attempts run out, reported as
// ErrUnavailable marked storage.Retryable.
//
// Writes stream in parts of PartSize: an object smaller than one part is
// one PutObject at Close; a larger one is a multipart upload completed at
// Close and aborted on Abort, on error or on cancellation. Conditional
// writes send If-None-Match: * with the PutObject or the
// CompleteMultipartUpload, so the check happens at commit.
//
// A commit whose reply is lost and whose retry then fails (412 for a
// conditional PutObject that in fact went through, NoSuchUpload for a
// multipart upload already completed) is recognised by a random write id
// stored in the object's metadata, and reported as the success it was.
package s3store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/cairnbackup/cairn/sdk/storage"
)

// PartSize is the size of a multipart upload's parts, and so the memory a
// Writer holds.
const PartSize = 8 << 20

// Retry policy for the SDK's standard retryer.
const (
	maxAttempts = 10
	maxBackoff  = 5 * time.Second
	baseDelay   = 50 * time.Millisecond
	// cleanupTimeout bounds an AbortMultipartUpload run after the write's
	// context is gone.
	cleanupTimeout = 30 * time.Second
	writeIDMeta    = "cairn-write-id"
)

// Provider opens s3:// stores. The zero value is ready to use.
type Provider struct {
	// Logger receives warnings (e.g. an abort that did not go through) and
	// the SDK's own messages at debug level; nil means slog.Default().
	Logger *slog.Logger
	// HTTPClient, when set, replaces the SDK's HTTP client (tests).
	HTTPClient *http.Client
}

var _ storage.Provider = Provider{}

// Schemes implements storage.Provider.
func (Provider) Schemes() []string { return []string{"s3"} }

// Open implements storage.Provider.
func (p Provider) Open(ctx context.Context, uri string) (storage.Store, error) {
	cfg, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	return New(ctx, cfg, p.Logger, p.HTTPClient)
}

// Store is an opened s3:// location.
type Store struct {
	cfg     Config
	client  *s3.Client
	logger  *slog.Logger
	sniffer serverSniffer
}

var _ storage.Store = (*Store)(nil)

// New returns a store for cfg. logger and httpClient may be nil.
func New(ctx context.Context, cfg Config, logger *slog.Logger, httpClient *http.Client) (*Store, error) {
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("bucket", cfg.Bucket)
	s := &Store{cfg: cfg, logger: logger}

	var awsCfg aws.Config
	switch cfg.Auth {
	case AuthImplicit:
		var err error
		awsCfg, err = awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(cfg.Region))
		if err != nil {
			return nil, s.errorf("loading the default AWS configuration", "", err)
		}
	default:
		awsCfg = aws.Config{
			Region: cfg.Region,
			Credentials: aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(
				cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken)),
		}
	}
	s.client = s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
		o.Retryer = retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = maxAttempts
			o.MaxBackoff = maxBackoff
			o.BaseDelay = baseDelay
			// The host owns retries above this one; a process-wide
			// quota would turn a burst of faults into hard failures.
			o.RateLimiter = ratelimit.None
		})
		o.Logger = logging.LoggerFunc(func(c logging.Classification, format string, v ...any) {
			logger.Debug(s.scrub(fmt.Sprintf(format, v...)), "sdk_level", string(c))
		})
		if httpClient != nil {
			o.HTTPClient = httpClient
		}
		o.APIOptions = append(o.APIOptions, s.sniffer.middleware)
	})
	return s, nil
}

// Close implements storage.Store.
func (s *Store) Close() error { return nil }

// String names the store without secrets.
func (s *Store) String() string { return s.cfg.String() }

func (s *Store) key(name string) string {
	if s.cfg.Prefix == "" {
		return name
	}
	return s.cfg.Prefix + "/" + name
}

func (s *Store) where(name string) string {
	return "s3://" + s.cfg.Bucket + "/" + s.key(name)
}

func (s *Store) invalidName(op, name string) error {
	return fmt.Errorf("%s %q in s3://%s: not a valid object name: %w", op, name, s.cfg.Bucket, storage.ErrInvalidArgument)
}

// Stat implements storage.Store.
func (s *Store) Stat(ctx context.Context, name string) (storage.ObjectInfo, error) {
	if !validName(name) {
		return storage.ObjectInfo{}, s.invalidName("stat-ing", name)
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(s.cfg.Bucket),
		Key:    aws.String(s.key(name)),
	})
	if err != nil {
		return storage.ObjectInfo{}, s.errorf("stat-ing", name, err)
	}
	return storage.ObjectInfo{
		Name:    name,
		Size:    aws.ToInt64(out.ContentLength),
		ModTime: aws.ToTime(out.LastModified),
	}, nil
}

// Read implements storage.Store.
func (s *Store) Read(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	if !validName(name) {
		return nil, s.invalidName("reading", name)
	}
	if offset < 0 {
		return nil, fmt.Errorf("reading %s: negative offset %d: %w", s.where(name), offset, storage.ErrInvalidArgument)
	}
	if length == 0 {
		// Nothing to fetch, but a missing object is still an error.
		if _, err := s.Stat(ctx, name); err != nil {
			return nil, err
		}
		return io.NopCloser(strings.NewReader("")), nil
	}
	in := &s3.GetObjectInput{
		Bucket: aws.String(s.cfg.Bucket),
		Key:    aws.String(s.key(name)),
	}
	switch {
	case length > 0:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-%d", offset, offset+length-1))
	case offset > 0:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", offset))
	}
	out, err := s.client.GetObject(ctx, in)
	if err != nil {
		if in.Range != nil && isRangeNotSatisfiable(err) {
			// The object exists (a missing one is 404) but starts
			// after its end, or is empty.
			return io.NopCloser(strings.NewReader("")), nil
		}
		return nil, s.errorf("reading", name, err)
	}
	end := int64(-1)
	if length > 0 {
		end = offset + length
	}
	return &reader{s: s, ctx: ctx, name: name, etag: aws.ToString(out.ETag), pos: offset, end: end, body: out.Body}, nil
}

// reader streams an object's body. When the connection breaks mid-body
// it asks again for the rest, from where it stopped, of the same version
// (If-Match on the ETag), up to maxAttempts times; then it fails with
// ErrUnavailable, or with ErrNotFound if the object was replaced.
type reader struct {
	s        *Store
	ctx      context.Context
	name     string
	etag     string
	pos, end int64 // end < 0: to the object's end
	body     io.ReadCloser
	resumes  int
}

func (r *reader) Read(p []byte) (int, error) {
	for {
		n, err := r.body.Read(p)
		r.pos += int64(n)
		if err == nil || err == io.EOF {
			return n, err
		}
		if contextError(err) != nil || r.ctx.Err() != nil || r.etag == "" || r.resumes >= maxAttempts {
			return n, r.s.errorf("reading", r.name, err)
		}
		r.resumes++
		r.s.logger.Debug("resuming a broken read", "object", r.s.where(r.name), "offset", r.pos, "error", r.s.scrub(err.Error()))
		if rerr := r.reopen(); rerr != nil {
			return n, rerr
		}
		if n > 0 {
			return n, nil
		}
	}
}

func (r *reader) reopen() error {
	r.body.Close()
	r.body = io.NopCloser(strings.NewReader(""))
	in := &s3.GetObjectInput{
		Bucket:  aws.String(r.s.cfg.Bucket),
		Key:     aws.String(r.s.key(r.name)),
		IfMatch: aws.String(r.etag),
		Range:   aws.String(fmt.Sprintf("bytes=%d-", r.pos)),
	}
	if r.end >= 0 {
		if r.pos >= r.end {
			return nil
		}
		in.Range = aws.String(fmt.Sprintf("bytes=%d-%d", r.pos, r.end-1))
	}
	out, err := r.s.client.GetObject(r.ctx, in)
	if err != nil {
		if isRangeNotSatisfiable(err) {
			return nil
		}
		err = r.s.errorf("resuming the read of", r.name, err)
		if errors.Is(err, storage.ErrAlreadyExists) { // 412: replaced meanwhile
			return fmt.Errorf("resuming the read of %s: the object was replaced: %w", r.s.where(r.name), storage.ErrNotFound)
		}
		return err
	}
	r.body = out.Body
	return nil
}

func (r *reader) Close() error { return r.body.Close() }

// Delete implements storage.Store.
func (s *Store) Delete(ctx context.Context, name string) error {
	if !validName(name) {
		return s.invalidName("deleting", name)
	}
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{
		Bucket: aws.String(s.cfg.Bucket),
		Key:    aws.String(s.key(name)),
	})
	if err != nil {
		if kind, _ := classify(err); kind == storage.ErrNotFound && !isNoSuchBucket(err) && contextError(err) == nil {
			return nil
		}
		return s.errorf("deleting", name, err)
	}
	return nil
}

// List implements storage.Store.
//
// The delimiter is applied here, not by the server: MinIO's delimited
// listing leaves out a common prefix that is also an object's name
// (objects "a" and "a/b" list as "a" only, and prefix "a/" lists
// nothing), while its flat listing is right. So List pages through the flat
// listing (up to 1,000 keys a page) and rolls keys up into common
// prefixes itself. When a page ends inside a common prefix, the next page
// starts after everything that prefix can hold (the prefix followed by
// U+10FFFF, the greatest character), so a prefix with many objects below
// it costs one request, not one per thousand objects.
//
// The kit's rules are enforced here too: an entry not strictly after
// StartAfter (a common prefix, some of whose objects are after it) and an
// entry not after the previous one (a common prefix met again) are
// skipped.
func (s *Store) List(ctx context.Context, opts storage.ListOptions, fn func(storage.ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("listing s3://%s/%s: %w", s.cfg.Bucket, s.key(opts.Prefix), err)
	}
	if opts.Prefix != "" && !possiblePrefix(opts.Prefix) {
		return nil
	}
	root := ""
	if s.cfg.Prefix != "" {
		root = s.cfg.Prefix + "/"
	}
	last, haveLast := opts.StartAfter, opts.StartAfter != ""
	in := &s3.ListObjectsV2Input{
		Bucket: aws.String(s.cfg.Bucket),
		Prefix: aws.String(root + opts.Prefix),
	}
	if opts.StartAfter != "" {
		in.StartAfter = aws.String(root + opts.StartAfter)
	}
	for {
		page, err := s.client.ListObjectsV2(ctx, in)
		if err != nil {
			return s.errorf("listing", opts.Prefix, err)
		}
		inside := "" // the common prefix the page's last key rolled up into
		for _, obj := range page.Contents {
			name, ok := strings.CutPrefix(aws.ToString(obj.Key), root)
			if !ok || !strings.HasPrefix(name, opts.Prefix) {
				continue
			}
			o := storage.ObjectInfo{Name: name, Size: aws.ToInt64(obj.Size), ModTime: aws.ToTime(obj.LastModified)}
			inside = ""
			if opts.Delimiter != "" {
				rest := name[len(opts.Prefix):]
				if i := strings.Index(rest, opts.Delimiter); i >= 0 {
					o = storage.ObjectInfo{Name: opts.Prefix + rest[:i+len(opts.Delimiter)], IsPrefix: true}
					inside = o.Name
				}
			}
			if haveLast && o.Name <= last {
				continue
			}
			last, haveLast = o.Name, true
			if err := fn(o); err != nil {
				return err
			}
		}
		if !aws.ToBool(page.IsTruncated) {
			return nil
		}
		if inside != "" {
			in.ContinuationToken = nil
			in.StartAfter = aws.String(root + inside + "\U0010FFFF")
		} else {
			in.ContinuationToken = page.NextContinuationToken
		}
	}
}

// Write implements storage.Store.
func (s *Store) Write(ctx context.Context, name string, opts storage.WriteOptions) (storage.Writer, error) {
	if !validName(name) {
		return nil, s.invalidName("writing", name)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("writing %s: %w", s.where(name), err)
	}
	var id [16]byte
	_, _ = rand.Read(id[:])
	return &writer{s: s, ctx: ctx, name: name, cond: opts.IfNotExists, writeID: hex.EncodeToString(id[:])}, nil
}

// ---------------------------------------------------------------------------
// Errors.

// errorf classifies an SDK error into storage's sentinels and describes
// it as "<op> s3://bucket/key: <cause>", with any secret scrubbed from the
// cause. Context errors stay reachable with errors.Is.
func (s *Store) errorf(op, name string, err error) error {
	what := "s3://" + s.cfg.Bucket
	if name != "" {
		what = s.where(name)
	}
	cause := s.scrub(err.Error())
	if ctxErr := contextError(err); ctxErr != nil {
		return fmt.Errorf("%s %s: %s: %w", op, what, cause, ctxErr)
	}
	kind, retryable := classify(err)
	if isNoSuchBucket(err) {
		return fmt.Errorf("%s %s: bucket %q does not exist: %w", op, what, s.cfg.Bucket, storage.ErrNotFound)
	}
	out := fmt.Errorf("%s %s: %s: %w", op, what, cause, kind)
	if retryable {
		out = storage.Retryable(out)
	}
	return out
}

func contextError(err error) error {
	switch {
	case errors.Is(err, context.Canceled):
		return context.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return context.DeadlineExceeded
	}
	return nil
}

// classify maps an S3 error to a sentinel and whether it is transient.
func classify(err error) (kind error, retryable bool) {
	code, status := errorCode(err), httpStatus(err)
	switch code {
	case "NoSuchKey", "NoSuchBucket", "NotFound", "NoSuchUpload":
		return storage.ErrNotFound, false
	case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
		"ExpiredToken", "TokenRefreshRequired", "AllAccessDisabled", "AccountProblem", "InvalidSecurity":
		return storage.ErrPermissionDenied, false
	case "PreconditionFailed":
		return storage.ErrAlreadyExists, false
	case "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "ServiceUnavailable",
		"InternalError", "RequestTimeout", "ConditionalRequestConflict", "OperationAborted":
		return storage.ErrUnavailable, true
	case "EntityTooLarge", "InvalidArgument", "InvalidRequest", "KeyTooLongError", "InvalidBucketName",
		"InvalidStorageClass", "InvalidEncryptionAlgorithmError", "MalformedXML":
		return storage.ErrInvalidArgument, false
	case "QuotaExceeded", "XMinioStorageFull":
		return storage.ErrResourceExhausted, false
	}
	switch {
	case status == http.StatusNotFound:
		return storage.ErrNotFound, false
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return storage.ErrPermissionDenied, false
	case status == http.StatusPreconditionFailed:
		return storage.ErrAlreadyExists, false
	case status == http.StatusTooManyRequests || status == http.StatusConflict || status >= 500:
		return storage.ErrUnavailable, true
	case status >= 400:
		return storage.ErrInvalidArgument, false
	}
	// No HTTP reply: the connection broke, or the attempts ran out on
	// broken connections.
	return storage.ErrUnavailable, true
}

func errorCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}

func httpStatus(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func isNoSuchBucket(err error) bool {
	return errorCode(err) == "NoSuchBucket"
}

func isRangeNotSatisfiable(err error) bool {
	return errorCode(err) == "InvalidRange" || httpStatus(err) == http.StatusRequestedRangeNotSatisfiable
}

// scrub removes the secrets of the store's config from msg.
func (s *Store) scrub(msg string) string {
	for _, secret := range s.cfg.secrets() {
		msg = strings.ReplaceAll(msg, secret, "redacted")
	}
	return msg
}
