package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/cairnbackup/cairn/core/backup"
	"github.com/cairnbackup/cairn/core/cluster"
	"github.com/cairnbackup/cairn/core/etcdutil"
	"github.com/cairnbackup/cairn/core/jobs"
	"github.com/cairnbackup/cairn/core/pluginhost"
	"github.com/cairnbackup/cairn/core/restore"
	"github.com/cairnbackup/cairn/core/server/serverpb"
)

// NodeConfig configures one node of a cluster that runs one node per OS
// process (cairn start).
type NodeConfig struct {
	// ID is the node's id; 0 allocates one from a counter in etcd. Either
	// way the id is written to Dir/node-id, and a restart on the same Dir
	// must keep it.
	ID int32
	// Dir holds the node's store, aux files, node id and (when embedded)
	// its etcd member.
	Dir string
	// ExternalIODir is the root of nodelocal://<id>/; default Dir/extern.
	ExternalIODir string
	Locality      string
	// ListenAddr serves node-to-node gRPC and the gateway; default
	// 127.0.0.1:0.
	ListenAddr string
	// HTTPAddr serves /metrics; empty serves no HTTP.
	HTTPAddr string
	// EtcdEndpoints connects to an external etcd cluster; when empty the
	// node embeds a member configured by the Etcd* fields below (a
	// single-member cluster when EtcdInitialCluster is empty).
	EtcdEndpoints                                              []string
	EtcdName, EtcdClientAddr, EtcdPeerAddr, EtcdInitialCluster string
	// ServerCreds and ClientCreds secure node-to-node gRPC; nil is
	// plaintext.
	ServerCreds, ClientCreds credentials.TransportCredentials
	PluginDir                string
	Logger                   *slog.Logger
	AdoptInterval            time.Duration
	CheckpointEvery          time.Duration
	LivenessTTL              int
	Regions                  []string
	RegionOf                 func(key []byte) (string, bool)
	ExecutionPolicy          string
	// Knobs are testing hooks of the node's backup environment.
	Knobs backup.Knobs
}

// Node is one running node of a one-node-per-process cluster: the cluster
// node, its job registry, plugins, gateway service and metrics. It embeds
// a Server over this single node, so statements run here as on an
// in-process cluster, with this node as the gateway.
type Node struct {
	*Server
	Runtime *NodeRuntime
	// Etcd is the embedded member, nil with an external etcd.
	Etcd *etcdutil.Server

	etcdCli  *clientv3.Client
	httpLis  net.Listener
	httpSrv  *http.Server
	metrics  *nodeMetrics
	draining atomic.Bool
	drainMu  sync.Mutex
	closed   sync.Once
}

func drainingKey(id int32) string { return fmt.Sprintf("%sdraining/%010d", cluster.Prefix, id) }

const nodeIDCounterKey = cluster.Prefix + "nodes-next-id"

