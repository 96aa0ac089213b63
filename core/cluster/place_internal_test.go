package cluster

import (
	"fmt"
	"testing"

	"github.com/cairnbackup/cairn/sdk/locality"
)

func nodesIn(regions ...string) []NodeDesc {
	var out []NodeDesc
	for i, r := range regions {
		out = append(out, NodeDesc{ID: int32(i + 1), Locality: fmt.Sprintf("region=%s,zone=%s-%c", r, r, 'a'+i)})
	}
	return out
}

// TestPlaceFewNodes covers placement over clusters smaller or more lopsided
// than the default nine nodes: replicas are always distinct, as many as
// there are nodes up to the replication factor, and the leaseholder sits in
// the key's region whenever a node there exists.
func TestPlaceFewNodes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		nodes    []NodeDesc
		region   string
		want     int
		wantHome int // replicas in region, at least
	}{
		{"one node", nodesIn("east"), "east", 1, 1},
		{"two nodes one region", nodesIn("east", "east"), "east", 2, 2},
		{"three nodes one region", nodesIn("east", "east", "east"), "east", 3, 3},
		{"home has one node", nodesIn("east", "west", "west", "west"), "east", 3, 1},
		{"region without nodes", nodesIn("west", "west", "europe"), "east", 3, 0},
		{"two regions", nodesIn("east", "east", "east", "west"), "east", 3, 2},
		{"nine nodes", nodesIn("east", "east", "east", "west", "west", "west", "eu", "eu", "eu"), "west", 3, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Placement{Nodes: tc.nodes, DefaultRegion: "east", RegionOf: func([]byte) (string, bool) { return tc.region, true }}
			regionOf := map[int32]string{}
			for _, n := range tc.nodes {
				loc, err := locality.Parse(n.Locality)
				if err != nil {
					t.Fatal(err)
				}
				regionOf[n.ID], _ = loc.Get("region")
			}
			// Many keys, so many hash seeds.
			for k := range 200 {
				key := []byte(fmt.Sprint("key", k))
				replicas, lh := p.place(key)
				if len(replicas) != tc.want {
					t.Fatalf("%s: replicas %v, want %d", key, replicas, tc.want)
				}
				seen := map[int32]bool{}
				home := 0
				for _, id := range replicas {
					if seen[id] {
						t.Fatalf("%s: replica %d twice in %v", key, id, replicas)
					}
					seen[id] = true
					if regionOf[id] == tc.region {
						home++
					}
				}
				if !seen[lh] {
					t.Fatalf("%s: leaseholder %d not in %v", key, lh, replicas)
				}
				if home < tc.wantHome {
					t.Fatalf("%s: %d replicas of %v in %s, want at least %d", key, home, replicas, tc.region, tc.wantHome)
				}
				if tc.wantHome > 0 && regionOf[lh] != tc.region {
					t.Fatalf("%s: leaseholder %d in %s, want %s", key, lh, regionOf[lh], tc.region)
				}
			}
		})
	}
}

// TestCreateTablesWithoutNodes checks that a placement with no candidate
// is refused with an error, not a panic, and creates nothing.
func TestCreateTablesWithoutNodes(t *testing.T) {
	t.Parallel()
	m := NewMeta(nil) // never reached: the placement is checked first
	_, err := m.CreateTables(t.Context(), DatabaseDesc{ID: 100, Name: "d"}, []TableDesc{{Name: "t"}}, Placement{})
	if err == nil {
		t.Fatal("creating tables with no nodes to place them on succeeded")
	}
}
