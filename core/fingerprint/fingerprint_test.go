package fingerprint

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cairnbackup/cairn/core/hlc"
	"github.com/cairnbackup/cairn/core/keys"
	"github.com/cairnbackup/cairn/core/spans"
)

type kv struct{ key, value []byte }

// fakeScanner visits its entries in slice order, filtered by span; it
// ignores the timestamp.
type fakeScanner struct {
	entries []kv
	err     error
}

func (f *fakeScanner) Scan(ctx context.Context, span spans.Span, _ hlc.Timestamp, fn func(key, value []byte) error) error {
	for _, e := range f.entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !span.ContainsKey(e.key) {
			continue
		}
		// Hand out copies and clobber them afterwards, to catch retention.
		k, v := append([]byte(nil), e.key...), append([]byte(nil), e.value...)
		if err := fn(k, v); err != nil {
			return err
		}
		clear(k)
		clear(v)
	}
	return f.err
}

func rows(tableID uint32, n int) []kv {
	var out []kv
	for i := range n {
		k := keys.AppendUint(keys.AppendString(keys.TablePrefix(tableID), "boston"), uint64(i))
		out = append(out, kv{k, fmt.Appendf(nil, `{"n":%d}`, i)})
	}
	return out
}

func table(t *testing.T, s Scanner, id uint32) Fingerprint {
	t.Helper()
	f, err := Table(context.Background(), s, id, hlc.Timestamp{WallTime: 1})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestOrderIndependent(t *testing.T) {
	t.Parallel()
	base := rows(53, 200)
	want := table(t, &fakeScanner{entries: base}, 53)
	if want.Rows != 200 || want.Sum == [2]uint64{} {
		t.Fatalf("unexpected fingerprint %v", want)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 5 {
		shuffled := append([]kv(nil), base...)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if got := table(t, &fakeScanner{entries: shuffled}, 53); got != want {
			t.Fatalf("shuffled order: got %v, want %v", got, want)
		}
	}
}

func TestSensitive(t *testing.T) {
	t.Parallel()
	base := rows(53, 50)
	want := table(t, &fakeScanner{entries: base}, 53)
	mutate := map[string]func([]kv) []kv{
		"changed value": func(r []kv) []kv { r[7].value = []byte(`{"n":700}`); return r },
		"changed key": func(r []kv) []kv {
			r[7].key = keys.AppendUint(keys.AppendString(keys.TablePrefix(53), "boston"), 1000)
			return r
		},
		"extra row":   func(r []kv) []kv { return append(r, kv{keys.AppendString(keys.TablePrefix(53), "x"), nil}) },
		"missing row": func(r []kv) []kv { return r[1:] },
		// A byte moved from the value into the key must not collide.
		"byte moved": func(r []kv) []kv {
			r[3].key = append(r[3].key, r[3].value[0])
			r[3].value = r[3].value[1:]
			return r
		},
		// Two copies of a row must not cancel each other as XOR would.
		"duplicated pair": func(r []kv) []kv { return append(r, r[0], r[0]) },
	}
	for name, m := range mutate {
		entries := m(append([]kv(nil), base...))
		if got := table(t, &fakeScanner{entries: entries}, 53); got.Sum == want.Sum {
			t.Errorf("%s: fingerprint unchanged (%v)", name, got)
		}
	}
}

func TestTableIgnoresTableID(t *testing.T) {
	t.Parallel()
	s := &fakeScanner{entries: append(rows(53, 30), rows(104, 30)...)}
	a, b := table(t, s, 53), table(t, s, 104)
	if a != b || a.Rows != 30 {
		t.Fatalf("same rows under ids 53 and 104: %v != %v", a, b)
	}
	// Without stripping, the ids show.
	ctx := context.Background()
	ra, err := Span(ctx, s, keys.TableSpan(53), hlc.Timestamp{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := Span(ctx, s, keys.TableSpan(104), hlc.Timestamp{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if ra.Sum == rb.Sum {
		t.Fatal("unstripped fingerprints of different tables are equal")
	}
	if ra.Bytes != a.Bytes+30*keys.TablePrefixLen {
		t.Fatalf("bytes: unstripped %d, stripped %d", ra.Bytes, a.Bytes)
	}
	if empty := table(t, s, 7); empty != (Fingerprint{}) {
		t.Fatalf("empty table: %v", empty)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	boom := errors.New("boom")
	_, err := Table(ctx, &fakeScanner{entries: rows(53, 3), err: boom}, 53, hlc.Timestamp{})
	if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "fingerprinting span /Table/53") {
		t.Fatalf("scan error: %v", err)
	}
	short := &fakeScanner{entries: []kv{{[]byte("ab"), nil}}}
	if _, err := Span(ctx, short, spans.Span{Key: []byte("a"), EndKey: []byte("b\xff")}, hlc.Timestamp{}, 5); err == nil {
		t.Fatal("want an error for a key shorter than the prefix")
	}
}

func TestCombine(t *testing.T) {
	t.Parallel()
	s := &fakeScanner{entries: append(rows(53, 10), rows(54, 20)...)}
	a, b := table(t, s, 53), table(t, s, 54)
	db := Combine(map[string]Fingerprint{"users": a, "rides": b})
	if db.Rows != 30 || db.Bytes != a.Bytes+b.Bytes {
		t.Fatalf("totals: %+v", db)
	}
	if again := Combine(map[string]Fingerprint{"rides": b, "users": a}); again != db {
		t.Fatal("Combine is not deterministic")
	}
	for name, m := range map[string]map[string]Fingerprint{
		"swapped":     {"users": b, "rides": a},
		"renamed":     {"customers": a, "rides": b},
		"extra empty": {"users": a, "rides": b, "promo_codes": {}},
		"missing":     {"users": a},
	} {
		if got := Combine(m); got.Sum == db.Sum {
			t.Errorf("%s: combined fingerprint unchanged", name)
		}
	}
}

func TestString(t *testing.T) {
	t.Parallel()
	f := Fingerprint{Sum: [2]uint64{0x0123456789abcdef, 1}, Rows: 12}
	if got, want := f.String(), "0123456789abcdef…(rows=12)"; got != want {
		t.Fatalf("String = %q, want %q", got, want)
	}
	if got := f.Hex(); got != "0123456789abcdef0000000000000001" {
		t.Fatalf("Hex = %q", got)
	}
}
