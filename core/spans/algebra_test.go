package spans

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// sp builds spans from "a-c" (half-open) and "a" (point) notation.
func sp(specs ...string) []Span {
	var out []Span
	for _, s := range specs {
		k, e, ok := strings.Cut(s, "-")
		if ok {
			out = append(out, Span{Key: []byte(k), EndKey: []byte(e)})
		} else {
			out = append(out, Span{Key: []byte(k)})
		}
	}
	return out
}

func fmtSpans(ss []Span) string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		if len(s.EndKey) == 0 {
			parts[i] = fmt.Sprintf("%q", s.Key)
		} else {
			parts[i] = fmt.Sprintf("%q-%q", s.Key, s.EndKey)
		}
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func equalSpans(a, b []Span) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

func TestMerge(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want []Span
	}{
		{nil, nil},
		{sp("a-b"), sp("a-b")},
		{sp("c-d", "a-b"), sp("a-b", "c-d")},
		{sp("a-c", "b-d"), sp("a-d")},
		{sp("a-b", "b-c"), sp("a-c")},        // adjacent
		{sp("a-z", "b-c", "d-e"), sp("a-z")}, // nested
		{sp("b-a", "c-c", "d-e"), sp("d-e")}, // inverted and empty dropped
		{sp("a", "a\x00-b"), sp("a-b")},      // point touches the next span
		{sp("a", "b"), []Span{{Key: []byte("a"), EndKey: []byte("a\x00")}, {Key: []byte("b"), EndKey: []byte("b\x00")}}},
		{sp("a-c", "a-b", "a-d"), sp("a-d")},
		{sp("x-y", "a-b", "m-n", "b-m"), sp("a-n", "x-y")},
	} {
		in := fmtSpans(tc.in)
		got := Merge(tc.in)
		if !equalSpans(got, tc.want) {
			t.Errorf("Merge(%s) = %s, want %s", in, fmtSpans(got), fmtSpans(tc.want))
		}
		if fmtSpans(tc.in) != in {
			t.Errorf("Merge modified its input: %s", fmtSpans(tc.in))
		}
	}
}

func TestSubtract(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		from, remove, want []Span
	}{
		{sp("a-z"), nil, sp("a-z")},
		{nil, sp("a-z"), nil},
		{sp("a-z"), sp("a-z"), nil},
		{sp("a-z"), sp("c-d"), sp("a-c", "d-z")},
		{sp("a-z"), sp("0-b", "y-zz"), sp("b-y")},
		{sp("a-c", "d-f"), sp("b-e"), sp("a-b", "e-f")},
		{sp("a-c", "d-f", "g-i"), sp("b-h"), sp("a-b", "h-i")},
		{sp("a-z"), sp("b-c", "e-f", "g-h"), sp("a-b", "c-e", "f-g", "h-z")},
		{sp("a-c"), sp("c-d"), sp("a-c")},
		{sp("a-c"), sp("b"), []Span{{Key: []byte("a"), EndKey: []byte("b")}, {Key: []byte("b\x00"), EndKey: []byte("c")}}},
		{sp("b"), sp("a-c"), nil},
		{sp("c-d", "a-b"), sp("x-y"), sp("a-b", "c-d")},
	} {
		got := Subtract(tc.from, tc.remove)
		if !equalSpans(got, tc.want) {
			t.Errorf("Subtract(%s, %s) = %s, want %s", fmtSpans(tc.from), fmtSpans(tc.remove), fmtSpans(got), fmtSpans(tc.want))
		}
	}
}

func TestSplitAt(t *testing.T) {
	t.Parallel()
	b := func(keys ...string) [][]byte {
		var out [][]byte
		for _, k := range keys {
			out = append(out, []byte(k))
		}
		return out
	}
	for _, tc := range []struct {
		s          Span
		boundaries [][]byte
		want       []Span
	}{
		{sp("a-z")[0], nil, sp("a-z")},
		{sp("a-z")[0], b("m"), sp("a-m", "m-z")},
		{sp("a-z")[0], b("q", "c", "q", "a", "z", "zz", "0"), sp("a-c", "c-q", "q-z")},
		{sp("a-c")[0], b("b", "b\x00"), sp("a-b", "b-b\x00", "b\x00-c")},
		{sp("a")[0], b("a", "b"), sp("a")},
	} {
		got := SplitAt(tc.s, tc.boundaries)
		if !equalSpans(got, tc.want) {
			t.Errorf("SplitAt(%s, %q) = %s, want %s", tc.s, tc.boundaries, fmtSpans(got), fmtSpans(tc.want))
		}
	}
}

func TestCoversAndContains(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		spans []Span
		s     Span
		want  bool
	}{
		{sp("a-z"), sp("b-c")[0], true},
		{sp("a-c", "c-e"), sp("b-d")[0], true},
		{sp("a-c", "d-e"), sp("b-d")[0], false},
		{sp("a-c"), sp("a-c")[0], true},
		{sp("a-c"), sp("a-c\x00")[0], false},
		{sp("a-c"), sp("b")[0], true},
		{sp("a-c"), sp("c")[0], false},
		{sp("c"), sp("c")[0], true},
		{sp("c", "c\x00-d"), sp("c-d")[0], true},
		{nil, sp("c-c")[0], true}, // empty
		{nil, sp("c")[0], false},
		{sp("a-b"), sp("x-c")[0], true}, // inverted: covers nothing
	} {
		if got := Covers(tc.spans, tc.s); got != tc.want {
			t.Errorf("Covers(%s, %s) = %v, want %v", fmtSpans(tc.spans), tc.s, got, tc.want)
		}
		if len(tc.spans) == 1 {
			if got := tc.spans[0].ContainsSpan(tc.s); got != tc.want {
				t.Errorf("%s.ContainsSpan(%s) = %v, want %v", tc.spans[0], tc.s, got, tc.want)
			}
		}
	}
}

