package cluster_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/cairnbackup/cairn/core/cluster"
	"github.com/cairnbackup/cairn/core/keys"
	"github.com/cairnbackup/cairn/core/workload/movr"
)

// TestPlacement checks the ranges of a movr database: they tile each
// table's span, each has three distinct replicas on live nodes, and each
// city's range is led from, and mostly held in, the city's region.
func TestPlacement(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	l := startLocal(t, t.TempDir())
	_, tables := createMovr(t, l, "movr")
	meta := l.Nodes[0].Meta

	live, err := meta.LiveNodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(live) != len(l.Nodes) {
		t.Fatalf("live nodes = %v, want all %d", live, len(l.Nodes))
	}
	regionOf := func(id int32) string {
		t.Helper()
		n := l.Node(id)
		if n == nil {
			t.Fatalf("no node %d", id)
		}
		r, ok := n.Locality.Get("region")
		if !ok {
			t.Fatalf("node %d has no region: %s", id, n.Locality)
		}
		return r
	}

	for _, mt := range movr.Tables {
		td, ok := tables[mt.Name]
		if !ok {
			t.Fatalf("table %s not created", mt.Name)
		}
		rds := tableRanges(t, meta, td.ID)
		wantRanges := len(movr.SplitPoints(td.ID, mt)) + 1
		if len(rds) != wantRanges {
			t.Fatalf("%s: %d ranges, want %d", mt.Name, len(rds), wantRanges)
		}

		// The ranges tile the table's span: no gap, no overlap.
		span := keys.TableSpan(td.ID)
		if !bytes.Equal(rds[0].Start, span.Key) {
			t.Errorf("%s: first range starts at %s, want %s", mt.Name, keys.Pretty(rds[0].Start), keys.Pretty(span.Key))
		}
		if last := rds[len(rds)-1]; !bytes.Equal(last.End, span.EndKey) {
			t.Errorf("%s: last range ends at %s, want %s", mt.Name, keys.Pretty(last.End), keys.Pretty(span.EndKey))
		}
		for i, rd := range rds {
			if bytes.Compare(rd.Start, rd.End) >= 0 {
				t.Errorf("%s: range %d is empty or inverted: %s", mt.Name, rd.RangeID, keys.PrettySpan(rd.Span()))
			}
			if i > 0 && !bytes.Equal(rds[i-1].End, rd.Start) {
				t.Errorf("%s: range %d ends at %s but range %d starts at %s",
					mt.Name, rds[i-1].RangeID, keys.Pretty(rds[i-1].End), rd.RangeID, keys.Pretty(rd.Start))
			}

			// Three distinct replicas on live nodes, one of them the leaseholder.
			if len(rd.Replicas) != 3 {
				t.Errorf("range %d: replicas %v, want 3", rd.RangeID, rd.Replicas)
			}
			seen := map[int32]bool{}
			for _, id := range rd.Replicas {
				if seen[id] {
					t.Errorf("range %d: replica %d listed twice in %v", rd.RangeID, id, rd.Replicas)
				}
				seen[id] = true
				if !live[id] {
					t.Errorf("range %d: replica %d is not live", rd.RangeID, id)
				}
			}
			if !seen[rd.Leaseholder] {
				t.Errorf("range %d: leaseholder %d is not among replicas %v", rd.RangeID, rd.Leaseholder, rd.Replicas)
			}
		}

		if !mt.PerCity {
			continue
		}
		for _, c := range movr.Cities {
			rd := rangeOf(t, l, cityPrefix(td.ID, c.Name))
			if !bytes.Equal(rd.Start, cityPrefix(td.ID, c.Name)) {
				t.Errorf("%s/%s: range %d starts at %s, want the city's prefix", mt.Name, c.Name, rd.RangeID, keys.Pretty(rd.Start))
			}
			// The range holds the city's rows and nothing of another city.
			if !rd.Span().ContainsKey(rowKey(td.ID, c.Name, 1<<63)) {
				t.Errorf("%s/%s: range %d does not hold the city's rows", mt.Name, c.Name, rd.RangeID)
			}
			if r := regionOf(rd.Leaseholder); r != c.Region {
				t.Errorf("%s/%s: leaseholder %d is in %s, want %s", mt.Name, c.Name, rd.Leaseholder, r, c.Region)
			}
			inRegion := 0
			for _, id := range rd.Replicas {
				if regionOf(id) == c.Region {
					inRegion++
				}
			}
			if inRegion < 2 {
				t.Errorf("%s/%s: %d of replicas %v in %s, want at least 2", mt.Name, c.Name, inRegion, rd.Replicas, c.Region)
			}
		}
	}

	// Leases of a region's cities spread over more than one of its nodes.
	holders := map[string]map[int32]bool{}
	for _, mt := range movr.Tables {
		if !mt.PerCity {
			continue
		}
		for _, c := range movr.Cities {
			rd := rangeOf(t, l, cityPrefix(tables[mt.Name].ID, c.Name))
			if holders[c.Region] == nil {
				holders[c.Region] = map[int32]bool{}
			}
			holders[c.Region][rd.Leaseholder] = true
		}
	}
	for region, h := range holders {
		if len(h) < 2 {
			t.Errorf("every lease of %s is on one node: %v", region, h)
		}
	}
}

