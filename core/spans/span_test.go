package spans

import (
	"bytes"
	"testing"
)

func TestPrefixEnd(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want []byte }{
		{[]byte("a"), []byte("b")},
		{[]byte("a\xff"), []byte("b")},
		{[]byte("ab\xff\xff"), []byte("ac")},
		{[]byte("\xff\xff"), nil},
		{nil, nil},
	} {
		in := append([]byte(nil), tc.in...)
		if got := PrefixEnd(tc.in); !bytes.Equal(got, tc.want) {
			t.Errorf("PrefixEnd(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if !bytes.Equal(in, tc.in) {
			t.Errorf("PrefixEnd modified its input")
		}
	}
}

func TestIntersect(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b string
		want string // "" for none
	}{
		{"a-c", "b-d", "b-c"},
		{"a-z", "c-d", "c-d"},
		{"a-b", "b-c", ""},
		{"a-b", "c-d", ""},
	} {
		a, b := sp(tc.a)[0], sp(tc.b)[0]
		got, ok := a.Intersect(b)
		if tc.want == "" {
			if ok || a.Overlaps(b) {
				t.Errorf("%s ∩ %s = %s, want none", a, b, got)
			}
			continue
		}
		if w := sp(tc.want)[0]; !ok || !got.Equal(w) || !a.Overlaps(b) {
			t.Errorf("%s ∩ %s = %s, %v; want %s", a, b, got, ok, w)
		}
	}
}
