package storagerpc

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairnbackup/cairn/sdk/internal/pb/storagepb"
	"github.com/cairnbackup/cairn/sdk/storage"
)

// kinds is the closed set of error kinds that cross the boundary, with
// their gRPC codes and names in storagepb.ErrorDetail.
var kinds = []struct {
	err  error
	code codes.Code
	name string
}{
	{storage.ErrNotFound, codes.NotFound, "not_found"},
	{storage.ErrPermissionDenied, codes.PermissionDenied, "permission_denied"},
	{storage.ErrAlreadyExists, codes.AlreadyExists, "already_exists"},
	{storage.ErrInvalidArgument, codes.InvalidArgument, "invalid_argument"},
	{storage.ErrUnavailable, codes.Unavailable, "unavailable"},
	{storage.ErrResourceExhausted, codes.ResourceExhausted, "resource_exhausted"},
	{storage.ErrUnimplemented, codes.Unimplemented, "unimplemented"},
}

// ToStatus turns an error of a storage implementation into the gRPC
// status error the plugin returns: the code of its kind (context errors
// keep theirs, anything else is Unknown), its message, and an
// ErrorDetail with the kind and the retryable flag. nil stays nil.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	if s, ok := status.FromError(err); ok && detailOf(s) != nil {
		return err // already carries its kind
	}
	code, name := codes.Unknown, ""
	for _, k := range kinds {
		if errors.Is(err, k.err) {
			code, name = k.code, k.name
			break
		}
	}
	if name == "" {
		switch {
		case errors.Is(err, context.Canceled):
			code = codes.Canceled
		case errors.Is(err, context.DeadlineExceeded):
			code = codes.DeadlineExceeded
		}
	}
	return WithDetail(status.New(code, err.Error()), name, storage.IsRetryable(err)).Err()
}

// WithDetail attaches the ErrorDetail that marks s as an error the plugin
// returned on purpose (rather than a broken connection).
func WithDetail(s *status.Status, kind string, retryable bool) *status.Status {
	ds, err := s.WithDetails(&storagepb.ErrorDetail{Kind: kind, Retryable: retryable})
	if err != nil {
		return s
	}
	return ds
}

func detailOf(s *status.Status) *storagepb.ErrorDetail {
	for _, d := range s.Details() {
		if ed, ok := d.(*storagepb.ErrorDetail); ok {
			return ed
		}
	}
	return nil
}

// RemoteError is an error that came back from a storage plugin, or from
// the connection to it. It unwraps to the storage error kind (so
// errors.Is(err, storage.ErrNotFound) works on the host), and to
// context.Canceled or context.DeadlineExceeded for those codes.
type RemoteError struct {
	Code codes.Code
	Msg  string
	// Connection is set when the error did not come from the plugin's
	// code but from the transport: the process died, the connection
	// broke. The host restarts the plugin on such errors.
	Connection bool
	retryable  bool
	kind       error
}

func (e *RemoteError) Error() string { return e.Msg }

// Unwrap returns the error kind.
func (e *RemoteError) Unwrap() error { return e.kind }

// FromStatus turns an error returned by a gRPC call to a storage plugin
// into a Go error of the storage kinds. Errors that are not gRPC statuses
// are returned as they are; nil stays nil.
func FromStatus(err error) error {
	if err == nil {
		return nil
	}
	s, ok := status.FromError(err)
	if !ok {
		return err
	}
	re := &RemoteError{Code: s.Code(), Msg: s.Message()}
	if d := detailOf(s); d != nil {
		re.retryable = d.Retryable
		for _, k := range kinds {
			if k.name == d.Kind {
				re.kind = k.err
			}
		}
	} else if s.Code() == codes.Unimplemented {
		// gRPC's answer for a method the plugin's protocol does not
		// have yet (an older SDK): not a broken connection.
		re.kind = storage.ErrUnimplemented
	} else if s.Code() != codes.DeadlineExceeded {
		// No detail: the plugin's code did not return this, the
		// connection did. Canceled is also what a call gets when the
		// client connection closes under it; the host tells that from
		// its own cancellation by looking at its context.
		re.Connection = true
		re.Msg = fmt.Sprintf("calling storage plugin: %s", s.Message())
		if s.Code() != codes.Canceled {
			re.kind, re.retryable = storage.ErrUnavailable, true
		}
	}
	switch s.Code() {
	case codes.Canceled:
		re.kind = context.Canceled
	case codes.DeadlineExceeded:
		re.kind = context.DeadlineExceeded
	}
	if re.retryable {
		return storage.Retryable(re)
	}
	return re
}

// IsConnectionError reports whether err came from the connection to the
// plugin rather than from the plugin's code.
func IsConnectionError(err error) bool {
	var re *RemoteError
	return errors.As(err, &re) && re.Connection
}