// The randomized tests compare against a model: a set of spans is the set
// of keys it holds among all keys of up to three bytes over a small
// alphabet. Span boundaries have at most two bytes, so two canonical span
// sets are equal exactly when they hold the same model keys (each boundary
// is itself a model key that tells them apart).
var alphabet = []byte{0x00, 'a', 'b'}

func universe() [][]byte {
	out := [][]byte{{}}
	frontier := [][]byte{{}}
	for range 3 {
		var next [][]byte
		for _, p := range frontier {
			for _, c := range alphabet {
				k := append(append([]byte(nil), p...), c)
				next = append(next, k)
			}
		}
		out = append(out, next...)
		frontier = next
	}
	return out
}

func randKey(r *rand.Rand) []byte {
	n := r.IntN(3)
	k := make([]byte, n)
	for i := range k {
		k[i] = alphabet[r.IntN(len(alphabet))]
	}
	return k
}

func randSpans(r *rand.Rand) []Span {
	out := make([]Span, r.IntN(5))
	for i := range out {
		out[i] = Span{Key: randKey(r)}
		if r.IntN(4) != 0 { // mostly ranges, some points
			out[i].EndKey = randKey(r)
		}
	}
	return out
}

func modelHas(spans []Span, k []byte) bool {
	for _, s := range spans {
		if s.ContainsKey(k) {
			return true
		}
	}
	return false
}

func checkCanonical(t *testing.T, ss []Span) {
	t.Helper()
	for i, s := range ss {
		if len(s.EndKey) == 0 || bytes.Compare(s.Key, s.EndKey) >= 0 {
			t.Fatalf("not canonical: span %d of %s is empty or unbounded", i, fmtSpans(ss))
		}
		if i > 0 && bytes.Compare(ss[i-1].EndKey, s.Key) >= 0 {
			t.Fatalf("not canonical: spans %d and %d of %s touch", i-1, i, fmtSpans(ss))
		}
	}
}

func TestRandomizedAgainstModel(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	keys := universe()
	for iter := range 3000 {
		a, b := randSpans(r), randSpans(r)
		merged := Merge(a)
		checkCanonical(t, merged)
		diff := Subtract(a, b)
		checkCanonical(t, diff)
		s := randSpans(r)
		var probe Span
		if len(s) > 0 {
			probe = s[0]
		}
		wantCovers := true
		for _, k := range keys {
			inA, inB := modelHas(a, k), modelHas(b, k)
			if got := modelHas(merged, k); got != inA {
				t.Fatalf("iter %d: Merge(%s) has %q = %v, want %v", iter, fmtSpans(a), k, got, inA)
			}
			if got := modelHas(diff, k); got != (inA && !inB) {
				t.Fatalf("iter %d: Subtract(%s, %s) has %q = %v, want %v", iter, fmtSpans(a), fmtSpans(b), k, got, inA && !inB)
			}
			if modelHas([]Span{probe}, k) && !inA {
				wantCovers = false
			}
		}
		// Covers must agree with the model whenever the probe is valid;
		// an inverted probe covers nothing, so it is covered.
		if probe.Valid() {
			if got := Covers(a, probe); got != wantCovers {
				t.Fatalf("iter %d: Covers(%s, %s) = %v, want %v", iter, fmtSpans(a), probe, got, wantCovers)
			}
		}
		if len(a) > 0 && a[0].Valid() && probe.Valid() {
			want := true
			for _, k := range keys {
				if modelHas([]Span{probe}, k) && !modelHas(a[:1], k) {
					want = false
				}
			}
			if got := a[0].ContainsSpan(probe); got != want {
				t.Fatalf("iter %d: %s.ContainsSpan(%s) = %v, want %v", iter, a[0], probe, got, want)
			}
		}
		// SplitAt pieces are contiguous, inside s, and split exactly at the
		// distinct boundaries strictly inside s.
		if len(a) > 0 && len(a[0].EndKey) > 0 && a[0].Valid() {
			var bounds [][]byte
			for range r.IntN(5) {
				bounds = append(bounds, randKey(r))
			}
			pieces := SplitAt(a[0], bounds)
			inside := map[string]bool{}
			for _, bk := range bounds {
				if a[0].ContainsKey(bk) && !bytes.Equal(bk, a[0].Key) {
					inside[string(bk)] = true
				}
			}
			if len(pieces) != len(inside)+1 {
				t.Fatalf("iter %d: SplitAt(%s, %q) = %s, want %d pieces", iter, a[0], bounds, fmtSpans(pieces), len(inside)+1)
			}
			if !bytes.Equal(pieces[0].Key, a[0].Key) || !bytes.Equal(pieces[len(pieces)-1].EndKey, a[0].EndKey) {
				t.Fatalf("iter %d: SplitAt(%s, %q) = %s does not span s", iter, a[0], bounds, fmtSpans(pieces))
			}
			for i := 1; i < len(pieces); i++ {
				if !bytes.Equal(pieces[i-1].EndKey, pieces[i].Key) || !inside[string(pieces[i].Key)] {
					t.Fatalf("iter %d: SplitAt(%s, %q) = %s is not split at the boundaries", iter, a[0], bounds, fmtSpans(pieces))
				}
			}
		}
	}
}
