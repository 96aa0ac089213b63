// Package localityrpc carries the locality plugin kinds over gRPC: the
// go-plugin plugins that serve a Matcher and a set of Policies, the server
// shims that call an implementation, and the client shims, which implement
// locality.Matcher and locality.Policy, that the host uses to call them.
//
// Calls are unary and bounded: a client shim splits a long node list
// (MatchNodes, Buckets) into batches of MaxNodesPerCall and a long span
// list (Plan) into batches of MaxSpansPerCall, each carrying the full
// filter, nodes and buckets, and concatenates the answers, which the
// locality contracts allow. A request with more than MaxNodes nodes or
// MaxBuckets buckets is refused before it is sent.
//
// Errors cross as gRPC codes: an implementation's error is INVALID_ARGUMENT
// (a pure function's error is always about its request) unless it matches
// locality.ErrUnimplemented (UNIMPLEMENTED) or a context error (CANCELLED,
// DEADLINE_EXCEEDED); a panic in the implementation is recovered in the
// server shim and becomes INTERNAL with the stack in its message. On the
// client side the codes become errors matching locality.ErrInvalid,
// locality.ErrUnimplemented or the context errors again, with the
// implementation's message unchanged.
package localityrpc

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"time"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairnbackup/cairn/sdk/internal/pb/localitypb"
	"github.com/cairnbackup/cairn/sdk/locality"
)

// Plugin names in go-plugin's plugin set.
const (
	MatcherName = "locality-matcher"
	PolicyName  = "execution-policy"
)

// Bounds on what one call carries.
const (
	// MaxNodesPerCall is the batch size of MatchNodes and Buckets.
	MaxNodesPerCall = 4096
	// MaxSpansPerCall is the batch size of Plan.
	MaxSpansPerCall = 1024
	// MaxNodes bounds the nodes of a Plan request, which every batch
	// carries whole.
	MaxNodes = 16384
	// MaxBuckets bounds the buckets of a request.
	MaxBuckets = 1024
	// DefaultTimeout is the deadline a client shim gives a call whose ctx
	// has none.
	DefaultTimeout = 30 * time.Second
	// maxStack bounds the stack carried by a panic's error.
	maxStack = 8 << 10
)

// NewMatcherPlugin serves m. The host passes nil: only GRPCClient is used
// on its side.
func NewMatcherPlugin(m locality.Matcher) goplugin.Plugin { return &matcherPlugin{impl: m} }

// NewPolicyPlugin serves the named policies ps. The host passes nil.
func NewPolicyPlugin(ps []locality.Policy) goplugin.Plugin { return &policyPlugin{impls: ps} }

// Policies is the host's view of a plugin's policies.
type Policies interface {
	// Names lists the policies the plugin serves.
	Names(ctx context.Context) ([]string, error)
	// Policy returns the named policy, or false.
	Policy(name string) (locality.Policy, bool)
}

// MatcherFromDispensed converts what go-plugin's Dispense(MatcherName)
// returned into a Matcher.
func MatcherFromDispensed(raw any) (locality.Matcher, error) {
	m, ok := raw.(locality.Matcher)
	if !ok || m == nil {
		return nil, fmt.Errorf("converting dispensed %s plugin: got %T, not a locality.Matcher", MatcherName, raw)
	}
	return m, nil
}

// PoliciesFromDispensed converts what Dispense(PolicyName) returned.
func PoliciesFromDispensed(raw any) (Policies, error) {
	p, ok := raw.(Policies)
	if !ok || p == nil {
		return nil, fmt.Errorf("converting dispensed %s plugin: got %T, not localityrpc.Policies", PolicyName, raw)
	}
	return p, nil
}

// go-plugin glue.

type matcherPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	impl locality.Matcher
}

var _ goplugin.GRPCPlugin = (*matcherPlugin)(nil)

func (p *matcherPlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	if p.impl == nil {
		return errors.New("serving locality matcher: no Matcher configured")
	}
	RegisterMatcher(s, p.impl)
	return nil
}

