// Package localitytest is the conformance kit of the locality plugin
// kinds. An implementation that claims to follow cairn's default rules
// (DESIGN.md, "Locality"; sdk/locality/rules) runs Run in its own tests,
// directly and, for a plugin, over the wire:
//
//	func TestConformance(t *testing.T) {
//		localitytest.Run(t, localitytest.Config{
//			Matcher:  mymatcher.New(),
//			Policies: map[string]locality.Policy{"default": mypolicy.Default{}},
//		})
//	}
//
// Every check runs on one fixed topology of 9 nodes in 3 regions
// (see Topology). The kit checks only what the rules pin down: where they
// leave a choice (which of several nodes a strict refusal names), any
// answer within the rules passes.
package localitytest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/sdk/locality"
	"github.com/cairnbackup/cairn/sdk/locality/rules"
)

// Config says what to check. Policies are checked by name: "default"
// against the default policy's rules, "strict" against the strict
// policy's; policies of other names are not checked. At least one of
// Matcher and Policies must be set.
type Config struct {
	Matcher  locality.Matcher
	Policies map[string]locality.Policy
}

// Topology is the kit's cluster: nodes 1-3 in us-east1, 4-6 in us-west1,
// 7-9 in europe-west1; in each region two nodes share a zone; nodes 2, 5
// and 7 have disk=hdd, the others disk=ssd.
func Topology() []locality.Node {
	return []locality.Node{
		node(1, "region=us-east1,zone=us-east1-a,disk=ssd"),
		node(2, "region=us-east1,zone=us-east1-a,disk=hdd"),
		node(3, "region=us-east1,zone=us-east1-b,disk=ssd"),
		node(4, "region=us-west1,zone=us-west1-a,disk=ssd"),
		node(5, "region=us-west1,zone=us-west1-b,disk=hdd"),
		node(6, "region=us-west1,zone=us-west1-b,disk=ssd"),
		node(7, "region=europe-west1,zone=europe-west1-a,disk=hdd"),
		node(8, "region=europe-west1,zone=europe-west1-b,disk=ssd"),
		node(9, "region=europe-west1,zone=europe-west1-b,disk=ssd"),
	}
}

func node(id int32, l string) locality.Node { return locality.Node{ID: id, Locality: loc(l)} }

func loc(s string) locality.Locality {
	l, err := locality.Parse(s)
	if err != nil {
		panic(err)
	}
	return l
}

// Run checks cfg's implementations in named subtests.
func Run(t *testing.T, cfg Config) {
	if cfg.Matcher == nil && len(cfg.Policies) == 0 {
		t.Fatal("localitytest: Config has neither a Matcher nor Policies")
	}
	if m := cfg.Matcher; m != nil {
		t.Run("Matcher", func(t *testing.T) {
			t.Run("MatchNodes", func(t *testing.T) { matchNodes(t, m) })
			t.Run("MatchNodesKeepsOrder", func(t *testing.T) { matchNodesKeepsOrder(t, m) })
			t.Run("Buckets", func(t *testing.T) { buckets(t, m) })
			t.Run("BucketsStrict", func(t *testing.T) { bucketsStrict(t, m) })
			t.Run("InvalidBuckets", func(t *testing.T) { invalidBuckets(t, m) })
			t.Run("ManyNodes", func(t *testing.T) { manyNodes(t, m) })
			t.Run("Cancelled", func(t *testing.T) { matcherCancelled(t, m) })
		})
	}
	names := make([]string, 0, len(cfg.Policies))
	for name := range cfg.Policies {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		p := cfg.Policies[name]
		if p.Name() != name {
			t.Errorf("policy configured as %q calls itself %q", name, p.Name())
		}
		var ref locality.Policy
		switch name {
		case "default":
			ref = rules.Default{}
		case "strict":
			ref = rules.Strict{}
		default:
			t.Logf("localitytest: policy %q follows no rules the kit knows; not checked", name)
			continue
		}
		t.Run("Policy/"+name, func(t *testing.T) {
			t.Run("Executor", func(t *testing.T) { executor(t, p) })
			t.Run("NoMatchingNode", func(t *testing.T) { noMatchingNode(t, p) })
			t.Run("MalformedSpan", func(t *testing.T) { malformedSpan(t, p) })
			t.Run("Buckets", func(t *testing.T) { policyBuckets(t, p, name == "strict") })
			t.Run("Determinism", func(t *testing.T) { determinism(t, p) })
			t.Run("ManySpans", func(t *testing.T) { manySpans(t, p, ref, name == "strict") })
			t.Run("Cancelled", func(t *testing.T) { policyCancelled(t, p) })
		})
	}
}

