package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"google.golang.org/grpc"

	"github.com/cairnbackup/cairn/core/etcdutil"
)

// DefaultRegions are the regions of a local cluster.
var DefaultRegions = []string{"us-east1", "us-west1", "europe-west1"}

// LocalConfig configures an in-process cluster.
type LocalConfig struct {
	// Dir holds etcd's data and every node's directories. Starting again
	// on the same Dir reopens the same cluster.
	Dir string
	// Nodes defaults to 9, spread evenly over Regions, zones a, b, c...
	Nodes   int
	Regions []string
	Logger  *slog.Logger
	// CacheSize per node's Pebble store.
	CacheSize int64
	// RegionOf places new ranges (see Placement).
	RegionOf    func(key []byte) (string, bool)
	LivenessTTL int
	// Services registers processors on each node.
	Services func(s *grpc.Server, n *Node)
	// GCInterval and GCTTL configure every node's periodic garbage
	// collection (see Config); zero leaves it off.
	GCInterval, GCTTL time.Duration
}

// Local is an in-process cluster: one embedded etcd member and N nodes
// talking to each other over loopback gRPC.
type Local struct {
	Nodes []*Node
	Etcd  *etcdutil.Server
	cfg   LocalConfig
}

// StartLocal starts (or reopens) an in-process cluster.
func StartLocal(ctx context.Context, cfg LocalConfig) (*Local, error) {
	if cfg.Nodes <= 0 {
		cfg.Nodes = 9
	}
	if len(cfg.Regions) == 0 {
		cfg.Regions = DefaultRegions
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	etcd, err := etcdutil.StartEmbedded(ctx, filepath.Join(cfg.Dir, "etcd"), cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("starting etcd: %w", err)
	}
	l := &Local{Etcd: etcd, cfg: cfg}
	perRegion := (cfg.Nodes + len(cfg.Regions) - 1) / len(cfg.Regions)
	for i := 0; i < cfg.Nodes; i++ {
		id := int32(i + 1)
		region := cfg.Regions[i/perRegion]
		zone := fmt.Sprintf("%s-%c", region, 'a'+i%perRegion)
		dir := filepath.Join(cfg.Dir, fmt.Sprintf("n%d", id))
		n, err := Start(ctx, Config{
			ID: id, Locality: fmt.Sprintf("region=%s,zone=%s", region, zone),
			StoreDir: filepath.Join(dir, "store"), ExternalIODir: filepath.Join(dir, "extern"),
			AuxDir: filepath.Join(dir, "aux"), Etcd: etcd.Client, Logger: cfg.Logger,
			CacheSize: cfg.CacheSize, LivenessTTL: cfg.LivenessTTL, Services: cfg.Services,
			GCInterval: cfg.GCInterval, GCTTL: cfg.GCTTL,
		})
		if err != nil {
			l.Close()
			return nil, err
		}
		l.Nodes = append(l.Nodes, n)
	}
	return l, nil
}

// Node returns the node with id.
func (l *Local) Node(id int32) *Node {
	for _, n := range l.Nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// Placement returns the placement policy for new ranges over the live
// nodes.
func (l *Local) Placement(ctx context.Context) (Placement, error) {
	return PlacementFor(ctx, l.Nodes[0].Meta, l.cfg.RegionOf, l.cfg.Regions[0])
}

// PlacementFor builds a placement over the live nodes recorded in etcd.
func PlacementFor(ctx context.Context, m *Meta, regionOf func([]byte) (string, bool), defaultRegion string) (Placement, error) {
	nodes, err := m.Nodes(ctx)
	if err != nil {
		return Placement{}, err
	}
	live, err := m.LiveNodes(ctx)
	if err != nil {
		return Placement{}, err
	}
	var cands []NodeDesc
	for _, n := range nodes {
		if live[n.ID] {
			cands = append(cands, n)
		}
	}
	if len(cands) == 0 {
		return Placement{}, errors.New("placing ranges: no live nodes")
	}
	return Placement{Nodes: cands, RegionOf: regionOf, DefaultRegion: defaultRegion, Replicas: 3}, nil
}

// Close stops every node and etcd.
func (l *Local) Close() error {
	for _, n := range l.Nodes {
		n.Stop()
	}
	if l.Etcd != nil {
		return l.Etcd.Close()
	}
	return nil
}
