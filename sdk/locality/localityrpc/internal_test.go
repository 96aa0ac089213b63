package localityrpc

import (
	"context"
	"errors"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/cairnbackup/cairn/sdk/internal/pb/localitypb"
	"github.com/cairnbackup/cairn/sdk/locality"
	"github.com/cairnbackup/cairn/sdk/locality/rules"
)

// TestUnimplemented: a policy the server does not serve (a host with a
// stale name list), and a kind it does not serve, are ErrUnimplemented.
func TestUnimplemented(t *testing.T) {
	lis := bufconn.Listen(1 << 16)
	srv := grpc.NewServer()
	if err := RegisterPolicies(srv, []locality.Policy{rules.Default{}}); err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	cc, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return lis.Dial() }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx := context.Background()
	p := &policyClient{c: localitypb.NewPoliciesClient(cc), name: "strict"}
	if _, err := p.Plan(ctx, locality.PlanRequest{}); !errors.Is(err, locality.ErrUnimplemented) {
		t.Errorf("Plan with an unserved policy: %v, want ErrUnimplemented", err)
	}
	if _, err := NewMatcherClient(cc).MatchNodes(ctx, locality.Locality{}, nil); !errors.Is(err, locality.ErrUnimplemented) {
		t.Errorf("MatchNodes on a server without a matcher: %v, want ErrUnimplemented", err)
	}
}

func TestBatches(t *testing.T) {
	for _, tc := range []struct {
		n, size int
		want    [][2]int
	}{
		{0, 3, [][2]int{{0, 0}}},
		{3, 3, [][2]int{{0, 3}}},
		{7, 3, [][2]int{{0, 3}, {3, 6}, {6, 7}}},
	} {
		var got [][2]int
		_ = batches(tc.n, tc.size, func(lo, hi int) error { got = append(got, [2]int{lo, hi}); return nil })
		if len(got) != len(tc.want) {
			t.Errorf("batches(%d, %d) = %v, want %v", tc.n, tc.size, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("batches(%d, %d) = %v, want %v", tc.n, tc.size, got, tc.want)
			}
		}
	}
}
