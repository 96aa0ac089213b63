package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"
	"sort"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cairnbackup/cairn/core/keys"
	"github.com/cairnbackup/cairn/sdk/locality"
)

// Placement decides where a new range's replicas live.
type Placement struct {
	// Nodes are the candidates, usually the live nodes.
	Nodes []NodeDesc
	// RegionOf names the region a key belongs in; ok=false places it in
	// DefaultRegion.
	RegionOf      func(key []byte) (region string, ok bool)
	DefaultRegion string
	// Replicas per range (3 by default, fewer when there are fewer nodes).
	Replicas int
}

// place picks the replicas and the leaseholder of a range starting at key:
// as many replicas as possible in the key's region, one per zone, the rest
// in other regions; the leaseholder is an in-region replica chosen by hash
// so leases spread over the region's nodes.
func (p Placement) place(key []byte) ([]int32, int32) {
	n := p.Replicas
	if n <= 0 {
		n = 3
	}
	if n > len(p.Nodes) {
		n = len(p.Nodes)
	}
	region := p.DefaultRegion
	if p.RegionOf != nil {
		if r, ok := p.RegionOf(key); ok {
			region = r
		}
	}
	h := fnv.New32a()
	h.Write(key)
	seed := int(h.Sum32())
	var home, away []NodeDesc
	for _, nd := range p.Nodes {
		loc, _ := locality.Parse(nd.Locality)
		if r, _ := loc.Get("region"); r == region {
			home = append(home, nd)
		} else {
			away = append(away, nd)
		}
	}
	sort.Slice(home, func(i, j int) bool { return home[i].ID < home[j].ID })
	sort.Slice(away, func(i, j int) bool { return away[i].ID < away[j].ID })
	var replicas []int32
	// At most n-1 in the home region when other regions exist, so one
	// replica sits elsewhere.
	inHome := n
	if len(away) > 0 && n > 1 {
		inHome = n - 1
	}
	for i := 0; i < len(home) && len(replicas) < inHome; i++ {
		replicas = append(replicas, home[(seed+i)%len(home)].ID)
	}
	for i := 0; i < len(away) && len(replicas) < n; i++ {
		replicas = append(replicas, away[(seed+i)%len(away)].ID)
	}
	for i := 0; len(replicas) < n && i < len(home); i++ {
		id := home[(seed+i)%len(home)].ID
		if !containsID(replicas, id) {
			replicas = append(replicas, id)
		}
	}
	return replicas, replicas[0]
}

func containsID(ids []int32, id int32) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// CreateDatabase adds a database in the given state; ErrAlreadyExists if
// the name is taken.
func (m *Meta) CreateDatabase(ctx context.Context, name, state string) (DatabaseDesc, error) {
	if name == "" {
		return DatabaseDesc{}, fmt.Errorf("creating database: empty name")
	}
	id, err := m.nextID(ctx, descIDKey, 1, 100)
	if err != nil {
		return DatabaseDesc{}, fmt.Errorf("creating database %q: %w", name, err)
	}
	d := DatabaseDesc{ID: uint32(id), Name: name, State: state}
	b, _ := json.Marshal(d)
	txn, err := m.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(dbKey(name)), "=", 0)).
		Then(clientv3.OpPut(dbKey(name), string(b))).Commit()
	if err != nil {
		return DatabaseDesc{}, fmt.Errorf("creating database %q: %w", name, err)
	}
	if !txn.Succeeded {
		return DatabaseDesc{}, fmt.Errorf("creating database %q: %w", name, ErrAlreadyExists)
	}
	return d, nil
}

