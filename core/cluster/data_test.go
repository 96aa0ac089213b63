package cluster_test

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"testing"

	"github.com/cairnbackup/cairn/core/cluster"
	"github.com/cairnbackup/cairn/core/hlc"
	"github.com/cairnbackup/cairn/core/keys"
	"github.com/cairnbackup/cairn/core/mvcc"
	"github.com/cairnbackup/cairn/core/spans"
	"github.com/cairnbackup/cairn/core/workload/movr"
)

type sstEntry struct {
	key string
	ts  hlc.Timestamp
	raw string
}

func readSST(t *testing.T, b []byte) []sstEntry {
	t.Helper()
	var out []sstEntry
	err := mvcc.IterateSST(t.Context(), bytes.NewReader(b), int64(len(b)), func(k []byte, ts hlc.Timestamp, raw []byte) error {
		out = append(out, sstEntry{string(k), ts, string(raw)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestScanExportIngestClear writes, updates and deletes rows of one range,
// scans them at timestamps through a gateway, exports the range from a
// local and a remote replica, clears it, ingests the export back into every
// replica from a remote node, and clears it again.
func TestScanExportIngestClear(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	l := startLocal(t, t.TempDir())
	_, tables := createMovr(t, l, "movr")
	users := tables["users"].ID
	rd := rangeOf(t, l, cityPrefix(users, "rome"))
	gw := nonReplica(t, l, rd)

	const rows = 10
	var ops []cluster.Op
	want1 := map[string]string{}
	for i := range rows {
		k := rowKey(users, "rome", uint64(i))
		ops = append(ops, put(k, fmt.Sprint("v1-", i)))
		want1[string(k)] = fmt.Sprint("v1-", i)
	}
	// A row of another city, in another range, that the range's scans must
	// not see and table scans must.
	other := rowKey(users, "paris", 1)
	ops = append(ops, put(other, "paris"))
	if err := gw.Write(ctx, ops); err != nil {
		t.Fatal(err)
	}
	t1 := gw.Clock.Now()
	want2 := maps.Clone(want1)
	ops = nil
	for i := range 3 {
		k := rowKey(users, "rome", uint64(i))
		ops = append(ops, cluster.Op{Key: k, Delete: true})
		delete(want2, string(k))
	}
	k3 := rowKey(users, "rome", 3)
	ops = append(ops, put(k3, "v2-3"))
	want2[string(k3)] = "v2-3"
	if err := gw.Write(ctx, ops); err != nil {
		t.Fatal(err)
	}
	t2 := gw.Clock.Now()

	equal := func(what string, got, want map[string]string) {
		t.Helper()
		if !maps.Equal(got, want) {
			t.Errorf("%s: got %d rows %v, want %d rows %v", what, len(got), got, len(want), want)
		}
	}
	equal("scan at t1", scanRows(ctx, t, gw, rd.Span(), t1), want1)
	equal("scan at t2", scanRows(ctx, t, gw, rd.Span(), t2), want2)
	table := scanRows(ctx, t, gw, keys.TableSpan(users), t2)
	if table[string(other)] != "paris" || len(table) != len(want2)+1 {
		t.Errorf("table scan at t2: %d rows, want %d including paris's", len(table), len(want2)+1)
	}
	// A span inside the range reads only its part.
	sub := spans.Span{Key: rowKey(users, "rome", 3), EndKey: rowKey(users, "rome", 5)}
	if got := scanRows(ctx, t, gw, sub, t2); len(got) != 2 || got[string(k3)] != "v2-3" {
		t.Errorf("scan of %s: %v", keys.PrettySpan(sub), got)
	}
	// Every replica's store agrees with the gateway.
	for _, id := range rd.Replicas {
		equal(fmt.Sprintf("replica %d at t2", id), storeRows(t, l.Node(id), rd.Span(), t2), want2)
	}

	// Export the range from a local and a remote replica: same entries.
	local := l.Node(followers(rd)[0])
	remote := rd.Leaseholder
	if err := local.CloseTimestamp(ctx, rd.Span(), t2); err != nil {
		t.Fatal(err)
	}
	for _, all := range []bool{false, true} {
		opts := mvcc.ExportOptions{Span: rd.Span(), EndTS: t2, AllRevisions: all}
		var lb, rb bytes.Buffer
		ls, err := local.ExportFrom(ctx, local.ID, opts, &lb)
		if err != nil {
			t.Fatal(err)
		}
		rs, err := local.ExportFrom(ctx, remote, opts, &rb)
		if err != nil {
			t.Fatal(err)
		}
		le, re := readSST(t, lb.Bytes()), readSST(t, rb.Bytes())
		if !slices.Equal(le, re) {
			t.Errorf("all revisions %v: local export of node %d has %v, remote export of node %d has %v", all, local.ID, le, remote, re)
		}
		wantEntries := len(want2) // newest live version of each row
		if all {
			wantEntries = rows + 3 + 1 // first versions, tombstones, the update
		}
		if len(le) != wantEntries {
			t.Errorf("all revisions %v: %d entries, want %d", all, len(le), wantEntries)
		}
		if ls.Entries != int64(len(le)) || rs.Entries != ls.Entries || rs.LogicalBytes != ls.LogicalBytes || rs.ResumeKey != nil {
			t.Errorf("all revisions %v: local summary %+v, remote summary %+v", all, ls, rs)
		}
		if rs.FileBytes != int64(rb.Len()) || ls.FileBytes != int64(lb.Len()) {
			t.Errorf("all revisions %v: FileBytes local %d (wrote %d), remote %d (wrote %d)", all, ls.FileBytes, lb.Len(), rs.FileBytes, rb.Len())
		}
	}
	var sst bytes.Buffer
	if _, err := local.ExportFrom(ctx, remote, mvcc.ExportOptions{Span: rd.Span(), EndTS: t2, AllRevisions: true}, &sst); err != nil {
		t.Fatal(err)
	}

	// Clear every replica; nothing is left to read at any time.
	if err := gw.ClearSpanOn(ctx, rd.Replicas, rd.Span()); err != nil {
		t.Fatal(err)
	}
	for _, id := range rd.Replicas {
		equal(fmt.Sprintf("replica %d after clear", id), storeRows(t, l.Node(id), rd.Span(), hlc.MaxTimestamp), map[string]string{})
	}
	equal("scan after clear", scanRows(ctx, t, gw, rd.Span(), t2), map[string]string{})
	if got := scanRows(ctx, t, gw, keys.TableSpan(users), t2); got[string(other)] != "paris" {
		t.Error("clearing rome's range removed paris's row")
	}

	// Ingest the export into every replica from a node that holds none.
	for _, id := range rd.Replicas {
		if err := gw.IngestTo(ctx, id, rd.RangeID, bytes.NewReader(sst.Bytes())); err != nil {
			t.Fatalf("ingesting into node %d: %v", id, err)
		}
	}
	equal("scan at t1 after ingest", scanRows(ctx, t, gw, rd.Span(), t1), want1)
	equal("scan at t2 after ingest", scanRows(ctx, t, gw, rd.Span(), t2), want2)
	for _, id := range rd.Replicas {
		equal(fmt.Sprintf("replica %d after ingest", id), storeRows(t, l.Node(id), rd.Span(), t2), want2)
	}
	if n := gw; len(storeRows(t, n, rd.Span(), hlc.MaxTimestamp)) != 0 {
		t.Errorf("ingesting into replicas left rows on gateway %d", n.ID)
	}

	if err := gw.ClearSpanOn(ctx, rd.Replicas, rd.Span()); err != nil {
		t.Fatal(err)
	}
	equal("scan after second clear", scanRows(ctx, t, gw, rd.Span(), t2), map[string]string{})
}

// TestIngestRefused checks that a replica that cannot ingest reports an
// error to the sender rather than leaving it waiting, and keeps its data.
func TestIngestRefused(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	l := startLocal(t, t.TempDir())
	_, tables := createMovr(t, l, "movr")
	key := rowKey(tables["vehicles"].ID, "seattle", 7)
	rd := rangeOf(t, l, key)
	gw := nonReplica(t, l, rd)
	if err := gw.Write(ctx, []cluster.Op{put(key, "kept")}); err != nil {
		t.Fatal(err)
	}
	target := l.Node(rd.Leaseholder)

	// Not an sstable: several chunks of garbage.
	garbage := bytes.Repeat([]byte("not an sstable "), 300_000)
	if err := gw.IngestTo(ctx, target.ID, rd.RangeID, bytes.NewReader(garbage)); err == nil {
		t.Fatal("ingesting garbage succeeded")
	}

	// The replica cannot stage the file: its scratch directory is gone.
	var sst bytes.Buffer
	if _, err := gw.ExportFrom(ctx, target.ID, mvcc.ExportOptions{Span: rd.Span(), EndTS: gw.Clock.Now()}, &sst); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(target.AuxDir()); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat(sst.Bytes(), (4<<20)/max(sst.Len(), 1)+1)
	if err := gw.IngestTo(ctx, target.ID, rd.RangeID, bytes.NewReader(big)); err == nil {
		t.Fatal("ingesting without a scratch directory succeeded")
	}
	// A source that fails after the whole file, before its end, aborts
	// the ingest: the replica must not ingest what it received.
	if err := os.MkdirAll(target.AuxDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	var whole bytes.Buffer
	w := mvcc.NewSSTWriter(&whole)
	if err := w.Add(key, gw.Clock.Now(), mvcc.EncodeValue([]byte("ingested"))); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	readErr := errors.New("source broke")
	r := &failingReader{data: whole.Bytes(), err: readErr}
	if err := gw.IngestTo(ctx, target.ID, rd.RangeID, r); !errors.Is(err, readErr) {
		t.Fatalf("ingesting from a failing reader: %v, want %v", err, readErr)
	}
	if v, ok := storeGet(t, target, key, hlc.MaxTimestamp); !ok || v != "kept" {
		t.Fatalf("after refused ingests the replica has (%q, %v), want the value from before", v, ok)
	}
	// The same file from a sound source goes in.
	if err := gw.IngestTo(ctx, target.ID, rd.RangeID, bytes.NewReader(whole.Bytes())); err != nil {
		t.Fatal(err)
	}
	if v, _ := storeGet(t, target, key, hlc.MaxTimestamp); v != "ingested" {
		t.Fatalf("after ingesting, the replica has %q", v)
	}
}

type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestReopen closes a cluster and starts it again on the same directory:
// the catalog, the ranges and the data are all still there, and it takes
// writes.
func TestReopen(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	l, err := cluster.StartLocal(ctx, cluster.LocalConfig{Dir: dir, RegionOf: movr.RegionOfKey, CacheSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	db, tables := createMovr(t, l, "movr")
	promo := tables["promo_codes"].ID
	var ops []cluster.Op
	want := map[string]string{}
	for _, c := range movr.Cities {
		k := rowKey(tables["rides"].ID, c.Name, 1)
		ops = append(ops, put(k, c.Name))
		want[string(k)] = c.Name
	}
	pk := keys.AppendString(keys.TablePrefix(promo), "FREE")
	ops = append(ops, put(pk, "free ride"))
	if err := l.Nodes[0].Write(ctx, ops); err != nil {
		t.Fatal(err)
	}
	ts := l.Nodes[0].Clock.Now()
	rangesBefore, err := l.Nodes[0].Meta.Ranges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tablesBefore, err := l.Nodes[0].Meta.TablesOf(ctx, db.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l = startLocal(t, dir)
	meta := l.Nodes[len(l.Nodes)-1].Meta
	if got, err := meta.Database(ctx, "movr"); err != nil || got != db {
		t.Fatalf("after reopening, Database(movr) = %+v, %v; want %+v", got, err, db)
	}
	tablesAfter, err := meta.TablesOf(ctx, db.ID)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(tablesAfter) != fmt.Sprint(tablesBefore) {
		t.Errorf("after reopening, tables = %+v, want %+v", tablesAfter, tablesBefore)
	}
	rangesAfter, err := meta.Ranges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(rangesAfter) != fmt.Sprint(rangesBefore) {
		t.Errorf("after reopening, ranges = %v, want %v", rangesAfter, rangesBefore)
	}
	live, err := meta.LiveNodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(live) != len(l.Nodes) {
		t.Errorf("after reopening, live nodes = %v", live)
	}

	gw := l.Nodes[4]
	got := scanRows(ctx, t, gw, keys.TableSpan(tables["rides"].ID), ts)
	if !maps.Equal(got, want) {
		t.Errorf("after reopening, rides = %v, want %v", got, want)
	}
	if got := scanRows(ctx, t, gw, keys.TableSpan(promo), ts); got[string(pk)] != "free ride" {
		t.Errorf("after reopening, promo codes = %v", got)
	}
	k := rowKey(tables["rides"].ID, "rome", 2)
	if err := gw.Write(ctx, []cluster.Op{put(k, "new")}); err != nil {
		t.Fatal(err)
	}
	if got := scanRows(ctx, t, gw, keys.TableSpan(tables["rides"].ID), gw.Clock.Now()); len(got) != len(want)+1 {
		t.Errorf("after a write on the reopened cluster, %d rides, want %d", len(got), len(want)+1)
	}
	// New ids do not collide with those from before.
	db2, tables2 := createMovr(t, l, "movr2")
	if db2.ID <= tables["promo_codes"].ID {
		t.Errorf("new database id %d reuses an old one (up to %d)", db2.ID, tables["promo_codes"].ID)
	}
	for name, td := range tables2 {
		if td.ID <= db2.ID {
			t.Errorf("new table %s has id %d, not above database %d", name, td.ID, db2.ID)
		}
	}
}

// TestDropDatabase drops one of two databases and checks that its tables
// and ranges are gone and the other's are untouched.
func TestDropDatabase(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	l := startLocal(t, t.TempDir())
	meta := l.Nodes[2].Meta
	dropDB, dropTables := createMovr(t, l, "a")
	keepDB, keepTables := createMovr(t, l, "b")
	keepRanges := map[string]int{}
	wantRanges := 0
	for name, td := range keepTables {
		keepRanges[name] = len(tableRanges(t, meta, td.ID))
	}
	for _, td := range dropTables {
		wantRanges += len(tableRanges(t, meta, td.ID))
	}

	tables, ranges, err := meta.DropDatabase(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) != len(dropTables) || len(ranges) != wantRanges {
		t.Errorf("DropDatabase returned %d tables and %d ranges, want %d and %d", len(tables), len(ranges), len(dropTables), wantRanges)
	}
	if _, err := meta.Database(ctx, "a"); !errors.Is(err, cluster.ErrNotFound) {
		t.Errorf("Database(a) after drop: %v, want ErrNotFound", err)
	}
	if of, err := meta.TablesOf(ctx, dropDB.ID); err != nil || len(of) != 0 {
		t.Errorf("TablesOf(a) after drop = %v, %v", of, err)
	}
	for name, td := range dropTables {
		if _, err := meta.Table(ctx, td.ID); !errors.Is(err, cluster.ErrNotFound) {
			t.Errorf("Table(%s) after drop: %v, want ErrNotFound", name, err)
		}
		if rs := tableRanges(t, meta, td.ID); len(rs) != 0 {
			t.Errorf("table %s keeps %d ranges after drop", name, len(rs))
		}
	}
	dbs, err := meta.Databases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(dbs) != 1 || dbs[0] != keepDB {
		t.Errorf("databases after drop = %v, want only %v", dbs, keepDB)
	}
	for name, td := range keepTables {
		if got := len(tableRanges(t, meta, td.ID)); got != keepRanges[name] {
			t.Errorf("kept table %s has %d ranges, want %d", name, got, keepRanges[name])
		}
	}
	if _, _, err := meta.DropDatabase(ctx, "a"); !errors.Is(err, cluster.ErrNotFound) {
		t.Errorf("dropping a twice: %v, want ErrNotFound", err)
	}
	// The name is free again.
	if _, err := meta.CreateDatabase(ctx, "a", cluster.StatePublic); err != nil {
		t.Errorf("re-creating a dropped database: %v", err)
	}
}
