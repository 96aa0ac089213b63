// Package locality is the interface of cairn's locality plugins: a
// Matcher, which decides which nodes match an EXECUTION LOCALITY filter and
// which locality bucket a node's data goes to, and a Policy, which plans
// the executing node and the replica to read for every span of a job.
//
// Both are pure, batched and deterministic: the coordinator calls them once
// at resolution and saves their answer in the job, so a resumed job never
// asks again. The rules cairn applies by default are in
// sdk/locality/rules; localitytest is the conformance kit.
package locality

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Errors are classified with errors.Is against these sentinels; they keep
// their class when they cross the plugin boundary (as gRPC codes).
var (
	// ErrInvalid classifies an error about the request itself: a malformed
	// bucket list, a filter no node matches, a span without a live replica,
	// a plan a strict policy refuses. Retrying the same request gives the
	// same error.
	ErrInvalid = errors.New("invalid locality request")
	// ErrUnimplemented means the plugin does not serve what was asked: the
	// kind, or a policy of that name.
	ErrUnimplemented = errors.New("not implemented by the locality plugin")
)

// Tier is one key=value level of a locality.
type Tier struct{ Key, Value string }

// Locality is a node's ordered tiers, most general first, e.g.
// region=us-east1,zone=us-east1-b.
type Locality struct{ Tiers []Tier }

// Parse reads "region=us-east1,zone=us-east1-b"; "" is the empty locality.
func Parse(s string) (Locality, error) {
	var l Locality
	if strings.TrimSpace(s) == "" {
		return l, nil
	}
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" || v == "" {
			return Locality{}, fmt.Errorf("parsing locality %q: tier %q is not key=value", s, part)
		}
		if seen[k] {
			return Locality{}, fmt.Errorf("parsing locality %q: tier %q appears twice", s, k)
		}
		seen[k] = true
		l.Tiers = append(l.Tiers, Tier{k, v})
	}
	return l, nil
}

func (l Locality) String() string {
	parts := make([]string, len(l.Tiers))
	for i, t := range l.Tiers {
		parts[i] = t.Key + "=" + t.Value
	}
	return strings.Join(parts, ",")
}

// Get returns the value of tier key.
func (l Locality) Get(key string) (string, bool) {
	for _, t := range l.Tiers {
		if t.Key == key {
			return t.Value, true
		}
	}
	return "", false
}

// Node is a cluster node as the plugins see it.
type Node struct {
	ID       int32
	Locality Locality
}

// DefaultBucket names the locality bucket that takes whatever no other
// bucket matches (a URI with COCKROACH_LOCALITY=default).
const DefaultBucket = "default"

// Matcher applies locality filters and bucket selection.
//
// Every node is judged on its own: the host may split a long node list
// into several calls, and the answers must be the same as for one call.
// A call whose ctx is done returns ctx's error.
type Matcher interface {
	// MatchNodes returns, in the order given, the ids of the nodes whose
	// locality satisfies filter. An empty filter matches every node.
	MatchNodes(ctx context.Context, filter Locality, nodes []Node) ([]int32, error)
	// Buckets chooses a bucket for each node, from buckets (each
	// DefaultBucket or a single "k=v" tier). With strict set it never
	// chooses DefaultBucket for a node that some other bucket should take,
	// and returns an error naming the node when a node matches no bucket
	// but the default.
	Buckets(ctx context.Context, nodes []Node, buckets []string, strict bool) (map[int32]string, error)
}

// SpanRange describes one span of a job and the range that holds it.
type SpanRange struct {
	// Index identifies the span in the job's plan.
	Index       int
	Replicas    []int32
	Leaseholder int32
}

// PlanRequest is everything a Policy needs to plan a job.
type PlanRequest struct {
	// Filter is the job's EXECUTION LOCALITY; empty means none.
	Filter Locality
	// Nodes are the live nodes, with their localities.
	Nodes []Node
	Spans []SpanRange
	// Buckets are the job's locality buckets (see Matcher.Buckets); empty
	// for a backup to a single URI.
	Buckets []string
}

// Assignment is a Policy's decision for one span.
type Assignment struct {
	Index int
	// Executor is the node that exports (or ingests) the span.
	Executor int32
	// ReadFrom is the replica the executor reads.
	ReadFrom int32
	// Bucket is where the executor writes the span's data ("" when the
	// job has no buckets).
	Bucket string
}

// Policy plans a job's spans. Plan returns one assignment per span, in
// the order of req.Spans, or an error that says why no valid plan exists
// (for example, no node matches the filter).
//
// Plan must be deterministic (the same request gives the same plan) and
// must plan each span on its own: the host may split req.Spans into
// several calls, each with the full Nodes, Filter and Buckets, and
// concatenate the answers. A call whose ctx is done returns ctx's error.
type Policy interface {
	Name() string
	Plan(ctx context.Context, req PlanRequest) ([]Assignment, error)
}
