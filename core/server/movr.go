package server

import (
	"context"
	"fmt"

	"github.com/cairnbackup/cairn/core/cluster"
	"github.com/cairnbackup/cairn/core/fingerprint"
	"github.com/cairnbackup/cairn/core/hlc"
	"github.com/cairnbackup/cairn/core/keys"
	"github.com/cairnbackup/cairn/core/workload/movr"
)

// KV adapts a node's write path to the movr workload.
type KV struct{ Node *cluster.Node }

// Write implements movr.KV.
func (k KV) Write(ctx context.Context, ops []movr.Op) error {
	out := make([]cluster.Op, len(ops))
	for i, o := range ops {
		out[i] = cluster.Op{Key: o.Key, Value: o.Value, Delete: o.Delete}
	}
	return k.Node.Write(ctx, out)
}

// CreateMovr creates database name with movr's tables, their ranges split
// per city with leaseholders in each city's region, and returns the table
// ids by name.
func (s *Server) CreateMovr(ctx context.Context, name string) (map[string]uint32, error) {
	gw := s.Gateway().Node
	db, err := gw.Meta.CreateDatabase(ctx, name, cluster.StatePublic)
	if err != nil {
		return nil, err
	}
	var tables []cluster.TableDesc
	for _, t := range movr.Tables {
		td := cluster.TableDesc{Name: t.Name, PrimaryKey: t.PrimaryKey, State: cluster.StatePublic}
		for _, c := range t.Columns {
			td.Columns = append(td.Columns, cluster.Column{Name: c.Name, Type: c.Type})
		}
		for _, sp := range movr.SplitPoints(0, t) {
			td.SplitKeys = append(td.SplitKeys, sp[keys.TablePrefixLen:])
		}
		tables = append(tables, td)
	}
	place, err := s.placement(ctx)
	if err != nil {
		return nil, err
	}
	place.RegionOf = movr.RegionOfKey
	created, err := gw.Meta.CreateTables(ctx, db, tables, place)
	if err != nil {
		return nil, err
	}
	ids := map[string]uint32{}
	for _, t := range created {
		ids[t.Name] = t.ID
	}
	for _, n := range s.Nodes {
		n.Node.InvalidateRanges()
	}
	return ids, nil
}

// TableIDs returns the ids of database name's tables, by table name.
func (s *Server) TableIDs(ctx context.Context, name string) (map[string]uint32, error) {
	meta := s.Gateway().Node.Meta
	db, err := meta.Database(ctx, name)
	if err != nil {
		return nil, err
	}
	tables, err := meta.TablesOf(ctx, db.ID)
	if err != nil {
		return nil, err
	}
	ids := map[string]uint32{}
	for _, t := range tables {
		ids[t.Name] = t.ID
	}
	return ids, nil
}

// Fingerprint hashes every row of database name visible at ts,
// independently of table ids, so a restored copy fingerprints equal to its
// source.
func (s *Server) Fingerprint(ctx context.Context, name string, ts hlc.Timestamp) (fingerprint.Fingerprint, error) {
	ids, err := s.TableIDs(ctx, name)
	if err != nil {
		return fingerprint.Fingerprint{}, err
	}
	per := map[string]fingerprint.Fingerprint{}
	for tname, id := range ids {
		fp, err := fingerprint.Table(ctx, s.Gateway().Node, id, ts)
		if err != nil {
			return fingerprint.Fingerprint{}, fmt.Errorf("fingerprinting %s.%s: %w", name, tname, err)
		}
		per[tname] = fp
	}
	return fingerprint.Combine(per), nil
}
