package cluster_test

import (
	"errors"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/cairnbackup/cairn/core/cluster"
	"github.com/cairnbackup/cairn/core/hlc"
	"github.com/cairnbackup/cairn/core/keys"
	"github.com/cairnbackup/cairn/core/spans"
	"github.com/cairnbackup/cairn/core/workload/movr"
)

func TestProtectedTimestampRecords(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	l, err := cluster.StartLocal(ctx, cluster.LocalConfig{Dir: t.TempDir(), Nodes: 1, CacheSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	meta := l.Nodes[0].Meta
	rec := cluster.ProtectedTimestamp{
		ID: "backup-7", JobID: 7, Timestamp: hlc.Timestamp{WallTime: 100, Logical: 2},
		Spans: []spans.Span{keys.TableSpan(60), keys.TableSpan(62)},
	}
	if err := meta.Protect(ctx, rec); err != nil {
		t.Fatal(err)
	}
	recs, err := meta.ProtectedTimestamps(ctx)
	if err != nil || len(recs) != 1 || recs[0].Timestamp != rec.Timestamp || recs[0].JobID != 7 || recs[0].Created.IsZero() {
		t.Fatalf("records after Protect: %+v, %v", recs, err)
	}
	created := recs[0].Created
	// Protecting the same thing again is a no-op that keeps the record.
	if err := meta.Protect(ctx, rec); err != nil {
		t.Fatalf("protecting again: %v", err)
	}
	if again, _ := meta.ProtectedTimestamps(ctx); len(again) != 1 || !again[0].Created.Equal(created) {
		t.Fatalf("records after protecting again: %+v (created %s)", again, created)
	}
	// A different protection under the same id is refused.
	other := rec
	other.Timestamp = hlc.Timestamp{WallTime: 200}
	if err := meta.Protect(ctx, other); !errors.Is(err, cluster.ErrAlreadyExists) {
		t.Fatalf("conflicting record: %v, want ErrAlreadyExists", err)
	}
	for name, bad := range map[string]cluster.ProtectedTimestamp{
		"no id":       {Timestamp: rec.Timestamp, Spans: rec.Spans},
		"no spans":    {ID: "x", Timestamp: rec.Timestamp},
		"point span":  {ID: "x", Timestamp: rec.Timestamp, Spans: []spans.Span{{Key: []byte("a")}}},
		"inverted":    {ID: "x", Timestamp: rec.Timestamp, Spans: []spans.Span{{Key: []byte("b"), EndKey: []byte("a")}}},
		"negative ts": {ID: "x", Timestamp: hlc.Timestamp{WallTime: -1}, Spans: rec.Spans},
	} {
		if err := meta.Protect(ctx, bad); err == nil {
			t.Errorf("%s: protected without an error", name)
		}
	}
	// Release is idempotent.
	for i := 0; i < 2; i++ {
		if err := meta.Release(ctx, rec.ID); err != nil {
			t.Fatalf("release %d: %v", i, err)
		}
	}
	if recs, err := meta.ProtectedTimestamps(ctx); err != nil || len(recs) != 0 {
		t.Fatalf("records after release: %+v, %v", recs, err)
	}
	if err := meta.Protect(ctx, other); err != nil {
		t.Fatalf("protecting after release: %v", err)
	}
}

// TestGCHonoursProtectedTimestamps overwrites and deletes rows, protects a
// whole table and part of a range at a time before the overwrite, and
// checks that GC at TTL 0 on every node removes the old versions
// everywhere else while reads at the protected time, in the protected
// spans, see what they saw before. Releasing the protection lets the next
// GC remove those too.
func TestGCHonoursProtectedTimestamps(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	l := startLocal(t, t.TempDir())
	_, tables := createMovr(t, l, "movr")
	users, rides := tables["users"].ID, tables["rides"].ID
	gw := l.Nodes[0]

	write := func(value string, deleteEvery int) {
		var ops []cluster.Op
		for _, c := range movr.Cities {
			for i := uint64(0); i < 10; i++ {
				for _, tbl := range []uint32{users, rides} {
					op := put(rowKey(tbl, c.Name, i), fmt.Sprintf("%s %s %d", value, c.Name, i))
					op.Delete = deleteEvery > 0 && i%uint64(deleteEvery) == 0
					ops = append(ops, op)
				}
			}
		}
		if err := gw.Write(ctx, ops); err != nil {
			t.Fatal(err)
		}
	}
	write("v1", 0)
	t1 := gw.Clock.Now()
	write("v2", 3)

	city := movr.Cities[0].Name
	ridesPart := spans.Span{Key: rowKey(rides, city, 0), EndKey: rowKey(rides, city, 5)}
	ridesRest := spans.Span{Key: rowKey(rides, city, 5), EndKey: spans.PrefixEnd(cityPrefix(rides, city))}
	if !rangeOf(t, l, ridesPart.Key).Span().ContainsKey(ridesRest.Key) {
		t.Fatal("the protected and unprotected parts of rides must share a range")
	}
	allUsers := keys.TableSpan(users)
	allRides := keys.TableSpan(rides)

	// read returns, per node, what its own store holds in span at ts.
	read := func(span spans.Span, ts hlc.Timestamp) map[int32]map[string]string {
		out := map[int32]map[string]string{}
		for _, n := range l.Nodes {
			out[n.ID] = storeRows(t, n, span, ts)
		}
		return out
	}
	rows := func(m map[int32]map[string]string) int {
		k := 0
		for _, r := range m {
			k += len(r)
		}
		return k
	}
	equal := func(a, b map[int32]map[string]string) bool {
		return maps.EqualFunc(a, b, func(x, y map[string]string) bool { return maps.Equal(x, y) })
	}
	now := gw.Clock.Now()
	usersAtT1, partAtT1, restAtT1 := read(allUsers, t1), read(ridesPart, t1), read(ridesRest, t1)
	usersNow, ridesNow := read(allUsers, now), read(allRides, now)
	if rows(usersAtT1) == 0 || rows(partAtT1) == 0 || rows(restAtT1) == 0 {
		t.Fatal("nothing to protect: the test data is too thin")
	}

	if err := gw.Meta.Protect(ctx, cluster.ProtectedTimestamp{ID: "users", Timestamp: t1, Spans: []spans.Span{allUsers}}); err != nil {
		t.Fatal(err)
	}
	if err := gw.Meta.Protect(ctx, cluster.ProtectedTimestamp{ID: "part", Timestamp: t1, Spans: []spans.Span{ridesPart}}); err != nil {
		t.Fatal(err)
	}
	// A protection above the threshold holds nothing back.
	if err := gw.Meta.Protect(ctx, cluster.ProtectedTimestamp{ID: "future", Timestamp: hlc.MaxTimestamp, Spans: []spans.Span{allRides}}); err != nil {
		t.Fatal(err)
	}
	gcAll := func() int64 {
		var deleted int64
		for _, n := range l.Nodes {
			st, err := n.RunGC(ctx, 0)
			if err != nil {
				t.Fatal(err)
			}
			deleted += st.Deleted
		}
		return deleted
	}
	if d := gcAll(); d == 0 {
		t.Fatal("GC removed nothing")
	}
	if got := read(allUsers, t1); !equal(got, usersAtT1) {
		t.Errorf("protected users at %s changed by GC", t1)
	}
	if got := read(ridesPart, t1); !equal(got, partAtT1) {
		t.Errorf("protected part of rides at %s changed by GC", t1)
	}
	if got := read(ridesRest, t1); rows(got) != 0 {
		t.Errorf("unprotected rides at %s survived GC at now: %d rows", t1, rows(got))
	}
	if !equal(read(allUsers, now), usersNow) || !equal(read(allRides, now), ridesNow) {
		t.Errorf("reads at the threshold changed")
	}

	for _, id := range []string{"users", "part", "future"} {
		if err := gw.Meta.Release(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if d := gcAll(); d == 0 {
		t.Fatal("GC after release removed nothing")
	}
	if got := read(allUsers, t1); rows(got) != 0 {
		t.Errorf("released users at %s survived GC: %d rows", t1, rows(got))
	}
	if !equal(read(allUsers, now), usersNow) || !equal(read(allRides, now), ridesNow) {
		t.Errorf("reads at the threshold changed")
	}
}

// TestPeriodicGC checks that a node configured with a GC interval removes
// old versions by itself, and stops cleanly.
func TestPeriodicGC(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	l, err := cluster.StartLocal(ctx, cluster.LocalConfig{
		Dir: t.TempDir(), Nodes: 3, RegionOf: movr.RegionOfKey, CacheSize: 1 << 20,
		GCInterval: 5 * time.Millisecond, GCTTL: time.Nanosecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	_, tables := createMovr(t, l, "movr")
	key := rowKey(tables["users"].ID, movr.Cities[0].Name, 1)
	gw := l.Nodes[0]
	if err := gw.Write(ctx, []cluster.Op{put(key, "old")}); err != nil {
		t.Fatal(err)
	}
	t1 := gw.Clock.Now()
	if err := gw.Write(ctx, []cluster.Op{put(key, "new")}); err != nil {
		t.Fatal(err)
	}
	rd := rangeOf(t, l, key)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for _, id := range rd.Replicas {
		for {
			if _, ok := storeGet(t, l.Node(id), key, t1); !ok {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("replica %d still has the old version", id)
			case <-tick.C:
			}
		}
		if v, ok := storeGet(t, l.Node(id), key, l.Node(id).Clock.Now()); !ok || v != "new" {
			t.Fatalf("replica %d lost the live version: %q, %v", id, v, ok)
		}
	}
}
