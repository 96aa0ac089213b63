// Package storage is the interface between cairn and a place that keeps
// backup files: a local directory, an S3 bucket, an Azure container, a GCS
// bucket. It is what a storage plugin implements and what cairn's core
// calls; sdk/storage/storagetest is the conformance kit every implementation
// must pass.
//
// Object names are slash-separated, relative to the store's root (the path
// of the URI it was opened with), never start with "/" and never contain
// "." or ".." elements or empty elements.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// ObjectInfo describes one stored object, or a common prefix when listing
// with a delimiter.
type ObjectInfo struct {
	// Name is relative to the store's root. For a common prefix it ends
	// with the delimiter.
	Name    string
	Size    int64
	ModTime time.Time
	// IsPrefix is set for a common prefix returned by a delimited listing.
	IsPrefix bool
}

// ListOptions select part of a store.
type ListOptions struct {
	// Prefix restricts the listing to names that start with it.
	Prefix string
	// Delimiter, when set (usually "/"), groups names that contain it
	// after the prefix into one common prefix entry.
	Delimiter string
	// StartAfter lists only names strictly greater than it.
	StartAfter string
}

// WriteOptions change how a write commits.
type WriteOptions struct {
	// IfNotExists makes the commit fail with ErrAlreadyExists when an object
	// of that name exists. Locks and LATEST pointers rely on it.
	IfNotExists bool
}

// Writer receives an object's bytes. Nothing is visible under the object's
// name until Close returns nil; after Abort, or after a Close that returns
// an error, nothing is left behind and a previous object of that name is
// unchanged. Exactly one of Close or Abort must be called; calling Abort
// after Close is a no-op, so `defer w.Abort()` is the usual pattern.
type Writer interface {
	io.Writer
	// Close commits the object.
	Close() error
	// Abort discards what was written.
	Abort() error
}

// Store is one opened location. Implementations are safe for concurrent
// use. Every method honours ctx: cancellation aborts the call, and a
// cancelled Write leaves nothing.
type Store interface {
	// Stat returns ErrNotFound when the object does not exist.
	Stat(ctx context.Context, name string) (ObjectInfo, error)
	// List calls fn for each object (and, with a delimiter, each common
	// prefix) in lexical order of Name. It stops at the first error fn
	// returns and returns that error. Implementations fetch in pages, so
	// memory does not grow with the number of objects.
	List(ctx context.Context, opts ListOptions, fn func(ObjectInfo) error) error
	// Read returns the bytes [offset, offset+length) of an object; length
	// < 0 reads to the end. A range past the end is clipped; an offset past
	// the end yields an empty reader. ErrNotFound when missing.
	Read(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error)
	// Write starts a new object; see Writer for when it becomes visible.
	// ctx governs the whole write, up to Close.
	Write(ctx context.Context, name string, opts WriteOptions) (Writer, error)
	// Delete removes an object. Deleting a missing object is not an error.
	Delete(ctx context.Context, name string) error
	// Close releases the store's resources.
	Close() error
}

// The closed set of error kinds that cross the plugin boundary. Wrap them
// (fmt.Errorf("...: %w", ErrNotFound)) and test with errors.Is.
var (
	ErrNotFound          = errors.New("not found")
	ErrPermissionDenied  = errors.New("permission denied")
	ErrAlreadyExists     = errors.New("already exists")
	ErrInvalidArgument   = errors.New("invalid argument")
	ErrUnavailable       = errors.New("unavailable")
	ErrResourceExhausted = errors.New("resource exhausted")
	ErrUnimplemented     = errors.New("unimplemented")
)

// retryable marks an error as worth retrying.
type retryable struct{ err error }

func (r retryable) Error() string { return r.err.Error() }
func (r retryable) Unwrap() error { return r.err }

// Retryable marks err as transient: the host may retry the call.
func Retryable(err error) error {
	if err == nil {
		return nil
	}
	return retryable{err}
}

// IsRetryable reports whether err, or an error it wraps, was marked
// retryable, or is ErrUnavailable or ErrResourceExhausted.
func IsRetryable(err error) bool {
	var r retryable
	if errors.As(err, &r) {
		return true
	}
	return errors.Is(err, ErrUnavailable) || errors.Is(err, ErrResourceExhausted)
}

// ReadAll reads a whole object.
func ReadAll(ctx context.Context, s Store, name string) ([]byte, error) {
	r, err := s.Read(ctx, name, 0, -1)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// WriteAll writes a whole object in one call.
func WriteAll(ctx context.Context, s Store, name string, data []byte, opts WriteOptions) error {
	w, err := s.Write(ctx, name, opts)
	if err != nil {
		return err
	}
	defer w.Abort()
	if _, err := w.Write(data); err != nil {
		return err
	}
	return w.Close()
}

// Provider opens stores for the URI schemes it serves. It is what a
// storage plugin implements.
type Provider interface {
	// Schemes are the URI schemes served, lower case, e.g. "s3".
	Schemes() []string
	// Open validates uri (refusing unknown parameters with
	// ErrInvalidArgument) and returns a store rooted at its path. Errors
	// must not contain secrets from the URI.
	Open(ctx context.Context, uri string) (Store, error)
}

// ValidateName checks name against the naming rules above: not empty, no
// leading "/", and no empty, "." or ".." elements. Its error wraps
// ErrInvalidArgument. Every Store refuses such names with it.
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("empty object name: %w", ErrInvalidArgument)
	}
	for elem := range strings.SplitSeq(name, "/") {
		switch elem {
		case "":
			return fmt.Errorf("object name %q has an empty element: %w", name, ErrInvalidArgument)
		case ".", "..":
			return fmt.Errorf("object name %q has a %q element: %w", name, elem, ErrInvalidArgument)
		}
	}
	return nil
}
