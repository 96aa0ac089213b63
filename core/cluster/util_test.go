package cluster_test

import (
	"context"
	"testing"

	"github.com/cairnbackup/cairn/core/cluster"
	"github.com/cairnbackup/cairn/core/hlc"
	"github.com/cairnbackup/cairn/core/keys"
	"github.com/cairnbackup/cairn/core/spans"
	"github.com/cairnbackup/cairn/core/workload/movr"
)

// startLocal starts a 9-node cluster in dir, placing movr's city ranges in
// their regions, and closes it when the test ends.
func startLocal(t *testing.T, dir string) *cluster.Local {
	t.Helper()
	l, err := cluster.StartLocal(t.Context(), cluster.LocalConfig{
		Dir: dir, RegionOf: movr.RegionOfKey, CacheSize: 1 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	return l
}

// createMovr creates database name with movr's tables split per city, the
// way core/server does, and returns the tables by name.
func createMovr(t *testing.T, l *cluster.Local, name string) (cluster.DatabaseDesc, map[string]cluster.TableDesc) {
	t.Helper()
	ctx := t.Context()
	meta := l.Nodes[0].Meta
	db, err := meta.CreateDatabase(ctx, name, cluster.StatePublic)
	if err != nil {
		t.Fatal(err)
	}
	var tables []cluster.TableDesc
	for _, mt := range movr.Tables {
		td := cluster.TableDesc{Name: mt.Name, PrimaryKey: mt.PrimaryKey, State: cluster.StatePublic}
		for _, c := range mt.Columns {
			td.Columns = append(td.Columns, cluster.Column{Name: c.Name, Type: c.Type})
		}
		for _, sp := range movr.SplitPoints(0, mt) {
			td.SplitKeys = append(td.SplitKeys, sp[keys.TablePrefixLen:])
		}
		tables = append(tables, td)
	}
	place, err := l.Placement(ctx)
	if err != nil {
		t.Fatal(err)
	}
	created, err := meta.CreateTables(ctx, db, tables, place)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range l.Nodes {
		n.InvalidateRanges()
	}
	out := map[string]cluster.TableDesc{}
	for _, td := range created {
		out[td.Name] = td
	}
	return db, out
}

// rowKey is the key of row id of city in a per-city table.
func rowKey(tableID uint32, city string, id uint64) []byte {
	return keys.AppendUint(keys.AppendString(keys.TablePrefix(tableID), city), id)
}

// cityPrefix is the split key of city's range in a per-city table.
func cityPrefix(tableID uint32, city string) []byte {
	return keys.AppendString(keys.TablePrefix(tableID), city)
}

// rangeOf returns the range descriptor holding key.
func rangeOf(t *testing.T, l *cluster.Local, key []byte) cluster.RangeDesc {
	t.Helper()
	rds, err := l.Nodes[0].Meta.Ranges(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, rd := range rds {
		if rd.Span().ContainsKey(key) {
			return rd
		}
	}
	t.Fatalf("no range holds %s", keys.Pretty(key))
	return cluster.RangeDesc{}
}

// tableRanges returns the ranges starting inside table id's span, in key
// order.
func tableRanges(t *testing.T, meta *cluster.Meta, id uint32) []cluster.RangeDesc {
	t.Helper()
	rds, err := meta.Ranges(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	span := keys.TableSpan(id)
	var out []cluster.RangeDesc
	for _, rd := range rds {
		if span.ContainsKey(rd.Start) {
			out = append(out, rd)
		}
	}
	return out
}

// nonReplica returns a node that holds no replica of rd.
func nonReplica(t *testing.T, l *cluster.Local, rd cluster.RangeDesc) *cluster.Node {
	t.Helper()
	for _, n := range l.Nodes {
		if !isReplica(rd, n.ID) {
			return n
		}
	}
	t.Fatalf("every node holds a replica of range %d", rd.RangeID)
	return nil
}

func isReplica(rd cluster.RangeDesc, id int32) bool {
	for _, r := range rd.Replicas {
		if r == id {
			return true
		}
	}
	return false
}

// followers returns rd's replicas other than its leaseholder.
func followers(rd cluster.RangeDesc) []int32 {
	var out []int32
	for _, r := range rd.Replicas {
		if r != rd.Leaseholder {
			out = append(out, r)
		}
	}
	return out
}

// storeRows reads span at ts directly from node n's own store.
func storeRows(t *testing.T, n *cluster.Node, span spans.Span, ts hlc.Timestamp) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := n.Store.Scan(t.Context(), span, ts, func(k, v []byte) error {
		out[string(k)] = string(v)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// scanRows reads span at ts through n as a gateway.
func scanRows(ctx context.Context, t *testing.T, n *cluster.Node, span spans.Span, ts hlc.Timestamp) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := n.Scan(ctx, span, ts, func(k, v []byte) error {
		out[string(k)] = string(v)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// storeGet reads key at ts from node n's own store.
func storeGet(t *testing.T, n *cluster.Node, key []byte, ts hlc.Timestamp) (string, bool) {
	t.Helper()
	v, ok, err := n.Store.Get(key, ts)
	if err != nil {
		t.Fatal(err)
	}
	return string(v), ok
}

func put(key []byte, value string) cluster.Op { return cluster.Op{Key: key, Value: []byte(value)} }
