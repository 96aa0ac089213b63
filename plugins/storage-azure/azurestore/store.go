// Package azurestore is cairn's storage.Store for Azure Blob Storage (and
// the Azurite emulator), served by the storage-azure plugin for the
// azure-blob:// and azure:// schemes.
//
// URI: azure-blob://<container>/<root path>?AZURE_ACCOUNT_NAME=...&... with
// either shared key authentication (AZURE_ACCOUNT_KEY) or an Azure AD
// client secret (AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, AZURE_TENANT_ID);
// AZURE_ENVIRONMENT picks the cloud, AZURE_BLOB_ENDPOINT overrides the
// service URL (emulators). See ParseURI.
//
// Writes are block blobs: the writer buffers one block (8 MiB) at a time
// and stages it with Put Block as soon as it is full; Close commits the
// block list (Put Block List), conditionally with If-None-Match: * for
// IfNotExists. A write that fits in one block is a single Put Blob. Staged
// blocks are invisible until committed, so Abort has nothing to undo: the
// service discards uncommitted blocks after a week, or at the next commit
// of that blob. Memory is one block per open writer.
//
// Listing uses List Blobs (flat, or hierarchical with the delimiter) page
// by page. Azure has no "start after" for blob listings, so StartAfter is
// applied on the client: entries up to it are read and skipped, one page
// in memory at a time.
package azurestore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/cairnbackup/cairn/sdk/storage"
)

const (
	// DefaultBlockSize is the size of the blocks a writer stages.
	DefaultBlockSize = 8 << 20
	// listPageSize is how many entries one List Blobs call asks for.
	listPageSize = 1000
)

// Provider opens azure-blob:// and azure:// stores.
type Provider struct {
	// Logger receives the stores' log lines; nil discards them.
	Logger *slog.Logger

	// For tests: block size, listing page size, and the SDK's retry
	// policy (nil: defaultRetry).
	blockSize int
	pageSize  int32
	retry     *policy.RetryOptions
}

var _ storage.Provider = Provider{}

// defaultRetry is the retry policy of every store: exponential backoff
// with jitter on throttling, 5xx answers and connection errors, bounded
// in attempts. Not found, permission denied and precondition failures are
// never retried.
var defaultRetry = policy.RetryOptions{
	MaxRetries:    5,
	RetryDelay:    200 * time.Millisecond,
	MaxRetryDelay: 10 * time.Second,
}

// Schemes implements storage.Provider.
func (Provider) Schemes() []string { return []string{"azure-blob", "azure"} }

// Open implements storage.Provider: it parses uri, connects, and checks
// that the container exists and the credentials are accepted.
func (p Provider) Open(ctx context.Context, uri string) (storage.Store, error) {
	cfg, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	return p.OpenConfig(ctx, cfg)
}