// StartNode starts etcd (embedded or connected), then the node, its
// registry and its services, and returns once the node is registered and
// adopting jobs. The caller must Close the Node.
func StartNode(ctx context.Context, cfg NodeConfig) (_ *Node, retErr error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Dir == "" {
		return nil, errors.New("starting node: empty store directory")
	}
	if cfg.ExecutionPolicy == "" {
		cfg.ExecutionPolicy = "default"
	}
	if cfg.AdoptInterval <= 0 {
		cfg.AdoptInterval = time.Second
	}
	if len(cfg.Regions) == 0 {
		cfg.Regions = cluster.DefaultRegions
	}
	if cfg.ExternalIODir == "" {
		cfg.ExternalIODir = filepath.Join(cfg.Dir, "extern")
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("starting node: %w", err)
	}
	restore.Placer = cfg.RegionOf
	nd := &Node{}
	var cleanups []func()
	defer func() {
		if retErr != nil {
			for i := len(cleanups) - 1; i >= 0; i-- {
				cleanups[i]()
			}
		}
	}()
	if len(cfg.EtcdEndpoints) > 0 {
		cli, err := etcdutil.Connect(ctx, cfg.EtcdEndpoints)
		if err != nil {
			return nil, err
		}
		nd.etcdCli = cli
		cleanups = append(cleanups, func() { cli.Close() })
	} else {
		e, err := etcdutil.StartMember(ctx, etcdutil.MemberConfig{
			Name: cfg.EtcdName, Dir: filepath.Join(cfg.Dir, "etcd"), ClientAddr: cfg.EtcdClientAddr,
			PeerAddr: cfg.EtcdPeerAddr, InitialCluster: cfg.EtcdInitialCluster, Logger: cfg.Logger,
		})
		if err != nil {
			return nil, err
		}
		nd.Etcd, nd.etcdCli = e, e.Client
		cleanups = append(cleanups, func() { e.Close() })
	}
	id, err := resolveNodeID(ctx, nd.etcdCli, cfg.Dir, cfg.ID)
	if err != nil {
		return nil, err
	}
	cfg.ID = id
	nd.metrics = newNodeMetrics(id)

	var host *pluginhost.Host
	var env *backup.Env
	var hostErr error
	n, err := cluster.Start(ctx, cluster.Config{
		ID: id, Locality: cfg.Locality, StoreDir: filepath.Join(cfg.Dir, "store"),
		ExternalIODir: cfg.ExternalIODir, AuxDir: filepath.Join(cfg.Dir, "aux"),
		ListenAddr: cfg.ListenAddr, Etcd: nd.etcdCli, Logger: cfg.Logger, LivenessTTL: cfg.LivenessTTL,
		ServerCreds: cfg.ServerCreds, ClientCreds: cfg.ClientCreds,
		ServerOptions: []grpc.ServerOption{grpc.ChainStreamInterceptor(nd.metrics.streamInterceptor)},
		Services: func(s *grpc.Server, n *cluster.Node) {
			host, hostErr = pluginhost.New(ctx, pluginhost.Config{Dir: cfg.PluginDir, Logger: n.Logger, SpoolDir: n.AuxDir()})
			if hostErr != nil {
				host, _ = pluginhost.New(ctx, pluginhost.Config{})
			}
			env = backup.NewEnv(n, host)
			env.Knobs = cfg.Knobs
			if p, ok := host.Policy(cfg.ExecutionPolicy); ok {
				env.Policy = p
			}
			backup.RegisterProcessor(s, env)
			restore.RegisterProcessor(s, env)
			serverpb.RegisterGatewayServer(s, &gateway{nd: nd})
		},
	})
	if host != nil {
		cleanups = append(cleanups, func() { host.Close() })
	}
	if err != nil {
		return nil, err
	}
	cleanups = append(cleanups, n.Stop)
	if hostErr != nil {
		return nil, fmt.Errorf("starting the plugins of node %d: %w", id, hostErr)
	}
	// A restarted node is no longer draining.
	if _, err := nd.etcdCli.Delete(ctx, drainingKey(id)); err != nil {
		return nil, fmt.Errorf("starting node %d: clearing drain mark: %w", id, err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	reg := jobs.NewRegistry(nd.etcdCli, jobs.Options{
		NodeID: id, Session: n.Session, Prefix: cluster.Prefix,
		AdoptInterval: cfg.AdoptInterval, Logger: n.Logger,
	})
	reg.Register(backup.JobType, backup.NewResumer(env))
	reg.Register(restore.JobType, restore.NewResumer(env))
	reg.Start(runCtx)
	rt := &NodeRuntime{Node: n, Env: env, Registry: reg, Plugins: host}
	nd.Runtime = rt
	nd.Server = &Server{
		Nodes: []*NodeRuntime{rt}, cancel: cancel, hosts: map[int32]*pluginhost.Host{id: host},
		cfg: Config{
			Logger: cfg.Logger, Regions: cfg.Regions, RegionOf: cfg.RegionOf,
			AdoptInterval: cfg.AdoptInterval, CheckpointEvery: cfg.CheckpointEvery,
			ExecutionPolicy: cfg.ExecutionPolicy, PluginDir: cfg.PluginDir,
		},
	}
	cleanups = append(cleanups, func() { reg.Stop(); cancel() })
	if cfg.HTTPAddr != "" {
		lis, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			return nil, fmt.Errorf("starting node %d: listening for HTTP: %w", id, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", nd.metrics.handler(nd))
		nd.httpLis, nd.httpSrv = lis, &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go nd.httpSrv.Serve(lis)
		if _, err := nd.etcdCli.Put(ctx, httpAddrKey(id), lis.Addr().String(), clientv3.WithLease(n.Session.Lease())); err != nil {
			nd.httpSrv.Close()
			return nil, fmt.Errorf("starting node %d: recording HTTP address: %w", id, err)
		}
	}
	return nd, nil
}

func httpAddrKey(id int32) string { return fmt.Sprintf("%shttp/%010d", cluster.Prefix, id) }

// resolveNodeID returns the node id recorded in dir, else want, else a new
// id from etcd's counter, and records it in dir.
func resolveNodeID(ctx context.Context, cli *clientv3.Client, dir string, want int32) (int32, error) {
	path := filepath.Join(dir, "node-id")
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		v, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 32)
		if err != nil || v <= 0 {
			return 0, fmt.Errorf("reading node id from %s: %q is not a positive integer", path, data)
		}
		if want != 0 && int32(v) != want {
			return 0, fmt.Errorf("starting node %d: %s belongs to node %d", want, dir, v)
		}
		return int32(v), nil
	case !errors.Is(err, os.ErrNotExist):
		return 0, fmt.Errorf("reading node id: %w", err)
	}
	id := want
	if id == 0 {
		if id, err = allocateNodeID(ctx, cli); err != nil {
			return 0, err
		}
	} else if err := raiseNodeIDCounter(ctx, cli, id); err != nil {
		return 0, err
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(int(id))+"\n"), 0o644); err != nil {
		return 0, fmt.Errorf("recording node id: %w", err)
	}
	return id, nil
}