func (p *matcherPlugin) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, cc *grpc.ClientConn) (any, error) {
	return NewMatcherClient(cc), nil
}

type policyPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	impls []locality.Policy
}

var _ goplugin.GRPCPlugin = (*policyPlugin)(nil)

func (p *policyPlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	return RegisterPolicies(s, p.impls)
}

// GRPCClient asks the plugin for its policy names once, so that Policy
// can answer without a call; ctx is go-plugin's, cancelled when the
// plugin exits.
func (p *policyPlugin) GRPCClient(ctx context.Context, _ *goplugin.GRPCBroker, cc *grpc.ClientConn) (any, error) {
	return NewPoliciesClient(ctx, cc)
}

// Server shims.

// RegisterMatcher registers a server shim for m on s.
func RegisterMatcher(s grpc.ServiceRegistrar, m locality.Matcher) {
	localitypb.RegisterMatcherServer(s, &matcherServer{impl: m})
}

// RegisterPolicies registers a server shim for ps on s. Their names must
// be distinct and non-empty.
func RegisterPolicies(s grpc.ServiceRegistrar, ps []locality.Policy) error {
	srv := &policiesServer{byName: map[string]locality.Policy{}}
	for _, p := range ps {
		if p == nil || p.Name() == "" {
			return errors.New("serving execution policies: a policy has no name")
		}
		if _, dup := srv.byName[p.Name()]; dup {
			return fmt.Errorf("serving execution policies: policy %q appears twice", p.Name())
		}
		srv.byName[p.Name()] = p
		srv.names = append(srv.names, p.Name())
	}
	if len(ps) == 0 {
		return errors.New("serving execution policies: no policy configured")
	}
	localitypb.RegisterPoliciesServer(s, srv)
	return nil
}

type matcherServer struct {
	localitypb.UnimplementedMatcherServer
	impl locality.Matcher
}

func (s *matcherServer) MatchNodes(ctx context.Context, req *localitypb.MatchNodesRequest) (resp *localitypb.MatchNodesResponse, err error) {
	defer recoverPanic("MatchNodes", &err)
	if len(req.GetNodes()) > MaxNodesPerCall {
		return nil, status.Errorf(codes.InvalidArgument, "matching nodes: %d nodes in one call, more than %d", len(req.GetNodes()), MaxNodesPerCall)
	}
	ids, err := s.impl.MatchNodes(ctx, localityFromPB(req.GetFilter()), nodesFromPB(req.GetNodes()))
	if err != nil {
		return nil, toStatus(err)
	}
	return &localitypb.MatchNodesResponse{NodeIds: ids}, nil
}

func (s *matcherServer) Buckets(ctx context.Context, req *localitypb.BucketsRequest) (resp *localitypb.BucketsResponse, err error) {
	defer recoverPanic("Buckets", &err)
	if len(req.GetNodes()) > MaxNodesPerCall || len(req.GetBuckets()) > MaxBuckets {
		return nil, status.Errorf(codes.InvalidArgument, "choosing buckets: %d nodes and %d buckets in one call, more than %d or %d",
			len(req.GetNodes()), len(req.GetBuckets()), MaxNodesPerCall, MaxBuckets)
	}
	m, err := s.impl.Buckets(ctx, nodesFromPB(req.GetNodes()), req.GetBuckets(), req.GetStrict())
	if err != nil {
		return nil, toStatus(err)
	}
	resp = &localitypb.BucketsResponse{}
	for _, n := range req.GetNodes() {
		b, ok := m[n.GetId()]
		if !ok {
			return nil, status.Errorf(codes.Internal, "choosing buckets: the matcher chose no bucket for node %d", n.GetId())
		}
		resp.Buckets = append(resp.Buckets, &localitypb.NodeBucket{NodeId: n.GetId(), Bucket: b})
	}
	return resp, nil
}

type policiesServer struct {
	localitypb.UnimplementedPoliciesServer
	names  []string
	byName map[string]locality.Policy
}