// OpenConfig opens the store that cfg describes.
func (p Provider) OpenConfig(ctx context.Context, cfg Config) (*Store, error) {
	logger := p.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	retry := defaultRetry
	if p.retry != nil {
		retry = *p.retry
	}
	s := &Store{
		cfg:       cfg,
		logger:    logger.With("container", cfg.Container, "account", cfg.AccountName),
		blockSize: DefaultBlockSize,
		pageSize:  listPageSize,
	}
	if p.blockSize > 0 {
		s.blockSize = p.blockSize
	}
	if p.pageSize > 0 {
		s.pageSize = p.pageSize
	}
	opts := &container.ClientOptions{ClientOptions: azcore.ClientOptions{
		Retry:     retry,
		Telemetry: policy.TelemetryOptions{Disabled: true},
	}}
	if cfg.UsesSharedKey() {
		cred, err := container.NewSharedKeyCredential(cfg.AccountName, cfg.AccountKey)
		if err != nil {
			// The SDK's message may quote the key's bytes: leave it out.
			return nil, fmt.Errorf("opening %s: %s is not valid base64: %w", cfg, ParamAccountKey, storage.ErrInvalidArgument)
		}
		s.cc, err = container.NewClientWithSharedKeyCredential(cfg.ContainerURL(), cred, opts)
		if err != nil {
			return nil, fmt.Errorf("opening %s: creating the container client: %v: %w", cfg, err, storage.ErrInvalidArgument)
		}
	} else {
		cc := cloud.AzurePublic
		switch cfg.Environment {
		case EnvUSGovernment:
			cc = cloud.AzureGovernment
		case EnvChina:
			cc = cloud.AzureChina
		}
		cred, err := azidentity.NewClientSecretCredential(cfg.TenantID, cfg.ClientID, cfg.ClientSecret,
			&azidentity.ClientSecretCredentialOptions{ClientOptions: azcore.ClientOptions{
				Cloud: cc, Retry: retry, Telemetry: policy.TelemetryOptions{Disabled: true},
			}})
		if err != nil {
			return nil, fmt.Errorf("opening %s: creating the client secret credential: %w", cfg, storage.ErrInvalidArgument)
		}
		opts.Cloud = cc
		s.cc, err = container.NewClient(cfg.ContainerURL(), cred, opts)
		if err != nil {
			return nil, fmt.Errorf("opening %s: creating the container client: %v: %w", cfg, err, storage.ErrInvalidArgument)
		}
	}
	// Fail fast on a missing container or refused credentials, rather
	// than at the first write of a backup.
	if _, err := s.cc.GetProperties(ctx, nil); err != nil {
		return nil, s.classify("opening", "", err)
	}
	s.logger.Debug("opened azure blob store", "uri", cfg.URI, "endpoint", cfg.ServiceURL(), "root", cfg.Root)
	return s, nil
}

// Store is an Azure Blob Storage container, or a directory in one.
type Store struct {
	cfg       Config
	cc        *container.Client
	logger    *slog.Logger
	blockSize int
	pageSize  int32
}

var _ storage.Store = (*Store)(nil)

// String shows the store's redacted URI.
func (s *Store) String() string { return s.cfg.String() }

// key maps an object name to its blob name.
func (s *Store) key(name string) string {
	if s.cfg.Root == "" {
		return name
	}
	return s.cfg.Root + "/" + name
}

// rootPrefix is what key puts before a name.
func (s *Store) rootPrefix() string {
	if s.cfg.Root == "" {
		return ""
	}
	return s.cfg.Root + "/"
}

func (s *Store) checkName(op, name string) error {
	if !validName(name) {
		return fmt.Errorf("%s %q in azure container %s: invalid object name: %w", op, name, s.cfg.Container, storage.ErrInvalidArgument)
	}
	return nil
}

// Stat implements storage.Store.
func (s *Store) Stat(ctx context.Context, name string) (storage.ObjectInfo, error) {
	if err := s.checkName("stating", name); err != nil {
		return storage.ObjectInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return storage.ObjectInfo{}, s.classify("stating", name, err)
	}
	props, err := s.cc.NewBlobClient(s.key(name)).GetProperties(ctx, nil)
	if err != nil {
		return storage.ObjectInfo{}, s.classify("stating", name, err)
	}
	info := storage.ObjectInfo{Name: name}
	if props.ContentLength != nil {
		info.Size = *props.ContentLength
	}
	if props.LastModified != nil {
		info.ModTime = *props.LastModified
	}
	return info, nil
}

