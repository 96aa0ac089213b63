package movr

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/core/keys"
)

// memKV is an in-memory KV; onWrite, if set, runs after each applied batch
// with the number of batches so far.
type memKV struct {
	mu      sync.Mutex
	data    map[string]string
	writes  int
	puts    int
	deletes int
	failAt  int // fail the failAt'th write (1-based); 0 never
	onWrite func(n int)
}

var errInjected = errors.New("injected write failure")

func newMemKV() *memKV { return &memKV{data: map[string]string{}} }

func (m *memKV) Write(ctx context.Context, ops []Op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	m.writes++
	n := m.writes
	if m.failAt != 0 && n == m.failAt {
		m.mu.Unlock()
		return errInjected
	}
	seen := map[string]bool{}
	for _, op := range ops {
		k := string(op.Key)
		if seen[k] {
			m.mu.Unlock()
			panic("same key twice in one batch: " + keys.Pretty(op.Key))
		}
		seen[k] = true
		if op.Delete {
			m.deletes++
			delete(m.data, k)
			continue
		}
		m.puts++
		m.data[k] = string(op.Value)
	}
	m.mu.Unlock()
	if m.onWrite != nil {
		m.onWrite(n)
	}
	return nil
}

func (m *memKV) snapshot() map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.data)
}

var testIDs = map[string]uint32{"users": 53, "vehicles": 54, "rides": 55, "promo_codes": 56}