func (s *policiesServer) Names(context.Context, *localitypb.NamesRequest) (*localitypb.NamesResponse, error) {
	return &localitypb.NamesResponse{Names: s.names}, nil
}

func (s *policiesServer) Plan(ctx context.Context, req *localitypb.PlanRequest) (resp *localitypb.PlanResponse, err error) {
	defer recoverPanic("Plan", &err)
	p, ok := s.byName[req.GetPolicy()]
	if !ok {
		return nil, status.Errorf(codes.Unimplemented, "planning with policy %q: the plugin serves only %q", req.GetPolicy(), s.names)
	}
	if len(req.GetSpans()) > MaxSpansPerCall || len(req.GetNodes()) > MaxNodes || len(req.GetBuckets()) > MaxBuckets {
		return nil, status.Errorf(codes.InvalidArgument, "planning: %d spans, %d nodes and %d buckets in one call, more than %d, %d or %d",
			len(req.GetSpans()), len(req.GetNodes()), len(req.GetBuckets()), MaxSpansPerCall, MaxNodes, MaxBuckets)
	}
	as, err := p.Plan(ctx, planRequestFromPB(req))
	if err != nil {
		return nil, toStatus(err)
	}
	resp = &localitypb.PlanResponse{Assignments: make([]*localitypb.Assignment, len(as))}
	for i, a := range as {
		resp.Assignments[i] = &localitypb.Assignment{Index: int64(a.Index), Executor: a.Executor, ReadFrom: a.ReadFrom, Bucket: a.Bucket}
	}
	return resp, nil
}

// recoverPanic turns a panic of the implementation into an INTERNAL error
// carrying the stack, so a bug in a plugin fails the call, not the plugin.
func recoverPanic(method string, err *error) {
	r := recover()
	if r == nil {
		return
	}
	stack := debug.Stack()
	if len(stack) > maxStack {
		stack = append(stack[:maxStack:maxStack], "\n...(truncated)"...)
	}
	*err = status.Errorf(codes.Internal, "locality plugin panicked in %s: %v\n%s", method, r, stack)
}

// toStatus classifies an implementation's error as a gRPC status.
func toStatus(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, locality.ErrUnimplemented):
		return status.Error(codes.Unimplemented, err.Error())
	default:
		return status.Error(codes.InvalidArgument, err.Error())
	}
}

// Client shims.

// classError keeps the remote message and matches its class sentinel.
type classError struct {
	msg   string
	class error
}

func (e *classError) Error() string        { return e.msg }
func (e *classError) Is(target error) bool { return target == e.class }

// fromStatus turns a call's error back into a classified error.
func fromStatus(ctx context.Context, what string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%s: %w", what, err)
	}
	switch st.Code() {
	case codes.InvalidArgument:
		return &classError{msg: st.Message(), class: locality.ErrInvalid}
	case codes.Unimplemented:
		return &classError{msg: st.Message(), class: locality.ErrUnimplemented}
	case codes.Canceled, codes.DeadlineExceeded:
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, ctx.Err())
		}
		if st.Code() == codes.Canceled {
			return fmt.Errorf("%s: %s: %w", what, st.Message(), context.Canceled)
		}
		return fmt.Errorf("%s: %s: %w", what, st.Message(), context.DeadlineExceeded)
	default:
		return fmt.Errorf("%s: %w", what, err)
	}
}

func withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, DefaultTimeout)
}

// batches calls fn with [lo, hi) windows of n items of at most size each,
// at least once (so an empty list still reaches the implementation, which
// may refuse it).
func batches(n, size int, fn func(lo, hi int) error) error {
	for lo := 0; lo == 0 || lo < n; lo += size {
		if err := fn(lo, min(lo+size, n)); err != nil {
			return err
		}
	}
	return nil
}

// NewMatcherClient returns a Matcher that calls the plugin on cc.
func NewMatcherClient(cc grpc.ClientConnInterface) locality.Matcher {
	return &matcherClient{c: localitypb.NewMatcherClient(cc)}
}