// Read implements storage.Store.
func (s *Store) Read(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	if err := s.checkName("reading", name); err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("reading %s in azure container %s: negative offset %d: %w", name, s.cfg.Container, offset, storage.ErrInvalidArgument)
	}
	if err := ctx.Err(); err != nil {
		return nil, s.classify("reading", name, err)
	}
	if length == 0 {
		if _, err := s.Stat(ctx, name); err != nil {
			return nil, err
		}
		return io.NopCloser(strings.NewReader("")), nil
	}
	bc := s.cc.NewBlobClient(s.key(name))
	var opts blob.DownloadStreamOptions
	if offset > 0 || length > 0 {
		// Count 0 means "to the end" to the SDK.
		opts.Range = blob.HTTPRange{Offset: offset, Count: max(length, 0)}
	}
	resp, err := bc.DownloadStream(ctx, &opts)
	if err != nil {
		if bloberror.HasCode(err, bloberror.InvalidRange) {
			// The offset is at or past the end (or the blob is empty):
			// an empty reader, if the blob exists.
			if _, err := s.Stat(ctx, name); err != nil {
				return nil, err
			}
			return io.NopCloser(strings.NewReader("")), nil
		}
		return nil, s.classify("reading", name, err)
	}
	body := resp.NewRetryReader(ctx, &blob.RetryReaderOptions{MaxRetries: 3})
	return &reader{s: s, name: name, rc: body}, nil
}

// reader maps the errors of a download's body to the sdk's sentinels.
type reader struct {
	s    *Store
	name string
	rc   io.ReadCloser
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	if err != nil && err != io.EOF {
		err = r.s.classify("reading", r.name, err)
	}
	return n, err
}

func (r *reader) Close() error { return r.rc.Close() }

// Delete implements storage.Store.
func (s *Store) Delete(ctx context.Context, name string) error {
	if err := s.checkName("deleting", name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return s.classify("deleting", name, err)
	}
	_, err := s.cc.NewBlobClient(s.key(name)).Delete(ctx, &blob.DeleteOptions{
		DeleteSnapshots: to.Ptr(blob.DeleteSnapshotsOptionTypeInclude),
	})
	if err != nil && !bloberror.HasCode(err, bloberror.BlobNotFound) {
		return s.classify("deleting", name, err)
	}
	return nil
}

// List implements storage.Store.
func (s *Store) List(ctx context.Context, opts storage.ListOptions, fn func(storage.ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return s.classify("listing", opts.Prefix, err)
	}
	if !validListPrefix(opts.Prefix) {
		return nil // no valid name has this prefix
	}
	root := s.rootPrefix()
	prefix := root + opts.Prefix
	// StartAfter is applied here; last drops a common prefix that the
	// service repeats at the end of one page and the start of the next.
	// Entries are otherwise passed on in the service's order.
	var last string
	emit := func(o storage.ObjectInfo) error {
		o.Name = strings.TrimPrefix(o.Name, root)
		if o.Name <= opts.StartAfter || o.Name == last {
			return nil
		}
		last = o.Name
		return fn(o)
	}
	item := func(b *container.BlobItem) storage.ObjectInfo {
		o := storage.ObjectInfo{Name: *b.Name}
		if p := b.Properties; p != nil {
			if p.ContentLength != nil {
				o.Size = *p.ContentLength
			}
			if p.LastModified != nil {
				o.ModTime = *p.LastModified
			}
		}
		return o
	}
	var lp *string
	if prefix != "" {
		lp = &prefix
	}

	if opts.Delimiter == "" {
		pager := s.cc.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{Prefix: lp, MaxResults: &s.pageSize})
		for pager.More() {
			page, err := pager.NextPage(ctx)
			if err != nil {
				return s.classify("listing", opts.Prefix, err)
			}
			if page.Segment == nil {
				continue
			}
			for _, b := range page.Segment.BlobItems {
				if b.Name == nil || (b.Deleted != nil && *b.Deleted) {
					continue
				}
				if err := emit(item(b)); err != nil {
					return err
				}
			}
		}
		return nil
	}

	pager := s.cc.NewListBlobsHierarchyPager(opts.Delimiter, &container.ListBlobsHierarchyOptions{Prefix: lp, MaxResults: &s.pageSize})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return s.classify("listing", opts.Prefix, err)
		}
		if page.Segment == nil {
			continue
		}
		// A page holds its blobs and its prefixes in two sorted lists:
		// merge them.
		items, prefixes := page.Segment.BlobItems, page.Segment.BlobPrefixes
		for len(items) > 0 || len(prefixes) > 0 {
			var o storage.ObjectInfo
			switch {
			case len(prefixes) == 0 || (len(items) > 0 && *items[0].Name < *prefixes[0].Name):
				b := items[0]
				items = items[1:]
				if b.Name == nil || (b.Deleted != nil && *b.Deleted) {
					continue
				}
				o = item(b)
			default:
				p := prefixes[0]
				prefixes = prefixes[1:]
				if p.Name == nil {
					continue
				}
				o = storage.ObjectInfo{Name: *p.Name, IsPrefix: true}
			}
			if err := emit(o); err != nil {
				return err
			}
		}
	}
	return nil
}

