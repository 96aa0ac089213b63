package keys

import (
	"bytes"
	"math/rand"
	"sort"
	"testing"
)

func TestTupleOrderMatchesValueOrder(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	type row struct {
		s string
		n uint64
	}
	var rows []row
	for i := 0; i < 500; i++ {
		b := make([]byte, rng.Intn(4))
		for j := range b {
			b[j] = byte(rng.Intn(3)) // include 0x00 and 0x01
		}
		rows = append(rows, row{string(b), uint64(rng.Intn(5))})
	}
	enc := func(r row) []byte { return AppendUint(AppendString(TablePrefix(7), r.s), r.n) }
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].s != rows[j].s {
			return rows[i].s < rows[j].s
		}
		return rows[i].n < rows[j].n
	})
	for i := 1; i < len(rows); i++ {
		if c := bytes.Compare(enc(rows[i-1]), enc(rows[i])); c > 0 {
			t.Fatalf("order broken between %v and %v", rows[i-1], rows[i])
		}
	}
	for _, r := range rows {
		id, rest, err := DecodeTableID(enc(r))
		if err != nil || id != 7 {
			t.Fatalf("decode id: %v %d", err, id)
		}
		vals, err := DecodeTuple(rest)
		if err != nil {
			t.Fatal(err)
		}
		if vals[0].(string) != r.s || vals[1].(uint64) != r.n {
			t.Fatalf("round trip %v != %v", vals, r)
		}
	}
}

func TestRewriteAndPretty(t *testing.T) {
	k := AppendUint(AppendString(TablePrefix(53), "new york"), 42)
	got, err := RewriteTableID(nil, k, 104)
	if err != nil {
		t.Fatal(err)
	}
	if want := `/Table/104/"new york"/42`; Pretty(got) != want {
		t.Fatalf("Pretty = %s, want %s", Pretty(got), want)
	}
	if !TableSpan(104).ContainsKey(got) || TableSpan(53).ContainsKey(got) {
		t.Fatal("rewritten key in the wrong table span")
	}
	if _, _, err := DecodeTableID([]byte("x")); err == nil {
		t.Fatal("want error for a non-table key")
	}
	if _, err := DecodeTuple([]byte{tagString, 'a'}); err == nil {
		t.Fatal("want error for an unterminated string")
	}
}
