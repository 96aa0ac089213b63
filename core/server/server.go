// Package server ties the reference cluster, the job system, and the
// backup and restore code into something that executes statements. It is
// the embedding entry point: StartLocal runs a whole cluster in-process,
// and Exec runs a BACKUP, RESTORE, SHOW or job-control statement on it.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"google.golang.org/grpc"

	"github.com/cairnbackup/cairn/core/backup"
	"github.com/cairnbackup/cairn/core/cluster"
	"github.com/cairnbackup/cairn/core/jobs"
	"github.com/cairnbackup/cairn/core/pluginhost"
	"github.com/cairnbackup/cairn/core/restore"
)

// Config configures an in-process cluster.
type Config struct {
	Dir     string
	Nodes   int
	Logger  *slog.Logger
	Regions []string
	// RegionOf places ranges of new tables by key.
	RegionOf  func(key []byte) (string, bool)
	CacheSize int64
	// AdoptInterval is how often idle nodes look for jobs to adopt.
	AdoptInterval time.Duration
	// CheckpointEvery is the default checkpoint interval of backups.
	CheckpointEvery time.Duration
	// TargetFileSize is the default size of exported files.
	TargetFileSize int64
	LivenessTTL    int
	// Knobs are testing hooks given to every node's backup environment.
	Knobs backup.Knobs
	// ExecutionPolicy names the locality plugin's policy that plans jobs
	// ("default" when empty); without a locality plugin the default rules
	// run in-process.
	ExecutionPolicy string
	// PluginDir holds plugin binaries (cairn --plugin-dir); "" means none.
	// Every node starts its own processes of them: data never crosses
	// nodes through a plugin.
	PluginDir string
	// PluginCallTimeout bounds unary plugin calls; 0 means the host's
	// default.
	PluginCallTimeout time.Duration
	// GCInterval and GCTTL make every node garbage-collect versions older
	// than GCTTL every GCInterval, honouring protected timestamps; GC is
	// off unless both are positive (Server.RunGC runs it on demand).
	GCInterval, GCTTL time.Duration
}

// NodeRuntime is one node with its job registry.
type NodeRuntime struct {
	Node     *cluster.Node
	Env      *backup.Env
	Registry *jobs.Registry
	// Plugins runs the node's plugins.
	Plugins *pluginhost.Host
}

// Server is a running in-process cluster that executes statements.
type Server struct {
	Cluster *cluster.Local
	Nodes   []*NodeRuntime
	cfg     Config
	cancel  context.CancelFunc
	hosts   map[int32]*pluginhost.Host
}

// StartLocal starts (or reopens, when cfg.Dir holds one) an in-process
// cluster with job registries on every node.
func StartLocal(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.ExecutionPolicy == "" {
		cfg.ExecutionPolicy = "default"
	}
	if cfg.AdoptInterval <= 0 {
		cfg.AdoptInterval = time.Second
	}
	restore.Placer = cfg.RegionOf
	envs := map[int32]*backup.Env{}
	hosts := map[int32]*pluginhost.Host{}
	var hostErr error
	closeHosts := func() {
		for _, h := range hosts {
			h.Close()
		}
	}
	local, err := cluster.StartLocal(ctx, cluster.LocalConfig{
		Dir: cfg.Dir, Nodes: cfg.Nodes, Regions: cfg.Regions, Logger: cfg.Logger,
		CacheSize: cfg.CacheSize, RegionOf: cfg.RegionOf, LivenessTTL: cfg.LivenessTTL,
		GCInterval: cfg.GCInterval, GCTTL: cfg.GCTTL,
		Services: func(s *grpc.Server, n *cluster.Node) {
			host, err := pluginhost.New(ctx, pluginhost.Config{
				Dir: cfg.PluginDir, Logger: n.Logger.With("node", n.ID), CallTimeout: cfg.PluginCallTimeout,
				SpoolDir: n.AuxDir(), // the node's disk, where file:// and nodelocal:// usually point
			})
			if err != nil {
				hostErr = errors.Join(hostErr, fmt.Errorf("starting the plugins of node %d: %w", n.ID, err))
				host, _ = pluginhost.New(ctx, pluginhost.Config{})
			}
			hosts[n.ID] = host
			env := backup.NewEnv(n, host)
			env.Knobs = cfg.Knobs
			// A locality plugin, when installed, plans the node's jobs;
			// otherwise the same rules run in-process.
			if p, ok := host.Policy(cfg.ExecutionPolicy); ok {
				env.Policy = p
			}
			envs[n.ID] = env
			backup.RegisterProcessor(s, env)
			restore.RegisterProcessor(s, env)
		},
	})
	if err != nil {
		closeHosts()
		return nil, err
	}
	if hostErr != nil {
		local.Close()
		closeHosts()
		return nil, hostErr
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Server{Cluster: local, cfg: cfg, cancel: cancel, hosts: hosts}
	for _, n := range local.Nodes {
		env := envs[n.ID]
		reg := jobs.NewRegistry(n.Meta.Client(), jobs.Options{
			NodeID: n.ID, Session: n.Session, Prefix: cluster.Prefix,
			AdoptInterval: cfg.AdoptInterval, Logger: n.Logger,
		})
		reg.Register(backup.JobType, backup.NewResumer(env))
		reg.Register(restore.JobType, restore.NewResumer(env))
		reg.Start(runCtx)
		s.Nodes = append(s.Nodes, &NodeRuntime{Node: n, Env: env, Registry: reg, Plugins: hosts[n.ID]})
	}
	return s, nil
}

// Gateway returns the node that executes statements (node 1 unless it is
// gone).
func (s *Server) Gateway() *NodeRuntime { return s.Nodes[0] }

// Node returns the runtime of node id, or nil.
func (s *Server) Node(id int32) *NodeRuntime {
	for _, n := range s.Nodes {
		if n.Node.ID == id {
			return n
		}
	}
	return nil
}

// Close stops the job registries (leaving jobs to be adopted when the
// cluster starts again), the nodes and etcd, then every node's plugins.
func (s *Server) Close() error {
	for _, n := range s.Nodes {
		n.Registry.Stop()
	}
	s.cancel()
	var err error
	if s.Cluster != nil {
		err = s.Cluster.Close()
	}
	for _, h := range s.hosts {
		h.Close()
	}
	return err
}

// ErrNotSupported is returned for statements and options that later
// releases implement.
var ErrNotSupported = errors.New("not supported yet")

func notSupported(what string) error {
	return fmt.Errorf("%s is %w", what, ErrNotSupported)
}
