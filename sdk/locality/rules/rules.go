// Package rules implements cairn's default locality rules (DESIGN.md,
// "Locality"): the Matcher, and the "default" and "strict" execution
// policies. Everything here is pure and deterministic: no I/O, no clocks,
// no randomness, and no dependence on the order of nodes in a request
// (ties are broken by node id).
//
// Definitions used throughout:
//
//   - A node matches a filter when, for every tier k=v of the filter, the
//     node has a tier with the same key and value. Order does not matter
//     and extra tiers are allowed; the empty filter matches every node.
//   - Two localities have n tiers in common when their first n tiers are
//     equal (the length of their common prefix). Tiers are hierarchical, so
//     sharing a zone name under a different region is not closeness.
//   - A live replica is a replica on a node of the request's Nodes; the
//     others cannot execute nor be read. A leaseholder that is not live is
//     treated as absent.
//
// Errors about the request match locality.ErrInvalid.
package rules

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/cairnbackup/cairn/sdk/locality"
)

// Matches reports whether a node with locality l satisfies filter.
func Matches(filter, l locality.Locality) bool {
	for _, f := range filter.Tiers {
		if !slices.Contains(l.Tiers, f) {
			return false
		}
	}
	return true
}

// TiersInCommon returns the length of the common prefix of a and b.
func TiersInCommon(a, b locality.Locality) int {
	n := 0
	for n < len(a.Tiers) && n < len(b.Tiers) && a.Tiers[n] == b.Tiers[n] {
		n++
	}
	return n
}

// invalidError is an error about the request; it matches
// locality.ErrInvalid without repeating the sentinel's text.
type invalidError struct{ msg string }

func (e *invalidError) Error() string        { return e.msg }
func (e *invalidError) Is(target error) bool { return target == locality.ErrInvalid }

func invalidf(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

// BucketSet is a validated list of locality buckets: exactly one
// locality.DefaultBucket, and otherwise distinct single k=v tiers.
type BucketSet struct {
	// names are the buckets as given; tiers[i] is names[i] parsed, the
	// zero Tier for the default.
	names  []string
	tiers  []locality.Tier
	defIdx int
}

// NewBucketSet validates buckets. Its errors name the offending bucket.
func NewBucketSet(buckets []string) (*BucketSet, error) {
	b := &BucketSet{names: buckets, tiers: make([]locality.Tier, len(buckets))}
	seen := map[locality.Tier]string{}
	defaults := 0
	for i, name := range buckets {
		if strings.TrimSpace(name) == locality.DefaultBucket {
			defaults++
			if defaults > 1 {
				return nil, invalidf("validating buckets %q: %q appears twice; exactly one default bucket is allowed", buckets, name)
			}
			b.defIdx = i
			continue
		}
		l, err := locality.Parse(name)
		if err != nil || len(l.Tiers) != 1 {
			return nil, invalidf("validating buckets %q: bucket %q is neither %q nor a single k=v tier", buckets, name, locality.DefaultBucket)
		}
		t := l.Tiers[0]
		if prev, ok := seen[t]; ok {
			return nil, invalidf("validating buckets %q: locality %s appears twice (%q and %q)", buckets, t.Key+"="+t.Value, prev, name)
		}
		seen[t] = name
		b.tiers[i] = t
	}
	if defaults == 0 {
		return nil, invalidf("validating buckets %q: no %q bucket; exactly one is required", buckets, locality.DefaultBucket)
	}
	return b, nil
}

// For returns the bucket for a node of locality l: walking l's tiers from
// the most specific (last) to the most general, the first tier equal to a
// bucket's tier wins; else the default bucket, with matched false.
func (b *BucketSet) For(l locality.Locality) (bucket string, matched bool) {
	for i := len(l.Tiers) - 1; i >= 0; i-- {
		for j, t := range b.tiers {
			if j != b.defIdx && t == l.Tiers[i] {
				return b.names[j], true
			}
		}
	}
	return b.names[b.defIdx], false
}

// String lists the buckets as given.
func (b *BucketSet) String() string { return strings.Join(b.names, ", ") }

// Matcher applies the default filter and bucket rules.
type Matcher struct{}

var _ locality.Matcher = Matcher{}

// MatchNodes implements locality.Matcher.
func (Matcher) MatchNodes(ctx context.Context, filter locality.Locality, nodes []locality.Node) ([]int32, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkNodes("matching nodes", nodes); err != nil {
		return nil, err
	}
	ids := []int32{}
	for _, n := range nodes {
		if Matches(filter, n.Locality) {
			ids = append(ids, n.ID)
		}
	}
	return ids, nil
}

// Buckets implements locality.Matcher. With strict set, a node that only
// the default bucket takes is an error naming the node and its locality.
func (Matcher) Buckets(ctx context.Context, nodes []locality.Node, buckets []string, strict bool) (map[int32]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkNodes("choosing buckets", nodes); err != nil {
		return nil, err
	}
	set, err := NewBucketSet(buckets)
	if err != nil {
		return nil, err
	}
	out := make(map[int32]string, len(nodes))
	for _, n := range nodes {
		b, matched := set.For(n.Locality)
		if strict && !matched {
			return nil, invalidf("choosing bucket for node %d (locality %q): no locality bucket of %q matches and strict forbids the default bucket",
				n.ID, n.Locality.String(), buckets)
		}
		out[n.ID] = b
	}
	return out, nil
}

func checkNodes(what string, nodes []locality.Node) error {
	seen := make(map[int32]bool, len(nodes))
	for _, n := range nodes {
		if seen[n.ID] {
			return invalidf("%s: node %d appears twice", what, n.ID)
		}
		seen[n.ID] = true
	}
	return nil
}