type matcherClient struct{ c localitypb.MatcherClient }

var _ locality.Matcher = (*matcherClient)(nil)

func (m *matcherClient) MatchNodes(ctx context.Context, filter locality.Locality, nodes []locality.Node) ([]int32, error) {
	ctx, cancel := withDeadline(ctx)
	defer cancel()
	ids := []int32{}
	f := localityToPB(filter)
	err := batches(len(nodes), MaxNodesPerCall, func(lo, hi int) error {
		resp, err := m.c.MatchNodes(ctx, &localitypb.MatchNodesRequest{Filter: f, Nodes: nodesToPB(nodes[lo:hi])})
		if err != nil {
			return fromStatus(ctx, "matching nodes over gRPC", err)
		}
		// The answer must be a subsequence of the batch's ids.
		j := lo
		for _, id := range resp.GetNodeIds() {
			for j < hi && nodes[j].ID != id {
				j++
			}
			if j == hi {
				return fmt.Errorf("matching nodes over gRPC: the plugin answered node %d, not among the nodes asked or out of order", id)
			}
			j++
		}
		ids = append(ids, resp.GetNodeIds()...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ids, nil
}

func (m *matcherClient) Buckets(ctx context.Context, nodes []locality.Node, buckets []string, strict bool) (map[int32]string, error) {
	if len(buckets) > MaxBuckets {
		return nil, &classError{msg: fmt.Sprintf("choosing buckets: %d buckets, more than %d", len(buckets), MaxBuckets), class: locality.ErrInvalid}
	}
	ctx, cancel := withDeadline(ctx)
	defer cancel()
	out := make(map[int32]string, len(nodes))
	err := batches(len(nodes), MaxNodesPerCall, func(lo, hi int) error {
		resp, err := m.c.Buckets(ctx, &localitypb.BucketsRequest{Nodes: nodesToPB(nodes[lo:hi]), Buckets: buckets, Strict: strict})
		if err != nil {
			return fromStatus(ctx, "choosing buckets over gRPC", err)
		}
		got := resp.GetBuckets()
		if len(got) != hi-lo {
			return fmt.Errorf("choosing buckets over gRPC: the plugin answered %d nodes for %d", len(got), hi-lo)
		}
		for i, nb := range got {
			if nb.GetNodeId() != nodes[lo+i].ID || !slices.Contains(buckets, nb.GetBucket()) {
				return fmt.Errorf("choosing buckets over gRPC: the plugin answered node %d bucket %q for node %d", nb.GetNodeId(), nb.GetBucket(), nodes[lo+i].ID)
			}
			out[nb.GetNodeId()] = nb.GetBucket()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// NewPoliciesClient returns the policies served on cc, asking for their
// names with ctx.
func NewPoliciesClient(ctx context.Context, cc grpc.ClientConnInterface) (Policies, error) {
	p := &policiesClient{c: localitypb.NewPoliciesClient(cc)}
	names, err := p.Names(ctx)
	if err != nil {
		return nil, err
	}
	p.names = names
	return p, nil
}

type policiesClient struct {
	c localitypb.PoliciesClient
	// names were fetched when the client was made; a plugin's policies do
	// not change while it runs.
	names []string
}

var _ Policies = (*policiesClient)(nil)

func (p *policiesClient) Names(ctx context.Context) ([]string, error) {
	ctx, cancel := withDeadline(ctx)
	defer cancel()
	resp, err := p.c.Names(ctx, &localitypb.NamesRequest{})
	if err != nil {
		return nil, fromStatus(ctx, "listing execution policies over gRPC", err)
	}
	return resp.GetNames(), nil
}

func (p *policiesClient) Policy(name string) (locality.Policy, bool) {
	if !slices.Contains(p.names, name) {
		return nil, false
	}
	return &policyClient{c: p.c, name: name}, true
}

type policyClient struct {
	c    localitypb.PoliciesClient
	name string
}

var _ locality.Policy = (*policyClient)(nil)

func (p *policyClient) Name() string { return p.name }

func (p *policyClient) Plan(ctx context.Context, req locality.PlanRequest) ([]locality.Assignment, error) {
	if len(req.Nodes) > MaxNodes || len(req.Buckets) > MaxBuckets {
		return nil, &classError{msg: fmt.Sprintf("planning: %d nodes and %d buckets, more than %d or %d", len(req.Nodes), len(req.Buckets), MaxNodes, MaxBuckets), class: locality.ErrInvalid}
	}
	ctx, cancel := withDeadline(ctx)
	defer cancel()
	base := &localitypb.PlanRequest{Policy: p.name, Filter: localityToPB(req.Filter), Nodes: nodesToPB(req.Nodes), Buckets: req.Buckets}
	out := make([]locality.Assignment, 0, len(req.Spans))
	err := batches(len(req.Spans), MaxSpansPerCall, func(lo, hi int) error {
		call := &localitypb.PlanRequest{Policy: base.Policy, Filter: base.Filter, Nodes: base.Nodes, Buckets: base.Buckets, Spans: spansToPB(req.Spans[lo:hi])}
		resp, err := p.c.Plan(ctx, call)
		if err != nil {
			return fromStatus(ctx, fmt.Sprintf("planning with policy %q over gRPC", p.name), err)
		}
		got := resp.GetAssignments()
		if len(got) != hi-lo {
			return fmt.Errorf("planning with policy %q over gRPC: the plugin answered %d assignments for %d spans", p.name, len(got), hi-lo)
		}
		for i, a := range got {
			if int(a.GetIndex()) != req.Spans[lo+i].Index {
				return fmt.Errorf("planning with policy %q over gRPC: the plugin answered span %d where span %d was due", p.name, a.GetIndex(), req.Spans[lo+i].Index)
			}
			out = append(out, locality.Assignment{Index: int(a.GetIndex()), Executor: a.GetExecutor(), ReadFrom: a.GetReadFrom(), Bucket: a.GetBucket()})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Conversions.

func localityToPB(l locality.Locality) *localitypb.Locality {
	out := &localitypb.Locality{Tiers: make([]*localitypb.Tier, len(l.Tiers))}
	for i, t := range l.Tiers {
		out.Tiers[i] = &localitypb.Tier{Key: t.Key, Value: t.Value}
	}
	return out
}

func localityFromPB(l *localitypb.Locality) locality.Locality {
	var out locality.Locality
	for _, t := range l.GetTiers() {
		out.Tiers = append(out.Tiers, locality.Tier{Key: t.GetKey(), Value: t.GetValue()})
	}
	return out
}

func nodesToPB(ns []locality.Node) []*localitypb.Node {
	out := make([]*localitypb.Node, len(ns))
	for i, n := range ns {
		out[i] = &localitypb.Node{Id: n.ID, Locality: localityToPB(n.Locality)}
	}
	return out
}

func nodesFromPB(ns []*localitypb.Node) []locality.Node {
	out := make([]locality.Node, len(ns))
	for i, n := range ns {
		out[i] = locality.Node{ID: n.GetId(), Locality: localityFromPB(n.GetLocality())}
	}
	return out
}

func spansToPB(ss []locality.SpanRange) []*localitypb.SpanRange {
	out := make([]*localitypb.SpanRange, len(ss))
	for i, s := range ss {
		out[i] = &localitypb.SpanRange{Index: int64(s.Index), Replicas: s.Replicas, Leaseholder: s.Leaseholder}
	}
	return out
}

func planRequestFromPB(req *localitypb.PlanRequest) locality.PlanRequest {
	out := locality.PlanRequest{
		Filter:  localityFromPB(req.GetFilter()),
		Nodes:   nodesFromPB(req.GetNodes()),
		Buckets: req.GetBuckets(),
	}
	for _, s := range req.GetSpans() {
		out.Spans = append(out.Spans, locality.SpanRange{Index: int(s.GetIndex()), Replicas: s.GetReplicas(), Leaseholder: s.GetLeaseholder()})
	}
	return out
}
