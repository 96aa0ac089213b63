package spans

import (
	"bytes"
	"slices"
)

// The set operations in this file treat a slice of spans as the set of keys
// they cover. Conventions shared by all of them:
//
//   - A point span (empty EndKey) stands for the single key Key, that is
//     [Key, Key+"\x00"); outputs always carry an explicit EndKey.
//   - Empty or inverted spans (Key >= EndKey) cover nothing and are ignored.
//   - Inputs are never modified. Outputs may share key bytes with inputs;
//     callers must not mutate keys they did not copy.
//   - Outputs are canonical: sorted by Key, and no two spans overlap or
//     touch (a.EndKey < b.Key for consecutive a, b).

// bounded returns s as a half-open span with an explicit EndKey.
func bounded(s Span) Span {
	if len(s.EndKey) == 0 {
		return Span{Key: s.Key, EndKey: keyNext(s.Key)}
	}
	return s
}

// keyNext returns the smallest key greater than k.
func keyNext(k []byte) []byte {
	n := make([]byte, len(k)+1)
	copy(n, k)
	return n
}

// Merge returns the canonical form of spans: sorted, with overlapping and
// adjacent spans coalesced. Merge(nil) is nil.
func Merge(spans []Span) []Span {
	in := make([]Span, 0, len(spans))
	for _, s := range spans {
		s = bounded(s)
		if bytes.Compare(s.Key, s.EndKey) < 0 {
			in = append(in, s)
		}
	}
	if len(in) == 0 {
		return nil
	}
	slices.SortFunc(in, func(a, b Span) int {
		if c := bytes.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		return bytes.Compare(a.EndKey, b.EndKey)
	})
	out := in[:1]
	for _, s := range in[1:] {
		last := &out[len(out)-1]
		if bytes.Compare(s.Key, last.EndKey) <= 0 {
			if bytes.Compare(s.EndKey, last.EndKey) > 0 {
				last.EndKey = s.EndKey
			}
			continue
		}
		out = append(out, s)
	}
	return slices.Clip(out)
}

// Subtract returns the keys of from that are in no span of remove, in
// canonical form.
func Subtract(from, remove []Span) []Span {
	f, r := Merge(from), Merge(remove)
	var out []Span
	j := 0
	for _, s := range f {
		cur := s.Key
		// Skip removals entirely before s; they cannot affect later spans
		// of f either, since f is sorted.
		for j < len(r) && bytes.Compare(r[j].EndKey, cur) <= 0 {
			j++
		}
		for k := j; k < len(r) && bytes.Compare(r[k].Key, s.EndKey) < 0; k++ {
			if bytes.Compare(cur, r[k].Key) < 0 {
				out = append(out, Span{Key: cur, EndKey: r[k].Key})
			}
			if bytes.Compare(r[k].EndKey, cur) > 0 {
				cur = r[k].EndKey
			}
		}
		if bytes.Compare(cur, s.EndKey) < 0 {
			out = append(out, Span{Key: cur, EndKey: s.EndKey})
		}
	}
	return out
}

// SplitAt splits s at every boundary key strictly inside it, returning the
// pieces in key order; together they cover exactly s. Boundaries may be
// unsorted and repeated; those outside s or equal to its Key are ignored.
// A point span cannot be split and is returned alone, as is an empty span.
func SplitAt(s Span, boundaries [][]byte) []Span {
	if len(s.EndKey) == 0 || bytes.Compare(s.Key, s.EndKey) >= 0 {
		return []Span{s}
	}
	var inside [][]byte
	for _, b := range boundaries {
		if bytes.Compare(s.Key, b) < 0 && bytes.Compare(b, s.EndKey) < 0 {
			inside = append(inside, b)
		}
	}
	slices.SortFunc(inside, bytes.Compare)
	inside = slices.CompactFunc(inside, bytes.Equal)
	out := make([]Span, 0, len(inside)+1)
	cur := s.Key
	for _, b := range inside {
		out = append(out, Span{Key: cur, EndKey: b})
		cur = b
	}
	return append(out, Span{Key: cur, EndKey: s.EndKey})
}

// Covers reports whether every key of s lies in some span of spans. An
// empty s is covered by anything.
func Covers(spans []Span, s Span) bool {
	s = bounded(s)
	if bytes.Compare(s.Key, s.EndKey) >= 0 {
		return true
	}
	return len(Subtract([]Span{s}, spans)) == 0
}

// ContainsSpan reports whether every key of o lies in s. Point spans are
// single keys; an empty o is contained in any s.
func (s Span) ContainsSpan(o Span) bool {
	o = bounded(o)
	if bytes.Compare(o.Key, o.EndKey) >= 0 {
		return true
	}
	s = bounded(s)
	return bytes.Compare(s.Key, o.Key) <= 0 && bytes.Compare(o.EndKey, s.EndKey) <= 0
}