// TestCatalog covers database and table descriptors and the refusal of a
// duplicate name.
func TestCatalog(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	l := startLocal(t, t.TempDir())
	meta := l.Nodes[0].Meta
	db, tables := createMovr(t, l, "movr")

	if _, err := meta.CreateDatabase(ctx, "movr", cluster.StatePublic); !errors.Is(err, cluster.ErrAlreadyExists) {
		t.Fatalf("creating movr twice: %v, want ErrAlreadyExists", err)
	}
	if _, err := meta.CreateDatabase(ctx, "", cluster.StatePublic); err == nil {
		t.Fatal("creating a database with an empty name succeeded")
	}
	got, err := meta.Database(ctx, "movr")
	if err != nil {
		t.Fatal(err)
	}
	if got != db {
		t.Fatalf("Database(movr) = %+v, want %+v", got, db)
	}
	of, err := meta.TablesOf(ctx, db.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(of) != len(movr.Tables) {
		t.Fatalf("TablesOf = %d tables, want %d", len(of), len(movr.Tables))
	}
	for _, td := range of {
		want := tables[td.Name]
		if td.ID != want.ID || td.ParentID != db.ID || td.State != cluster.StatePublic {
			t.Errorf("table %s = %+v, want id %d in db %d, public", td.Name, td, want.ID, db.ID)
		}
		one, err := meta.Table(ctx, td.ID)
		if err != nil {
			t.Fatal(err)
		}
		if one.Name != td.Name {
			t.Errorf("Table(%d) = %s, want %s", td.ID, one.Name, td.Name)
		}
	}
	if _, err := meta.Database(ctx, "nope"); !errors.Is(err, cluster.ErrNotFound) {
		t.Fatalf("Database(nope): %v, want ErrNotFound", err)
	}

	// Split keys in any order, with a duplicate, still split at each.
	place, err := l.Placement(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var splits [][]byte
	for _, c := range []string{"rome", "boston", "paris", "boston"} {
		splits = append(splits, cityPrefix(0, c)[keys.TablePrefixLen:])
	}
	created, err := meta.CreateTables(ctx, db, []cluster.TableDesc{{Name: "unsorted", SplitKeys: splits}}, place)
	if err != nil {
		t.Fatal(err)
	}
	rds := tableRanges(t, meta, created[0].ID)
	var starts []string
	for _, rd := range rds {
		starts = append(starts, keys.Pretty(rd.Start))
	}
	if len(rds) != 4 {
		t.Errorf("table split at rome, boston, paris, boston has ranges starting at %v, want 4 ranges", starts)
	}

	if err := meta.SetDatabaseState(ctx, "movr", cluster.StateAdding); err != nil {
		t.Fatal(err)
	}
	of, err = meta.TablesOf(ctx, db.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, td := range of {
		if td.State != cluster.StateAdding {
			t.Errorf("table %s is %s after SetDatabaseState(adding)", td.Name, td.State)
		}
	}
}