func load(t *testing.T, cfg Config) (*memKV, Stats) {
	t.Helper()
	kv := newMemKV()
	st, err := Load(context.Background(), kv, testIDs, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return kv, st
}

func TestLoadDeterministic(t *testing.T) {
	t.Parallel()
	a, sa := load(t, Config{Seed: 7, Rows: 3000, BatchSize: 7, Concurrency: 1})
	b, sb := load(t, Config{Seed: 7, Rows: 3000, BatchSize: 64, Concurrency: 4})
	if !maps.Equal(a.snapshot(), b.snapshot()) {
		t.Fatal("loads with the same seed and size differ")
	}
	if sa.Rows != 3000 || sa.Rows != sb.Rows || sa.Bytes != sb.Bytes || !maps.Equal(sa.PerTable, sb.PerTable) {
		t.Fatalf("stats differ: %+v vs %+v", sa, sb)
	}
	if len(a.snapshot()) != 3000 {
		t.Fatalf("stored %d distinct keys, want 3000", len(a.snapshot()))
	}
	c, _ := load(t, Config{Seed: 8, Rows: 3000})
	same := 0
	cs := c.snapshot()
	for k, v := range a.snapshot() {
		if cs[k] == v {
			same++
		}
	}
	if same != 0 {
		t.Fatalf("%d rows identical under a different seed", same)
	}
}

func TestLoadSize(t *testing.T) {
	t.Parallel()
	const want = 4 << 20
	var last int64
	calls := 0
	kv := newMemKV()
	st, err := Load(context.Background(), kv, testIDs, Config{Seed: 1, Bytes: want, Concurrency: 3}, func(done int64) {
		if done < last {
			t.Errorf("progress went back from %d to %d", last, done)
		}
		last = done
		calls++
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Bytes < want*97/100 || st.Bytes > want*103/100 {
		t.Fatalf("loaded %d bytes, want about %d", st.Bytes, want)
	}
	if last != st.Bytes || calls == 0 {
		t.Fatalf("final progress %d after %d calls, stats %d", last, calls, st.Bytes)
	}
	var stored int64
	for k, v := range kv.snapshot() {
		stored += int64(len(k) + len(v))
	}
	if stored != st.Bytes {
		t.Fatalf("stored %d bytes, stats say %d", stored, st.Bytes)
	}
	if share := float64(st.PerTableBytes["rides"]) / float64(st.Bytes); share < 0.8 {
		t.Fatalf("rides hold %.0f%% of the bytes, want the bulk", share*100)
	}
	for _, tbl := range Tables {
		if st.PerTable[tbl.Name] == 0 {
			t.Errorf("table %s is empty", tbl.Name)
		}
	}
	counts, err := RowCounts(Config{Seed: 1, Bytes: want})
	if err != nil || !maps.Equal(counts, st.PerTable) {
		t.Fatalf("RowCounts = %v, %v; loaded %v", counts, err, st.PerTable)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{{}, {Rows: 10, Bytes: 10}, {Rows: -1}} {
		if _, err := Load(context.Background(), newMemKV(), testIDs, cfg, nil); err == nil {
			t.Errorf("Load(%+v): want an error", cfg)
		}
	}
	if _, err := Load(context.Background(), newMemKV(), map[string]uint32{"users": 1}, Config{Rows: 10}, nil); err == nil {
		t.Error("want an error for missing table ids")
	}
}

func TestKeysAndValues(t *testing.T) {
	t.Parallel()
	kv, _ := load(t, Config{Seed: 3, Rows: 2000})
	byID := map[uint32]Table{}
	for _, tbl := range Tables {
		byID[testIDs[tbl.Name]] = tbl
	}
	perCity := map[string]int{}
	for k, v := range kv.snapshot() {
		key := []byte(k)
		id, rest, err := keys.DecodeTableID(key)
		if err != nil {
			t.Fatal(err)
		}
		tbl, ok := byID[id]
		if !ok {
			t.Fatalf("key %s in an unknown table", keys.Pretty(key))
		}
		vals, err := keys.DecodeTuple(rest)
		if err != nil {
			t.Fatalf("decoding %s: %v", keys.Pretty(key), err)
		}
		if len(vals) != len(tbl.PrimaryKey) {
			t.Fatalf("key %s has %d columns, want %d", keys.Pretty(key), len(vals), len(tbl.PrimaryKey))
		}
		region, ok := RegionOfKey(key)
		if tbl.PerCity {
			city := vals[0].(string)
			want, known := RegionOfCity(city)
			if !known || !ok || region != want {
				t.Fatalf("RegionOfKey(%s) = %q, %v; want %q", keys.Pretty(key), region, ok, want)
			}
			if _, isUint := vals[1].(uint64); !isUint {
				t.Fatalf("key %s: id is not a uint", keys.Pretty(key))
			}
			perCity[city]++
		} else if ok {
			t.Fatalf("RegionOfKey(%s) = %q for a table that is not per city", keys.Pretty(key), region)
		}
		var fields map[string]any
		if err := json.Unmarshal([]byte(v), &fields); err != nil {
			t.Fatalf("value of %s is not JSON: %v", keys.Pretty(key), err)
		}
		for _, c := range tbl.Columns {
			_, present := fields[c.Name]
			if isKey := slices.Contains(tbl.PrimaryKey, c.Name); present == isKey {
				t.Fatalf("value of %s: column %s present=%v", keys.Pretty(key), c.Name, present)
			}
		}
		if want := valueSize[slices.IndexFunc(Tables, func(x Table) bool { return x.Name == tbl.Name })]; len(v) != want {
			t.Fatalf("value of %s is %d bytes, want %d", keys.Pretty(key), len(v), want)
		}
	}
	if len(perCity) != len(Cities) {
		t.Fatalf("rows in %d cities, want %d", len(perCity), len(Cities))
	}
	for _, k := range [][]byte{nil, []byte("x"), keys.TablePrefix(53), keys.AppendString(keys.TablePrefix(53), "atlantis")} {
		if r, ok := RegionOfKey(k); ok {
			t.Errorf("RegionOfKey(%s) = %q, want none", keys.Pretty(k), r)
		}
	}
}

func TestSplitPoints(t *testing.T) {
	t.Parallel()
	if got := SplitPoints(56, Tables[tPromoCodes]); got != nil {
		t.Fatalf("promo_codes split points: %v", got)
	}
	kv, _ := load(t, Config{Seed: 4, Rows: 1000})
	data := kv.snapshot()
	for _, tbl := range Tables[:tPromoCodes] {
		id := testIDs[tbl.Name]
		splits := SplitPoints(id, tbl)
		if len(splits) != len(Cities) || !slices.IsSortedFunc(splits, bytes.Compare) {
			t.Fatalf("%s: split points not %d sorted keys", tbl.Name, len(Cities))
		}
		span := keys.TableSpan(id)
		for _, s := range splits {
			if !span.ContainsKey(s) || bytes.Equal(s, span.Key) {
				t.Fatalf("split %s outside the inside of %s", keys.Pretty(s), keys.PrettySpan(span))
			}
			if _, ok := RegionOfKey(s); !ok {
				t.Fatalf("split %s has no region", keys.Pretty(s))
			}
		}
		rows := 0
		for k := range data {
			key := []byte(k)
			if !span.ContainsKey(key) {
				continue
			}
			rows++
			_, rest, _ := keys.DecodeTableID(key)
			vals, _ := keys.DecodeTuple(rest)
			i := slices.IndexFunc(splits, func(s []byte) bool { return bytes.Equal(s, cityPrefix(id, vals[0].(string))) })
			if i < 0 || bytes.Compare(key, splits[i]) < 0 {
				t.Fatalf("row %s before its city's split point", keys.Pretty(key))
			}
			if i+1 < len(splits) && bytes.Compare(key, splits[i+1]) >= 0 {
				t.Fatalf("row %s at or past the next city's split point", keys.Pretty(key))
			}
			if r1, _ := RegionOfKey(key); r1 != func() string { r, _ := RegionOfKey(splits[i]); return r }() {
				t.Fatalf("row %s and its split point are in different regions", keys.Pretty(key))
			}
		}
		if rows == 0 {
			t.Fatalf("%s: no rows", tbl.Name)
		}
	}
}

func TestCityOfMatchesCityRange(t *testing.T) {
	t.Parallel()
	for _, n := range []int64{1, 5, 9, 10, 17, 100, 1001} {
		g := newGenerator(1, [numTables]int64{n, n, n, n}, [numTables]uint32{})
		for c := range Cities {
			lo, hi := cityRange(c, n)
			for i := lo; i < hi; i++ {
				if got := g.cityOf(tRides, i); got != c {
					t.Fatalf("n=%d: cityOf(%d) = %d, want %d", n, i, got, c)
				}
			}
		}
		if _, hi := cityRange(len(Cities)-1, n); hi != n {
			t.Fatalf("n=%d: city ranges end at %d", n, hi)
		}
	}
}

func TestRun(t *testing.T) {
	t.Parallel()
	kv, st := load(t, Config{Seed: 5, Rows: 900})
	before := kv.snapshot()
	kv.mu.Lock()
	kv.puts, kv.deletes, kv.writes = 0, 0, 0
	kv.mu.Unlock()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kv.onWrite = func(n int) {
		if n == 600 {
			cancel()
		}
	}
	start := time.Now()
	rs, err := Run(ctx, kv, testIDs, RunConfig{Seed: 5, Concurrency: 3, LoadedRows: st.PerTable})
	if err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Run took %v", d)
	}
	if rs.Inserts == 0 || rs.Updates == 0 || rs.Deletes == 0 || rs.Ops() < 600 {
		t.Fatalf("run stats %+v", rs)
	}
	kv.mu.Lock()
	puts, deletes := kv.puts, kv.deletes
	kv.mu.Unlock()
	if int64(puts) != rs.Inserts+rs.Updates || int64(deletes) != rs.Deletes {
		t.Fatalf("kv saw %d puts, %d deletes; stats %+v", puts, deletes, rs)
	}

	after := kv.snapshot()
	var added, changed, removed int
	for k, v := range after {
		old, ok := before[k]
		switch {
		case !ok:
			added++
			id, _, err := keys.DecodeTableID([]byte(k))
			if _, ok := RegionOfKey([]byte(k)); err != nil || (!ok && id != testIDs["promo_codes"]) {
				t.Fatalf("inserted key %s has no region", keys.Pretty([]byte(k)))
			}
		case old != v:
			changed++
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			removed++
		}
	}
	if added == 0 || changed == 0 || removed == 0 {
		t.Fatalf("added %d, changed %d, removed %d rows", added, changed, removed)
	}
}

func TestRunRateLimit(t *testing.T) {
	t.Parallel()
	counts, _ := RowCounts(Config{Rows: 100})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	rs, err := Run(ctx, newMemKV(), testIDs, RunConfig{Seed: 1, Concurrency: 4, MaxOpsPerSecond: 100, LoadedRows: counts})
	if err != nil {
		t.Fatal(err)
	}
	// 100/s for 0.3s is 30 operations; allow for slow machines below.
	if rs.Ops() > 35 || rs.Ops() < 5 {
		t.Fatalf("%d ops in 300ms at 100/s", rs.Ops())
	}
}

func TestErrorsPropagate(t *testing.T) {
	t.Parallel()
	kv := newMemKV()
	kv.failAt = 3
	if _, err := Load(context.Background(), kv, testIDs, Config{Rows: 500, BatchSize: 10, Concurrency: 2}, nil); !errors.Is(err, errInjected) {
		t.Fatalf("Load: %v, want the injected error", err)
	}
	kv = newMemKV()
	kv.failAt = 50
	counts, _ := RowCounts(Config{Rows: 100})
	if _, err := Run(context.Background(), kv, testIDs, RunConfig{Concurrency: 2, LoadedRows: counts}); !errors.Is(err, errInjected) {
		t.Fatalf("Run: %v, want the injected error", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Load(ctx, newMemKV(), testIDs, Config{Rows: 500}, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Load with a cancelled context: %v", err)
	}
}

type discardKV struct{}

func (discardKV) Write(context.Context, []Op) error { return nil }

func BenchmarkLoad(b *testing.B) {
	for b.Loop() {
		st, err := Load(context.Background(), discardKV{}, testIDs, Config{Seed: 1, Bytes: 16 << 20, BatchSize: 500}, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(st.Bytes)
	}
}