// CreateTables adds tables to db with fresh ids and creates their ranges,
// split at each table's SplitKeys and placed by p. The returned
// descriptors carry the ids.
func (m *Meta) CreateTables(ctx context.Context, db DatabaseDesc, tables []TableDesc, p Placement) ([]TableDesc, error) {
	if len(tables) == 0 {
		return nil, nil
	}
	if len(p.Nodes) == 0 {
		return nil, fmt.Errorf("creating tables in %q: placing ranges: no candidate nodes", db.Name)
	}
	first, err := m.nextID(ctx, descIDKey, int64(len(tables)), 100)
	if err != nil {
		return nil, fmt.Errorf("creating tables in %q: %w", db.Name, err)
	}
	out := make([]TableDesc, len(tables))
	for i, t := range tables {
		t.ID = uint32(first) + uint32(i)
		t.ParentID = db.ID
		if t.State == "" {
			t.State = db.State
		}
		out[i] = t
		var ranges []RangeDesc
		span := keys.TableSpan(t.ID)
		// Split keys in any order, duplicates and keys outside the span
		// aside, each start a range; the check below needs them sorted.
		splits := make([][]byte, 0, len(t.SplitKeys))
		for _, sk := range t.SplitKeys {
			splits = append(splits, append(keys.TablePrefix(t.ID), sk...))
		}
		slices.SortFunc(splits, bytes.Compare)
		bounds := [][]byte{span.Key}
		for _, k := range splits {
			if string(k) > string(bounds[len(bounds)-1]) && string(k) < string(span.EndKey) {
				bounds = append(bounds, k)
			}
		}
		bounds = append(bounds, span.EndKey)
		rid, err := m.nextID(ctx, rangeIDKey, int64(len(bounds)-1), 1)
		if err != nil {
			return nil, err
		}
		for j := 0; j+1 < len(bounds); j++ {
			// Place by the first key that names a city: the split key itself.
			replicas, lh := p.place(bounds[j])
			ranges = append(ranges, RangeDesc{RangeID: rid + int64(j), Start: bounds[j], End: bounds[j+1], Replicas: replicas, Leaseholder: lh})
		}
		ops := []clientv3.Op{}
		b, _ := json.Marshal(t)
		ops = append(ops, clientv3.OpPut(tableKey(t.ID), string(b)))
		for _, r := range ranges {
			rb, _ := json.Marshal(r)
			ops = append(ops, clientv3.OpPut(rangeKey(r.Start), string(rb)))
		}
		for len(ops) > 0 {
			n := min(len(ops), 100)
			if _, err := m.cli.Txn(ctx).Then(ops[:n]...).Commit(); err != nil {
				return nil, fmt.Errorf("creating table %q: %w", t.Name, err)
			}
			ops = ops[n:]
		}
	}
	return out, nil
}

// SetDatabaseState moves a database and all its tables to state, e.g. to
// publish a restored database.
func (m *Meta) SetDatabaseState(ctx context.Context, name, state string) error {
	d, err := m.Database(ctx, name)
	if err != nil {
		return err
	}
	tables, err := m.TablesOf(ctx, d.ID)
	if err != nil {
		return err
	}
	d.State = state
	b, _ := json.Marshal(d)
	ops := []clientv3.Op{clientv3.OpPut(dbKey(name), string(b))}
	for _, t := range tables {
		t.State = state
		tb, _ := json.Marshal(t)
		ops = append(ops, clientv3.OpPut(tableKey(t.ID), string(tb)))
	}
	for len(ops) > 0 {
		n := min(len(ops), 100)
		if _, err := m.cli.Txn(ctx).Then(ops[:n]...).Commit(); err != nil {
			return fmt.Errorf("setting database %q to %s: %w", name, state, err)
		}
		ops = ops[n:]
	}
	return nil
}

// DropDatabase removes a database, its tables and their range
// descriptors from the catalog. The caller clears the data.
func (m *Meta) DropDatabase(ctx context.Context, name string) ([]TableDesc, []RangeDesc, error) {
	d, err := m.Database(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	tables, err := m.TablesOf(ctx, d.ID)
	if err != nil {
		return nil, nil, err
	}
	ranges, err := m.Ranges(ctx)
	if err != nil {
		return nil, nil, err
	}
	var dropped []RangeDesc
	ops := []clientv3.Op{clientv3.OpDelete(dbKey(name))}
	for _, t := range tables {
		ops = append(ops, clientv3.OpDelete(tableKey(t.ID)))
		span := keys.TableSpan(t.ID)
		for _, r := range ranges {
			if span.ContainsKey(r.Start) {
				dropped = append(dropped, r)
				ops = append(ops, clientv3.OpDelete(rangeKey(r.Start)))
			}
		}
	}
	for len(ops) > 0 {
		n := min(len(ops), 100)
		if _, err := m.cli.Txn(ctx).Then(ops[:n]...).Commit(); err != nil {
			return nil, nil, fmt.Errorf("dropping database %q: %w", name, err)
		}
		ops = ops[n:]
	}
	return tables, dropped, nil
}
