package localityrpc_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/cairnbackup/cairn/sdk/locality"
	"github.com/cairnbackup/cairn/sdk/locality/localityrpc"
	"github.com/cairnbackup/cairn/sdk/locality/localitytest"
	"github.com/cairnbackup/cairn/sdk/locality/rules"
)

var defaultPolicies = []locality.Policy{rules.Default{}, rules.Strict{}}

// bufconnPair serves m and ps on a plain gRPC server over bufconn, without
// go-plugin, and returns the client shims.
func bufconnPair(t *testing.T, m locality.Matcher, ps []locality.Policy) (locality.Matcher, localityrpc.Policies) {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	localityrpc.RegisterMatcher(srv, m)
	if err := localityrpc.RegisterPolicies(srv, ps); err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	cc, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return lis.Dial() }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	pol, err := localityrpc.NewPoliciesClient(context.Background(), cc)
	if err != nil {
		t.Fatal(err)
	}
	return localityrpc.NewMatcherClient(cc), pol
}

func config(t *testing.T, m locality.Matcher, pol localityrpc.Policies) localitytest.Config {
	t.Helper()
	names, err := pol.Names(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cfg := localitytest.Config{Matcher: m, Policies: map[string]locality.Policy{}}
	for _, n := range names {
		p, ok := pol.Policy(n)
		if !ok {
			t.Fatalf("Policy(%q) of a listed name: not found", n)
		}
		cfg.Policies[n] = p
	}
	if len(cfg.Policies) != 2 {
		t.Fatalf("the plugin serves %q, want default and strict", names)
	}
	return cfg
}

// TestConformanceBufconn runs the kit over plain gRPC.
func TestConformanceBufconn(t *testing.T) {
	m, pol := bufconnPair(t, rules.Matcher{}, defaultPolicies)
	localitytest.Run(t, config(t, m, pol))
}

// goPluginPair serves m and ps through go-plugin's in-process test harness,
// exercising the GRPCPlugin types and the Dispense conversions.
func goPluginPair(t *testing.T, m locality.Matcher, ps []locality.Policy) (locality.Matcher, localityrpc.Policies) {
	t.Helper()
	client, _ := goplugin.TestPluginGRPCConn(t, false, map[string]goplugin.Plugin{
		localityrpc.MatcherName: localityrpc.NewMatcherPlugin(m),
		localityrpc.PolicyName:  localityrpc.NewPolicyPlugin(ps),
	})
	t.Cleanup(func() { _ = client.Close() })
	raw, err := client.Dispense(localityrpc.MatcherName)
	if err != nil {
		t.Fatal(err)
	}
	matcher, err := localityrpc.MatcherFromDispensed(raw)
	if err != nil {
		t.Fatal(err)
	}
	raw, err = client.Dispense(localityrpc.PolicyName)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := localityrpc.PoliciesFromDispensed(raw)
	if err != nil {
		t.Fatal(err)
	}
	return matcher, pol
}

// TestConformanceGoPlugin runs the kit through go-plugin in process; the
// real plugin binary is tested in plugins/locality.
func TestConformanceGoPlugin(t *testing.T) {
	m, pol := goPluginPair(t, rules.Matcher{}, defaultPolicies)
	localitytest.Run(t, config(t, m, pol))
}

func TestFromDispensedRejectsOthers(t *testing.T) {
	if _, err := localityrpc.MatcherFromDispensed("nope"); err == nil {
		t.Error("MatcherFromDispensed(string) succeeded")
	}
	if _, err := localityrpc.PoliciesFromDispensed(nil); err == nil {
		t.Error("PoliciesFromDispensed(nil) succeeded")
	}
}

func TestRegisterPoliciesRejectsDuplicates(t *testing.T) {
	srv := grpc.NewServer()
	if err := localityrpc.RegisterPolicies(srv, []locality.Policy{rules.Default{}, rules.Default{}}); err == nil || !strings.Contains(err.Error(), `"default" appears twice`) {
		t.Errorf("RegisterPolicies with default twice: %v", err)
	}
	if err := localityrpc.RegisterPolicies(grpc.NewServer(), nil); err == nil {
		t.Error("RegisterPolicies with no policy succeeded")
	}
}

// panicky panics in every method.
type panicky struct{}

func (panicky) Name() string { return "panicky" }
func (panicky) Plan(context.Context, locality.PlanRequest) ([]locality.Assignment, error) {
	panic("planning went wrong")
}
func (panicky) MatchNodes(context.Context, locality.Locality, []locality.Node) ([]int32, error) {
	panic("matching went wrong")
}
func (panicky) Buckets(context.Context, []locality.Node, []string, bool) (map[int32]string, error) {
	panic("bucketing went wrong")
}

func TestPanicBecomesError(t *testing.T) {
	ctx := context.Background()
	for name, pair := range map[string]func(*testing.T, locality.Matcher, []locality.Policy) (locality.Matcher, localityrpc.Policies){
		"bufconn": bufconnPair, "go-plugin": goPluginPair,
	} {
		t.Run(name, func(t *testing.T) {
			m, pol := pair(t, panicky{}, []locality.Policy{panicky{}})
			p, ok := pol.Policy("panicky")
			if !ok {
				t.Fatal("policy panicky not served")
			}
			_, err := p.Plan(ctx, locality.PlanRequest{})
			check := func(what, msg string, err error) {
				t.Helper()
				if err == nil || !strings.Contains(err.Error(), msg) || !strings.Contains(err.Error(), "goroutine") {
					t.Errorf("%s: error %v, want one with %q and a stack", what, err, msg)
				}
			}
			check("Plan", "planning went wrong", err)
			_, err = m.MatchNodes(ctx, locality.Locality{}, nil)
			check("MatchNodes", "matching went wrong", err)
			_, err = m.Buckets(ctx, nil, []string{"default"}, false)
			check("Buckets", "bucketing went wrong", err)
			// The server survives its panics.
			if _, err := pol.Names(ctx); err != nil {
				t.Errorf("Names after panics: %v", err)
			}
		})
	}
}

func TestErrorClasses(t *testing.T) {
	ctx := context.Background()
	m, pol := bufconnPair(t, rules.Matcher{}, defaultPolicies)
	if _, ok := pol.Policy("bogus"); ok {
		t.Error("Policy(bogus) found")
	}
	_, err := m.Buckets(ctx, nil, []string{"region=a"}, false)
	if !errors.Is(err, locality.ErrInvalid) || err.Error() != `validating buckets ["region=a"]: no "default" bucket; exactly one is required` {
		t.Errorf("invalid buckets over gRPC: %v; want the implementation's message, matching ErrInvalid", err)
	}
	p, _ := pol.Policy("default")
	_, err = p.Plan(ctx, locality.PlanRequest{Filter: locality.Locality{Tiers: []locality.Tier{{Key: "region", Value: "mars"}}}})
	if !errors.Is(err, locality.ErrInvalid) || !strings.Contains(err.Error(), "region=mars") {
		t.Errorf("no matching node over gRPC: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := p.Plan(cctx, locality.PlanRequest{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Plan over gRPC: %v, want context.Canceled", err)
	}
}

// liar answers for the wrong spans and nodes.
type liar struct{ rules.Matcher }

func (liar) Name() string { return "liar" }
func (liar) Plan(_ context.Context, req locality.PlanRequest) ([]locality.Assignment, error) {
	out := make([]locality.Assignment, len(req.Spans))
	for i := range out {
		out[i] = locality.Assignment{Index: i + 100}
	}
	return out, nil
}
func (liar) MatchNodes(context.Context, locality.Locality, []locality.Node) ([]int32, error) {
	return []int32{42}, nil
}

// TestClientChecksAnswers: the host never takes an answer for spans or
// nodes it did not ask about.
func TestClientChecksAnswers(t *testing.T) {
	ctx := context.Background()
	m, pol := bufconnPair(t, liar{}, []locality.Policy{liar{}})
	p, _ := pol.Policy("liar")
	_, err := p.Plan(ctx, locality.PlanRequest{Spans: []locality.SpanRange{{Index: 1}}})
	if err == nil || !strings.Contains(err.Error(), "answered span 100 where span 1 was due") {
		t.Errorf("Plan answered for the wrong span: %v", err)
	}
	_, err = m.MatchNodes(ctx, locality.Locality{}, []locality.Node{{ID: 1}})
	if err == nil || !strings.Contains(err.Error(), "answered node 42") {
		t.Errorf("MatchNodes answered a node not asked: %v", err)
	}
}