func ids(ns []locality.Node) []int32 {
	out := make([]int32, len(ns))
	for i, n := range ns {
		out[i] = n.ID
	}
	return out
}

func matchNodes(t *testing.T, m locality.Matcher) {
	ctx := context.Background()
	for _, tc := range []struct {
		filter string
		want   []int32
	}{
		{"", []int32{1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{"region=us-east1", []int32{1, 2, 3}},
		{"zone=us-west1-b", []int32{5, 6}},
		{"disk=hdd", []int32{2, 5, 7}},
		// Order does not matter; every tier must match.
		{"zone=europe-west1-b,region=europe-west1", []int32{8, 9}},
		{"disk=hdd,region=us-west1", []int32{5}},
		{"region=us-east1,zone=us-west1-a", []int32{}},
		// A tier's key and value must both match.
		{"zone=us-east1", []int32{}},
		{"datacenter=us-east1", []int32{}},
		{"region=us-east1,zone=us-east1-a,disk=hdd", []int32{2}},
	} {
		got, err := m.MatchNodes(ctx, loc(tc.filter), Topology())
		if err != nil {
			t.Errorf("MatchNodes(%q): %v", tc.filter, err)
			continue
		}
		if !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
			t.Errorf("MatchNodes(%q) = %v, want %v", tc.filter, got, tc.want)
		}
	}
}

func matchNodesKeepsOrder(t *testing.T, m locality.Matcher) {
	nodes := Topology()
	slices.Reverse(nodes)
	got, err := m.MatchNodes(context.Background(), loc("region=europe-west1"), nodes)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int32{9, 8, 7}; !slices.Equal(got, want) {
		t.Errorf("MatchNodes on reversed nodes = %v, want %v (the order given)", got, want)
	}
	if got, err := m.MatchNodes(context.Background(), loc("region=us-east1"), nil); err != nil || len(got) != 0 {
		t.Errorf("MatchNodes with no nodes = %v, %v; want nothing and no error", got, err)
	}
}

// Bucket lists shared by the matcher and policy checks.
var (
	regionBuckets = []string{"region=us-east1", "default", "region=us-west1", "zone=us-west1-b"}
	mixedBuckets  = []string{"default", "zone=us-west1-b", "disk=hdd", "region=europe-west1"}
	everyRegion   = []string{"default", "region=us-east1", "region=us-west1", "region=europe-west1"}
)

func buckets(t *testing.T, m locality.Matcher) {
	for _, tc := range []struct {
		buckets []string
		want    map[int32]string
	}{
		{regionBuckets, map[int32]string{
			1: "region=us-east1", 2: "region=us-east1", 3: "region=us-east1",
			4: "region=us-west1", 5: "zone=us-west1-b", 6: "zone=us-west1-b",
			7: "default", 8: "default", 9: "default",
		}},
		// The most specific tier that has a bucket wins: disk is the last tier.
		{mixedBuckets, map[int32]string{
			1: "default", 2: "disk=hdd", 3: "default",
			4: "default", 5: "disk=hdd", 6: "zone=us-west1-b",
			7: "disk=hdd", 8: "region=europe-west1", 9: "region=europe-west1",
		}},
		{[]string{"default"}, map[int32]string{1: "default", 2: "default", 3: "default", 4: "default", 5: "default", 6: "default", 7: "default", 8: "default", 9: "default"}},
	} {
		got, err := m.Buckets(context.Background(), Topology(), tc.buckets, false)
		if err != nil {
			t.Errorf("Buckets(%q): %v", tc.buckets, err)
			continue
		}
		if !mapsEqual(got, tc.want) {
			t.Errorf("Buckets(%q) = %v, want %v", tc.buckets, got, tc.want)
		}
	}
}

func mapsEqual(a, b map[int32]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func bucketsStrict(t *testing.T, m locality.Matcher) {
	ctx := context.Background()
	got, err := m.Buckets(ctx, Topology(), everyRegion, true)
	if err != nil {
		t.Fatalf("strict Buckets(%q), which cover every node: %v", everyRegion, err)
	}
	for _, n := range Topology() {
		if got[n.ID] == locality.DefaultBucket {
			t.Errorf("strict Buckets gave node %d the default bucket", n.ID)
		}
	}
	// Nodes 7-9 match no locality bucket of regionBuckets.
	_, err = m.Buckets(ctx, Topology(), regionBuckets, true)
	if err == nil {
		t.Fatalf("strict Buckets(%q) falls back to default for nodes 7-9, want an error", regionBuckets)
	}
	named := false
	for _, n := range Topology()[6:] {
		named = named || (strings.Contains(err.Error(), fmt.Sprint(n.ID)) && strings.Contains(err.Error(), n.Locality.String()))
	}
	if !named {
		t.Errorf("strict Buckets error %q names none of nodes 7-9 with its locality", err)
	}
	// Strict is about nodes, not buckets: nodes 1-6 alone are fine.
	if _, err := m.Buckets(ctx, Topology()[:6], regionBuckets, true); err != nil {
		t.Errorf("strict Buckets for nodes 1-6: %v", err)
	}
}

func invalidBuckets(t *testing.T, m locality.Matcher) {
	for _, tc := range []struct {
		buckets  []string
		offender string
	}{
		{[]string{"region=us-east1", "region=us-west1"}, "default"},
		{[]string{"default", "region=us-east1", "default"}, "default"},
		{[]string{"default", "region=us-east1", "region=us-east1"}, "region=us-east1"},
		{[]string{"default", "region=us-east1,zone=us-east1-a"}, "region=us-east1,zone=us-east1-a"},
		{[]string{"default", "us-east1"}, "us-east1"},
		{nil, "default"},
	} {
		_, err := m.Buckets(context.Background(), Topology(), tc.buckets, false)
		if err == nil {
			t.Errorf("Buckets(%q) succeeded, want an error naming %q", tc.buckets, tc.offender)
			continue
		}
		if !strings.Contains(err.Error(), tc.offender) {
			t.Errorf("Buckets(%q) error %q does not name %q", tc.buckets, err, tc.offender)
		}
	}
}

// bigCluster is n nodes cycling through the topology's localities, with
// ids 1000+i in a shuffled but fixed order.
func bigCluster(n int) []locality.Node {
	top := Topology()
	out := make([]locality.Node, n)
	for i := range out {
		out[i] = locality.Node{ID: int32(1000 + (i*7919)%n), Locality: top[i%len(top)].Locality}
	}
	return out
}

func manyNodes(t *testing.T, m locality.Matcher) {
	const n = 10000
	nodes := bigCluster(n)
	filter := loc("zone=us-west1-b")
	got, err := m.MatchNodes(context.Background(), filter, nodes)
	if err != nil {
		t.Fatal(err)
	}
	var want []int32
	for _, nd := range nodes {
		if rules.Matches(filter, nd.Locality) {
			want = append(want, nd.ID)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("MatchNodes on %d nodes: got %d ids, want %d (first got %v)", n, len(got), len(want), got[:min(5, len(got))])
	}
	bs, err := m.Buckets(context.Background(), nodes, mixedBuckets, false)
	if err != nil {
		t.Fatal(err)
	}
	set, _ := rules.NewBucketSet(mixedBuckets)
	if len(bs) != n {
		t.Errorf("Buckets on %d nodes answered %d", n, len(bs))
	}
	for _, nd := range nodes {
		if want, _ := set.For(nd.Locality); bs[nd.ID] != want {
			t.Fatalf("Buckets on %d nodes: node %d (%s) got %q, want %q", n, nd.ID, nd.Locality, bs[nd.ID], want)
		}
	}
}

func matcherCancelled(t *testing.T, m locality.Matcher) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.MatchNodes(ctx, loc("region=us-east1"), Topology()); err == nil {
		t.Error("MatchNodes with a cancelled ctx succeeded")
	}
	if _, err := m.Buckets(ctx, Topology(), regionBuckets, false); err == nil {
		t.Error("Buckets with a cancelled ctx succeeded")
	}
}

// span is a SpanRange with replicas and leaseholder.
func span(index int, lh int32, replicas ...int32) locality.SpanRange {
	return locality.SpanRange{Index: index, Leaseholder: lh, Replicas: replicas}
}

func plan1(t *testing.T, p locality.Policy, req locality.PlanRequest) (locality.Assignment, error) {
	t.Helper()
	as, err := p.Plan(context.Background(), req)
	if err != nil {
		return locality.Assignment{}, err
	}
	if len(as) != 1 {
		t.Fatalf("Plan of one span returned %d assignments", len(as))
	}
	return as[0], nil
}

func executor(t *testing.T, p locality.Policy) {
	for _, tc := range []struct {
		name       string
		filter     string
		span       locality.SpanRange
		exec, read int32
	}{
		{"no filter: leaseholder", "", span(0, 4, 1, 4, 7), 4, 4},
		{"matching leaseholder", "region=us-east1", span(1, 2, 1, 2, 4), 2, 2},
		{"lowest matching replica holder", "region=us-east1", span(2, 4, 4, 2, 1), 1, 1},
		{"the only matching replica holder", "region=us-west1", span(3, 1, 1, 4, 7), 4, 4},
		{"holder among several matches", "zone=europe-west1-b,region=europe-west1", span(4, 1, 1, 9), 9, 9},
		// disk=hdd matches 2, 5, 7, none a replica holder: 5 shares
		// region and zone with 6, the others only a region.
		{"most tiers in common", "disk=hdd", span(5, 3, 3, 6, 8), 5, 6},
		{"most tiers in common, tie: lowest id", "disk=hdd", span(6, 8, 3, 4, 8), 2, 3},
		{"closest replica, leaseholder not closest", "zone=us-east1-b", span(7, 4, 1, 2, 4), 3, 1},
		{"closest replica, tie: leaseholder", "zone=us-east1-b", span(8, 2, 1, 2, 4), 3, 2},
		{"nothing in common: lowest id, read leaseholder", "region=europe-west1", span(9, 3, 1, 3, 4), 7, 3},
		{"filter in another order", "disk=hdd,region=us-west1", span(10, 9, 4, 6, 9), 5, 6},
	} {
		req := locality.PlanRequest{Filter: loc(tc.filter), Nodes: Topology(), Spans: []locality.SpanRange{tc.span}}
		a, err := plan1(t, p, req)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if a.Index != tc.span.Index || a.Executor != tc.exec || a.ReadFrom != tc.read || a.Bucket != "" {
			t.Errorf("%s: filter %q, span %+v: got %+v, want executor %d reading %d, no bucket",
				tc.name, tc.filter, tc.span, a, tc.exec, tc.read)
		}
	}
}

func noMatchingNode(t *testing.T, p locality.Policy) {
	for _, filter := range []string{"region=asia-east1", "region=us-east1,zone=us-west1-a"} {
		req := locality.PlanRequest{Filter: loc(filter), Nodes: Topology(), Spans: []locality.SpanRange{span(0, 1, 1, 4, 7)}}
		_, err := p.Plan(context.Background(), req)
		if err == nil {
			t.Errorf("Plan with filter %q, which no node matches, succeeded", filter)
			continue
		}
		if !strings.Contains(err.Error(), loc(filter).String()) {
			t.Errorf("Plan with filter %q: error %q does not name the filter", filter, err)
		}
	}
}

func malformedSpan(t *testing.T, p locality.Policy) {
	for _, tc := range []struct {
		name string
		span locality.SpanRange
	}{
		{"leaseholder not a replica", span(4242, 5, 1, 4, 7)},
		{"no replica on a live node", span(4242, 0, 11, 12)},
		{"no replica", span(4242, 0)},
	} {
		req := locality.PlanRequest{Nodes: Topology(), Spans: []locality.SpanRange{span(1, 1, 1, 2), tc.span}}
		_, err := p.Plan(context.Background(), req)
		if err == nil {
			t.Errorf("%s: Plan succeeded, want an error", tc.name)
		} else if !strings.Contains(err.Error(), "4242") {
			t.Errorf("%s: error %q does not name span 4242", tc.name, err)
		}
	}
}

func policyBuckets(t *testing.T, p locality.Policy, strict bool) {
	for _, tc := range []struct {
		name   string
		filter string
		span   locality.SpanRange
		exec   int32
		bucket string
		// refused is set when the plan writes the span outside the bucket
		// of its leaseholder, which the strict policy refuses.
		refused bool
	}{
		{"leaseholder's region", "", span(0, 1, 1, 4, 7), 1, "region=us-east1", false},
		{"most specific bucket", "", span(1, 5, 1, 5, 7), 5, "zone=us-west1-b", false},
		{"no locality bucket: default", "", span(2, 7, 1, 4, 7), 7, "default", false},
		{"executor outside the data's region", "region=us-west1", span(3, 1, 1, 4), 4, "region=us-west1", true},
		{"data with no bucket written to a region", "region=us-west1", span(4, 7, 1, 7), 4, "region=us-west1", true},
		{"same region, other bucket", "disk=hdd", span(5, 4, 4, 5, 6), 5, "zone=us-west1-b", true},
		{"same bucket", "disk=hdd", span(6, 6, 4, 5, 6), 5, "zone=us-west1-b", false},
	} {
		req := locality.PlanRequest{Filter: loc(tc.filter), Nodes: Topology(), Spans: []locality.SpanRange{tc.span}, Buckets: regionBuckets}
		a, err := plan1(t, p, req)
		if strict && tc.refused {
			if err == nil {
				t.Errorf("%s: strict Plan succeeded with %+v; want a refusal", tc.name, a)
				continue
			}
			for _, want := range append([]string{fmt.Sprint(tc.span.Index), fmt.Sprint(tc.exec)}, regionBuckets...) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("%s: strict refusal %q does not name %q (the span index, executor and buckets)", tc.name, err, want)
				}
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if a.Executor != tc.exec || a.Bucket != tc.bucket {
			t.Errorf("%s: got %+v, want executor %d writing to %q", tc.name, a, tc.exec, tc.bucket)
		}
	}
	// A malformed bucket list is refused, naming the offender.
	req := locality.PlanRequest{Nodes: Topology(), Spans: []locality.SpanRange{span(0, 1, 1)}, Buckets: []string{"default", "moon"}}
	if _, err := p.Plan(context.Background(), req); err == nil || !strings.Contains(err.Error(), "moon") {
		t.Errorf("Plan with bucket %q: error %v, want one naming it", "moon", err)
	}
}

// manyRequest is a request of n spans over Topology, with
// spans of three replicas chosen by a fixed generator.
func manyRequest(n int, filter string, buckets []string) locality.PlanRequest {
	req := locality.PlanRequest{Filter: loc(filter), Nodes: Topology(), Buckets: buckets}
	state := uint64(0x9e3779b97f4a7c15)
	next := func(k int) int {
		state ^= state << 13
		state ^= state >> 7
		state ^= state << 17
		return int(state % uint64(k))
	}
	for i := range n {
		var replicas []int32
		for len(replicas) < 3 {
			if r := int32(1 + next(9)); !slices.Contains(replicas, r) {
				replicas = append(replicas, r)
			}
		}
		req.Spans = append(req.Spans, span(7*i+5, replicas[next(3)], replicas...))
	}
	return req
}

func determinism(t *testing.T, p locality.Policy) {
	ctx := context.Background()
	for _, filter := range []string{"", "disk=hdd"} {
		req := manyRequest(200, filter, nil)
		first, err := p.Plan(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		again, err := p.Plan(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(first, again) {
			t.Errorf("filter %q: the same request planned twice differs", filter)
		}
		// Ties are broken by node id, so the order of nodes is irrelevant.
		req.Nodes = Topology()
		slices.Reverse(req.Nodes)
		reversed, err := p.Plan(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(first, reversed) {
			t.Errorf("filter %q: planning with the nodes in reverse order changes the plan", filter)
		}
	}
}

func manySpans(t *testing.T, p, ref locality.Policy, strict bool) {
	ctx := context.Background()
	filters := []string{"", "region=us-west1", "disk=hdd"}
	if strict {
		// With a filter some span lands outside its bucket and the whole
		// plan is refused; without one every span is written by its
		// leaseholder.
		filters = filters[:1]
	}
	for _, filter := range filters {
		req := manyRequest(3000, filter, regionBuckets)
		got, err := p.Plan(ctx, req)
		if err != nil {
			t.Fatalf("filter %q: %v", filter, err)
		}
		want, err := ref.Plan(ctx, req)
		if err != nil {
			t.Fatalf("filter %q: reference: %v", filter, err)
		}
		checkInvariants(t, req, got)
		for i := range want {
			if i < len(got) && got[i] != want[i] {
				t.Fatalf("filter %q: span %d: got %+v, the rules give %+v", filter, req.Spans[i].Index, got[i], want[i])
			}
		}
	}
	if strict {
		req := manyRequest(3000, "region=us-west1", regionBuckets)
		if _, err := p.Plan(ctx, req); err == nil {
			t.Error("strict Plan of 3000 spans, some from us-east1 executed in us-west1, succeeded")
		}
	}
}

// checkInvariants checks what holds for any plan under the default rules.
func checkInvariants(t *testing.T, req locality.PlanRequest, got []locality.Assignment) {
	t.Helper()
	if len(got) != len(req.Spans) {
		t.Fatalf("Plan of %d spans returned %d assignments", len(req.Spans), len(got))
	}
	byID := map[int32]locality.Locality{}
	for _, n := range req.Nodes {
		byID[n.ID] = n.Locality
	}
	for i, a := range got {
		s := req.Spans[i]
		l, ok := byID[a.Executor]
		switch {
		case a.Index != s.Index:
			t.Fatalf("assignment %d is for span %d, want %d", i, a.Index, s.Index)
		case !ok:
			t.Fatalf("span %d: executor %d is not a node", s.Index, a.Executor)
		case !rules.Matches(req.Filter, l):
			t.Fatalf("span %d: executor %d (%s) does not match filter %q", s.Index, a.Executor, l, req.Filter)
		case !slices.Contains(s.Replicas, a.ReadFrom):
			t.Fatalf("span %d: reads %d, not a replica of %v", s.Index, a.ReadFrom, s.Replicas)
		case slices.Contains(s.Replicas, a.Executor) && a.ReadFrom != a.Executor:
			t.Fatalf("span %d: executor %d holds a replica but reads %d", s.Index, a.Executor, a.ReadFrom)
		case len(req.Buckets) == 0 && a.Bucket != "":
			t.Fatalf("span %d: bucket %q without buckets", s.Index, a.Bucket)
		case len(req.Buckets) > 0 && !slices.Contains(req.Buckets, a.Bucket):
			t.Fatalf("span %d: bucket %q is not one of %q", s.Index, a.Bucket, req.Buckets)
		}
	}
}

func policyCancelled(t *testing.T, p locality.Policy) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Plan(ctx, manyRequest(10, "", nil)); err == nil {
		t.Error("Plan with a cancelled ctx succeeded")
	}
}