// allocateNodeID takes the next id above both the counter and every node
// record, so that ids given by --node-id are never handed out again.
func allocateNodeID(ctx context.Context, cli *clientv3.Client) (int32, error) {
	for {
		resp, err := cli.Get(ctx, nodeIDCounterKey)
		if err != nil {
			return 0, fmt.Errorf("allocating node id: %w", err)
		}
		var last, rev int64
		if len(resp.Kvs) == 1 {
			last, _ = strconv.ParseInt(string(resp.Kvs[0].Value), 10, 32)
			rev = resp.Kvs[0].ModRevision
		}
		nodes, err := cluster.NewMeta(cli).Nodes(ctx)
		if err != nil {
			return 0, fmt.Errorf("allocating node id: %w", err)
		}
		for _, n := range nodes {
			last = max(last, int64(n.ID))
		}
		next := last + 1
		txn, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(nodeIDCounterKey), "=", rev)).
			Then(clientv3.OpPut(nodeIDCounterKey, strconv.FormatInt(next, 10))).Commit()
		if err != nil {
			return 0, fmt.Errorf("allocating node id: %w", err)
		}
		if txn.Succeeded {
			return int32(next), nil
		}
	}
}

func raiseNodeIDCounter(ctx context.Context, cli *clientv3.Client, id int32) error {
	for {
		resp, err := cli.Get(ctx, nodeIDCounterKey)
		if err != nil {
			return fmt.Errorf("recording node id %d: %w", id, err)
		}
		var last, rev int64
		if len(resp.Kvs) == 1 {
			last, _ = strconv.ParseInt(string(resp.Kvs[0].Value), 10, 32)
			rev = resp.Kvs[0].ModRevision
		}
		if last >= int64(id) {
			return nil
		}
		txn, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(nodeIDCounterKey), "=", rev)).
			Then(clientv3.OpPut(nodeIDCounterKey, strconv.Itoa(int(id)))).Commit()
		if err != nil {
			return fmt.Errorf("recording node id %d: %w", id, err)
		}
		if txn.Succeeded {
			return nil
		}
	}
}

// ID is the node's id.
func (nd *Node) ID() int32 { return nd.Runtime.Node.ID }

// Addr is the node's gRPC address (node-to-node and gateway).
func (nd *Node) Addr() string { return nd.Runtime.Node.Addr() }

// HTTPAddr is the address serving /metrics, or "".
func (nd *Node) HTTPAddr() string {
	if nd.httpLis == nil {
		return ""
	}
	return nd.httpLis.Addr().String()
}

// EtcdEndpoints are the client URLs of the embedded member, or nil.
func (nd *Node) EtcdEndpoints() []string {
	if nd.Etcd == nil {
		return nil
	}
	return nd.Etcd.Endpoints
}

// Draining reports whether Drain has run.
func (nd *Node) Draining() bool { return nd.draining.Load() }

// Drain stops the node adopting jobs and hands the jobs it runs to other
// nodes: their claims are released without changing their state, so
// another live node adopts and resumes them from their last checkpoint.
// The node keeps serving KV, export and ingest traffic (other nodes' plans
// may still read from it) until it is closed. It returns the ids of the
// jobs handed over. Safe to call more than once.
func (nd *Node) Drain(ctx context.Context) ([]int64, error) {
	nd.drainMu.Lock()
	defer nd.drainMu.Unlock()
	id := nd.ID()
	if _, err := nd.etcdCli.Put(ctx, drainingKey(id), "1"); err != nil {
		return nil, fmt.Errorf("draining node %d: %w", id, err)
	}
	recs, err := nd.Runtime.Registry.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("draining node %d: %w", id, err)
	}
	var mine []int64
	for _, r := range recs {
		if r.ClaimNode == id && !r.State.Terminal() {
			mine = append(mine, r.ID)
		}
	}
	nd.draining.Store(true)
	nd.Runtime.Registry.Stop()
	nd.Runtime.Node.Logger.Info("drained: jobs handed to other nodes", "jobs", mine)
	return mine, nil
}

// Close stops the registry (handing running jobs over), the HTTP server,
// the node, its plugins and etcd. Safe to call more than once.
func (nd *Node) Close() error {
	var err error
	nd.closed.Do(func() {
		if nd.httpSrv != nil {
			nd.httpSrv.Close()
		}
		nd.Runtime.Registry.Stop()
		nd.Server.cancel()
		nd.Runtime.Node.Stop()
		if nd.Runtime.Plugins != nil {
			nd.Runtime.Plugins.Close()
		}
		if nd.Etcd != nil {
			err = nd.Etcd.Close()
		} else {
			err = nd.etcdCli.Close()
		}
	})
	return err
}

// placement places new ranges over the live nodes.
func (s *Server) placement(ctx context.Context) (cluster.Placement, error) {
	if s.Cluster != nil {
		return s.Cluster.Placement(ctx)
	}
	regions := s.cfg.Regions
	if len(regions) == 0 {
		regions = cluster.DefaultRegions
	}
	return cluster.PlacementFor(ctx, s.Gateway().Node.Meta, s.cfg.RegionOf, regions[0])
}
