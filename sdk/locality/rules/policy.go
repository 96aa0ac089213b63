package rules

import (
	"context"
	"slices"

	"github.com/cairnbackup/cairn/sdk/locality"
)

// Default is the "default" execution policy. For each span:
//
//   - Executor: among the nodes matching the filter (every node when there
//     is none), the leaseholder if it matches; else the lowest-id matching
//     node holding a live replica; else the matching node with the most
//     tiers in common with a live replica holder (ties: lowest id). So
//     with no filter the executor is the leaseholder. No matching node at
//     all is an error naming the filter.
//   - ReadFrom: the executor when it holds a live replica; else the live
//     replica with the most tiers in common with the executor (ties: the
//     leaseholder, then the lowest id).
//   - Bucket: the Matcher's (non-strict) bucket for the executor, "" when
//     the request has no buckets.
//
// A span with no live replica, or whose leaseholder is not one of its
// replicas, is an error naming the span.
type Default struct{}

var _ locality.Policy = Default{}

// Name implements locality.Policy.
func (Default) Name() string { return "default" }

// Plan implements locality.Policy.
func (Default) Plan(ctx context.Context, req locality.PlanRequest) ([]locality.Assignment, error) {
	return plan(ctx, req, false)
}

// Strict is the "strict" execution policy, for data domiciling: a span's
// data stays in its locality. It plans like Default, then refuses the
// plan when a span would be written to a bucket other than the one the
// span's leaseholder maps to (which may be the default bucket only when no
// locality bucket matches the leaseholder). The error names the span
// index, the executor and the buckets. With buckets, every span needs a
// live leaseholder; without buckets, Strict is Default.
type Strict struct{}

var _ locality.Policy = Strict{}

// Name implements locality.Policy.
func (Strict) Name() string { return "strict" }

// Plan implements locality.Policy.
func (Strict) Plan(ctx context.Context, req locality.PlanRequest) ([]locality.Assignment, error) {
	return plan(ctx, req, true)
}

// planner holds what every span of a request shares.
type planner struct {
	req      locality.PlanRequest
	nodes    map[int32]locality.Locality
	matching []int32 // ascending ids
	buckets  *BucketSet
}

func newPlanner(req locality.PlanRequest) (*planner, error) {
	if err := checkNodes("planning", req.Nodes); err != nil {
		return nil, err
	}
	p := &planner{req: req, nodes: make(map[int32]locality.Locality, len(req.Nodes))}
	for _, n := range req.Nodes {
		p.nodes[n.ID] = n.Locality
		if Matches(req.Filter, n.Locality) {
			p.matching = append(p.matching, n.ID)
		}
	}
	slices.Sort(p.matching)
	if len(p.matching) == 0 {
		return nil, invalidf("planning: no node matches filter %q", req.Filter.String())
	}
	if len(req.Buckets) > 0 {
		b, err := NewBucketSet(req.Buckets)
		if err != nil {
			return nil, err
		}
		p.buckets = b
	}
	return p, nil
}

func plan(ctx context.Context, req locality.PlanRequest, strict bool) ([]locality.Assignment, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := newPlanner(req)
	if err != nil {
		return nil, err
	}
	out := make([]locality.Assignment, 0, len(req.Spans))
	for i, s := range req.Spans {
		if i%1024 == 1023 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		a, err := p.span(s, strict)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

func (p *planner) span(s locality.SpanRange, strict bool) (locality.Assignment, error) {
	if s.Leaseholder != 0 && !slices.Contains(s.Replicas, s.Leaseholder) {
		return locality.Assignment{}, invalidf("planning span %d: leaseholder node %d is not among its replicas %v", s.Index, s.Leaseholder, s.Replicas)
	}
	var live []int32
	for _, r := range s.Replicas {
		if _, ok := p.nodes[r]; ok && !slices.Contains(live, r) {
			live = append(live, r)
		}
	}
	if len(live) == 0 {
		return locality.Assignment{}, invalidf("planning span %d: none of its replicas %v is on a live node", s.Index, s.Replicas)
	}
	slices.Sort(live)
	lh := s.Leaseholder
	if _, ok := p.nodes[lh]; !ok {
		lh = 0
	}

	a := locality.Assignment{Index: s.Index, Executor: p.executor(live, lh)}
	a.ReadFrom = p.readFrom(a.Executor, live, lh)
	if p.buckets == nil {
		return a, nil
	}
	a.Bucket, _ = p.buckets.For(p.nodes[a.Executor])
	if strict {
		if lh == 0 {
			return locality.Assignment{}, invalidf("planning span %d: strict policy needs a live leaseholder to find the bucket of its data (replicas %v, leaseholder %d)",
				s.Index, s.Replicas, s.Leaseholder)
		}
		if want, _ := p.buckets.For(p.nodes[lh]); want != a.Bucket {
			return locality.Assignment{}, invalidf("planning span %d: strict policy refuses to write it to bucket %q of executor node %d (locality %q): its leaseholder node %d (locality %q) maps to bucket %q; buckets: %s",
				s.Index, a.Bucket, a.Executor, p.nodes[a.Executor].String(), lh, p.nodes[lh].String(), want, p.buckets)
		}
	}
	return a, nil
}

// executor picks the node that exports the span; live is ascending.
func (p *planner) executor(live []int32, lh int32) int32 {
	if lh != 0 && Matches(p.req.Filter, p.nodes[lh]) {
		return lh
	}
	for _, r := range live {
		if Matches(p.req.Filter, p.nodes[r]) {
			return r
		}
	}
	best, bestScore := int32(0), -1
	for _, m := range p.matching {
		score := 0
		for _, r := range live {
			score = max(score, TiersInCommon(p.nodes[m], p.nodes[r]))
		}
		if score > bestScore {
			best, bestScore = m, score
		}
	}
	return best
}

// readFrom picks the replica the executor reads; live is ascending.
func (p *planner) readFrom(exec int32, live []int32, lh int32) int32 {
	if slices.Contains(live, exec) {
		return exec
	}
	best, bestScore := int32(0), -1
	for _, r := range live {
		score := TiersInCommon(p.nodes[exec], p.nodes[r])
		if score > bestScore || (score == bestScore && r == lh) {
			best, bestScore = r, score
		}
	}
	return best
}
