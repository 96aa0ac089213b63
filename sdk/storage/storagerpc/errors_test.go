package storagerpc

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairnbackup/cairn/sdk/storage"
)

func TestErrorsCrossTheBoundary(t *testing.T) {
	for _, k := range kinds {
		for _, retry := range []bool{false, true} {
			err := fmt.Errorf("stating x: %w", k.err)
			if retry {
				err = storage.Retryable(err)
			}
			got := FromStatus(ToStatus(err))
			if !errors.Is(got, k.err) || got.Error() != err.Error() || IsConnectionError(got) {
				t.Errorf("%v (retryable %v) came back as %v", k.err, retry, got)
			}
			wantRetry := retry || errors.Is(k.err, storage.ErrUnavailable) || errors.Is(k.err, storage.ErrResourceExhausted)
			if storage.IsRetryable(got) != wantRetry {
				t.Errorf("%v (retryable %v): IsRetryable = %v", k.err, retry, !wantRetry)
			}
		}
	}
	if got := FromStatus(ToStatus(context.Canceled)); !errors.Is(got, context.Canceled) || IsConnectionError(got) {
		t.Errorf("context.Canceled came back as %v", got)
	}
	// A status without detail is the connection's, not the plugin's.
	got := FromStatus(status.Error(codes.Unavailable, "transport is closing"))
	if !IsConnectionError(got) || !errors.Is(got, storage.ErrUnavailable) || !storage.IsRetryable(got) {
		t.Errorf("a transport error came back as %v", got)
	}
	// gRPC's own Unimplemented (a method an older plugin lacks) is not a
	// broken connection: the host falls back instead of restarting.
	got = FromStatus(status.Error(codes.Unimplemented, "unknown method WriteFile"))
	if IsConnectionError(got) || !errors.Is(got, storage.ErrUnimplemented) || storage.IsRetryable(got) {
		t.Errorf("an unknown method came back as %v", got)
	}
	if FromStatus(ToStatus(nil)) != nil {
		t.Error("nil did not stay nil")
	}
}
