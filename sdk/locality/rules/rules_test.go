package rules

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/sdk/locality"
)

func loc(t testing.TB, s string) locality.Locality {
	t.Helper()
	l, err := locality.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestMatches(t *testing.T) {
	node := "region=us-east1,zone=us-east1-a,disk=ssd"
	for _, tc := range []struct {
		filter string
		want   bool
	}{
		{"", true},
		{"region=us-east1", true},
		{"disk=ssd,region=us-east1", true},
		{"region=us-east1,zone=us-east1-a,disk=ssd", true},
		{"region=us-west1", false},
		{"zone=us-east1", false},
		{"region=us-east1,rack=1", false},
		{"rack=1", false},
	} {
		if got := Matches(loc(t, tc.filter), loc(t, node)); got != tc.want {
			t.Errorf("Matches(%q, %q) = %v, want %v", tc.filter, node, got, tc.want)
		}
	}
	if Matches(loc(t, "region=a"), locality.Locality{}) {
		t.Error("the empty locality matches a filter")
	}
}

func TestTiersInCommon(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"region=a,zone=a1", "region=a,zone=a1", 2},
		{"region=a,zone=a1", "region=a,zone=a2", 1},
		{"region=a,zone=x", "region=b,zone=x", 0},
		{"region=a", "region=a,zone=a1", 1},
		{"zone=a1,region=a", "region=a,zone=a1", 0},
	} {
		if got := TiersInCommon(loc(t, tc.a), loc(t, tc.b)); got != tc.want {
			t.Errorf("TiersInCommon(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestBucketSet(t *testing.T) {
	for _, tc := range []struct {
		buckets []string
		err     string // substring; "" for valid
	}{
		{[]string{"default"}, ""},
		{[]string{"region=a", "default", "zone=a1"}, ""},
		{[]string{" region=a ", "default"}, ""},
		{nil, `no "default" bucket`},
		{[]string{"region=a"}, `no "default" bucket`},
		{[]string{"default", "default"}, `"default" appears twice`},
		{[]string{"default", "region=a", "region=a"}, "locality region=a appears twice"},
		{[]string{"default", "region=a", " region = a"}, `" region = a"`},
		{[]string{"default", "region=a,zone=a1"}, `"region=a,zone=a1" is neither`},
		{[]string{"default", "region"}, `"region" is neither`},
		{[]string{"default", ""}, `"" is neither`},
	} {
		_, err := NewBucketSet(tc.buckets)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("NewBucketSet(%q): %v", tc.buckets, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("NewBucketSet(%q) = %v, want an error containing %q", tc.buckets, err, tc.err)
		case err != nil && !errors.Is(err, locality.ErrInvalid):
			t.Errorf("NewBucketSet(%q): error %v does not match locality.ErrInvalid", tc.buckets, err)
		}
	}
}

func TestBucketFor(t *testing.T) {
	set, err := NewBucketSet([]string{"region=a", "default", "zone=a1", "rack=7"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		node    string
		want    string
		matched bool
	}{
		{"region=a,zone=a1", "zone=a1", true},
		{"region=a,zone=a2", "region=a", true},
		{"region=a,zone=a1,rack=7", "rack=7", true},
		{"region=b,zone=b1,rack=7", "rack=7", true},
		{"region=b,zone=a1", "zone=a1", true},
		{"region=b", "default", false},
		{"", "default", false},
	} {
		got, matched := set.For(loc(t, tc.node))
		if got != tc.want || matched != tc.matched {
			t.Errorf("For(%q) = %q, %v; want %q, %v", tc.node, got, matched, tc.want, tc.matched)
		}
	}
}

func TestBucketsStrictNamesNode(t *testing.T) {
	nodes := []locality.Node{{ID: 1, Locality: loc(t, "region=a")}, {ID: 2, Locality: loc(t, "region=b,zone=b1")}}
	_, err := Matcher{}.Buckets(context.Background(), nodes, []string{"default", "region=a"}, true)
	if err == nil || !strings.Contains(err.Error(), "node 2") || !strings.Contains(err.Error(), "region=b,zone=b1") {
		t.Fatalf("strict Buckets = %v, want an error naming node 2 and its locality", err)
	}
	if !errors.Is(err, locality.ErrInvalid) {
		t.Errorf("error %v does not match locality.ErrInvalid", err)
	}
}

func TestDuplicateNodes(t *testing.T) {
	ctx := context.Background()
	nodes := []locality.Node{{ID: 1}, {ID: 2}, {ID: 1}}
	if _, err := (Matcher{}).MatchNodes(ctx, locality.Locality{}, nodes); err == nil || !strings.Contains(err.Error(), "node 1 appears twice") {
		t.Errorf("MatchNodes with node 1 twice: %v", err)
	}
	if _, err := (Default{}).Plan(ctx, locality.PlanRequest{Nodes: nodes}); err == nil || !strings.Contains(err.Error(), "node 1 appears twice") {
		t.Errorf("Plan with node 1 twice: %v", err)
	}
}

// TestLiveness covers replicas and leaseholders on nodes missing from the
// request (dead nodes), which the conformance kit leaves alone.
func TestLiveness(t *testing.T) {
	nodes := []locality.Node{
		{ID: 1, Locality: loc(t, "region=a,zone=a1")},
		{ID: 2, Locality: loc(t, "region=a,zone=a2")},
		{ID: 3, Locality: loc(t, "region=b,zone=b1")},
	}
	buckets := []string{"default", "region=a"}
	for _, tc := range []struct {
		name    string
		policy  locality.Policy
		span    locality.SpanRange
		filter  string
		buckets []string
		exec    int32
		read    int32
		bucket  string
		err     string
	}{
		{name: "no leaseholder: lowest live replica", policy: Default{}, span: locality.SpanRange{Replicas: []int32{3, 2}}, exec: 2, read: 2},
		{name: "dead leaseholder: lowest live replica", policy: Default{}, span: locality.SpanRange{Replicas: []int32{9, 3}, Leaseholder: 9}, exec: 3, read: 3},
		{name: "dead replicas are not read", policy: Default{}, filter: "zone=a1", span: locality.SpanRange{Replicas: []int32{8, 3}, Leaseholder: 8}, exec: 1, read: 3},
		{name: "repeated replica", policy: Default{}, span: locality.SpanRange{Replicas: []int32{2, 2}, Leaseholder: 2}, exec: 2, read: 2},
		{name: "strict without buckets is default", policy: Strict{}, filter: "region=b", span: locality.SpanRange{Replicas: []int32{1}, Leaseholder: 1}, exec: 3, read: 1},
		{name: "strict needs a live leaseholder", policy: Strict{}, buckets: buckets, span: locality.SpanRange{Index: 77, Replicas: []int32{1, 9}, Leaseholder: 9}, err: "span 77: strict policy needs a live leaseholder"},
		{name: "strict keeps data home", policy: Strict{}, buckets: buckets, span: locality.SpanRange{Replicas: []int32{1, 3}, Leaseholder: 1}, exec: 1, read: 1, bucket: "region=a"},
		{name: "strict refuses", policy: Strict{}, buckets: buckets, filter: "region=b", span: locality.SpanRange{Index: 78, Replicas: []int32{1, 3}, Leaseholder: 1},
			err: `span 78: strict policy refuses to write it to bucket "default" of executor node 3`},
		{name: "default writes anywhere", policy: Default{}, buckets: buckets, filter: "region=b", span: locality.SpanRange{Replicas: []int32{1, 3}, Leaseholder: 1}, exec: 3, read: 3, bucket: "default"},
	} {
		req := locality.PlanRequest{Filter: loc(t, tc.filter), Nodes: nodes, Spans: []locality.SpanRange{tc.span}, Buckets: tc.buckets}
		as, err := tc.policy.Plan(context.Background(), req)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, locality.ErrInvalid) {
				t.Errorf("%s: error %v, want an invalid-request error containing %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if a := as[0]; a.Executor != tc.exec || a.ReadFrom != tc.read || a.Bucket != tc.bucket {
			t.Errorf("%s: got %+v, want executor %d reading %d writing %q", tc.name, a, tc.exec, tc.read, tc.bucket)
		}
	}
}

// TestRandomized checks the invariants of the default policy on random
// clusters: the executor matches the filter, the replica read is a live
// replica (the executor itself when it holds one), the bucket is the
// executor's, and the plan depends neither on repetition nor on node order.
func TestRandomized(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	regions, zones, racks := []string{"r1", "r2", "r3"}, []string{"z1", "z2"}, []string{"k1", "k2", "k3"}
	for iter := range 300 {
		var nodes []locality.Node
		for i := range 2 + rng.IntN(12) {
			l := locality.Locality{Tiers: []locality.Tier{{Key: "region", Value: regions[rng.IntN(3)]}}}
			if rng.IntN(4) > 0 {
				l.Tiers = append(l.Tiers, locality.Tier{Key: "zone", Value: l.Tiers[0].Value + zones[rng.IntN(2)]})
			}
			if rng.IntN(3) == 0 {
				l.Tiers = append(l.Tiers, locality.Tier{Key: "rack", Value: racks[rng.IntN(3)]})
			}
			nodes = append(nodes, locality.Node{ID: int32(10 + 3*i), Locality: l})
		}
		// A filter drawn from a node's tiers, so that something matches.
		var filter locality.Locality
		if rng.IntN(3) > 0 {
			from := nodes[rng.IntN(len(nodes))].Locality.Tiers
			filter.Tiers = append(filter.Tiers, from[rng.IntN(len(from))])
		}
		buckets := []string{"default"}
		for _, b := range []string{"region=r1", "zoner2=z1", "zone=r2z1", "rack=k2"} {
			if rng.IntN(2) == 0 {
				buckets = append(buckets, b)
			}
		}
		rng.Shuffle(len(buckets), func(i, j int) { buckets[i], buckets[j] = buckets[j], buckets[i] })
		req := locality.PlanRequest{Filter: filter, Nodes: nodes, Buckets: buckets}
		for s := range 20 {
			var replicas []int32
			for range 1 + rng.IntN(min(4, len(nodes))) {
				replicas = append(replicas, nodes[rng.IntN(len(nodes))].ID)
			}
			lh := replicas[rng.IntN(len(replicas))]
			if rng.IntN(10) == 0 {
				replicas = append(replicas, 999) // on a dead node
			}
			req.Spans = append(req.Spans, locality.SpanRange{Index: s, Replicas: replicas, Leaseholder: lh})
		}

		got, err := Default{}.Plan(ctx, req)
		if err != nil {
			t.Fatalf("iteration %d: %v", iter, err)
		}
		set, err := NewBucketSet(buckets)
		if err != nil {
			t.Fatal(err)
		}
		byID := map[int32]locality.Locality{}
		for _, n := range nodes {
			byID[n.ID] = n.Locality
		}
		matchingHolder := func(s locality.SpanRange) bool {
			for _, r := range s.Replicas {
				if l, ok := byID[r]; ok && Matches(filter, l) {
					return true
				}
			}
			return false
		}
		for i, a := range got {
			s := req.Spans[i]
			exec, ok := byID[a.Executor]
			if !ok || !Matches(filter, exec) {
				t.Fatalf("iteration %d span %d: executor %d does not match %q", iter, i, a.Executor, filter)
			}
			if _, live := byID[a.ReadFrom]; !live || !slices.Contains(s.Replicas, a.ReadFrom) {
				t.Fatalf("iteration %d span %d: reads %d, not a live replica of %v", iter, i, a.ReadFrom, s.Replicas)
			}
			if slices.Contains(s.Replicas, a.Executor) != (a.ReadFrom == a.Executor) {
				t.Fatalf("iteration %d span %d: executor %d reads %d from replicas %v", iter, i, a.Executor, a.ReadFrom, s.Replicas)
			}
			if matchingHolder(s) != slices.Contains(s.Replicas, a.Executor) {
				t.Fatalf("iteration %d span %d: a matching node holds a replica of %v but executor %d does not", iter, i, s.Replicas, a.Executor)
			}
			if len(filter.Tiers) == 0 && a.Executor != s.Leaseholder {
				t.Fatalf("iteration %d span %d: no filter, executor %d is not leaseholder %d", iter, i, a.Executor, s.Leaseholder)
			}
			if want, _ := set.For(exec); a.Bucket != want {
				t.Fatalf("iteration %d span %d: bucket %q, want the executor's %q", iter, i, a.Bucket, want)
			}
		}
		again, _ := Default{}.Plan(ctx, req)
		shuffled := req
		shuffled.Nodes = slices.Clone(nodes)
		rng.Shuffle(len(shuffled.Nodes), func(i, j int) { shuffled.Nodes[i], shuffled.Nodes[j] = shuffled.Nodes[j], shuffled.Nodes[i] })
		reordered, _ := Default{}.Plan(ctx, shuffled)
		if !slices.Equal(got, again) || !slices.Equal(got, reordered) {
			t.Fatalf("iteration %d: the plan changes on repetition or with the order of nodes", iter)
		}

		// Strict either refuses, or agrees with default and keeps every
		// span in its leaseholder's bucket.
		strict, err := Strict{}.Plan(ctx, req)
		if err != nil {
			if !errors.Is(err, locality.ErrInvalid) || !strings.Contains(err.Error(), "strict policy refuses") {
				t.Fatalf("iteration %d: strict: %v", iter, err)
			}
			continue
		}
		if !slices.Equal(strict, got) {
			t.Fatalf("iteration %d: strict plan differs from default", iter)
		}
		for i, a := range strict {
			if want, _ := set.For(byID[req.Spans[i].Leaseholder]); a.Bucket != want {
				t.Fatalf("iteration %d span %d: strict wrote to %q, the leaseholder's bucket is %q", iter, i, a.Bucket, want)
			}
		}
	}
}