// Close implements storage.Store. The SDK's clients hold no resources
// beyond pooled connections.
func (s *Store) Close() error { return nil }

// classify turns an SDK error into one wrapping the sdk's sentinels. The
// message names the operation, the object and the container, and keeps
// only the service's status and error code: response bodies and
// credential errors are left out, so no secret can leak through them.
func (s *Store) classify(op, name string, err error) error {
	what := fmt.Sprintf("%s %s in azure container %s", op, name, s.cfg.Container)
	if name == "" {
		what = fmt.Sprintf("%s azure container %s", op, s.cfg.Container)
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", what, context.Canceled)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", what, context.DeadlineExceeded)
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		code := re.ErrorCode
		if code == "" {
			code = "no error code"
		}
		status := fmt.Sprintf("status %d (%s)", re.StatusCode, code)
		switch {
		case code == string(bloberror.ContainerNotFound):
			return fmt.Errorf("%s: container %q does not exist in account %s: %w", what, s.cfg.Container, s.cfg.AccountName, storage.ErrNotFound)
		case re.StatusCode == 404:
			return fmt.Errorf("%s: %s: %w", what, status, storage.ErrNotFound)
		case re.StatusCode == 401 || re.StatusCode == 403:
			return fmt.Errorf("%s: credentials refused for account %s: %s: %w", what, s.cfg.AccountName, status, storage.ErrPermissionDenied)
		case re.StatusCode == 412 || code == string(bloberror.BlobAlreadyExists):
			return fmt.Errorf("%s: %s: %w", what, status, storage.ErrAlreadyExists)
		case code == string(bloberror.InvalidBlockList):
			// A concurrent commit of the same blob discarded our staged
			// blocks; writing again from the start succeeds.
			return storage.Retryable(fmt.Errorf("%s: staged blocks were discarded by a concurrent write: %s: %w", what, status, storage.ErrUnavailable))
		case re.StatusCode == 408 || re.StatusCode == 409 || re.StatusCode == 429 || re.StatusCode >= 500:
			return storage.Retryable(fmt.Errorf("%s: %s: %w", what, status, storage.ErrUnavailable))
		case re.StatusCode == 416:
			return fmt.Errorf("%s: %s: %w", what, status, storage.ErrInvalidArgument)
		default:
			return fmt.Errorf("%s: %s: %w", what, status, storage.ErrInvalidArgument)
		}
	}
	var ae *azidentity.AuthenticationFailedError
	if errors.As(err, &ae) {
		status := "no response"
		if ae.RawResponse != nil {
			status = fmt.Sprintf("status %d", ae.RawResponse.StatusCode)
		}
		return fmt.Errorf("%s: Azure AD refused client %s of tenant %s: %s: %w", what, s.cfg.ClientID, s.cfg.TenantID, status, storage.ErrPermissionDenied)
	}
	// Transport errors: connection refused or reset, timeouts, DNS.
	return storage.Retryable(fmt.Errorf("%s: %s: %w", what, scrub(err.Error(), s.cfg), storage.ErrUnavailable))
}

// scrub removes the configuration's secrets from a message, as a last
// line of defence for error texts the store does not compose itself.
func scrub(msg string, cfg Config) string {
	for _, secret := range []string{cfg.AccountKey, cfg.ClientSecret} {
		if secret != "" {
			msg = strings.ReplaceAll(msg, secret, "redacted")
		}
	}
	return msg
}
