package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/core/backup"
	"github.com/cairnbackup/cairn/core/cluster"
	"github.com/cairnbackup/cairn/core/server"
	"github.com/cairnbackup/cairn/core/workload/movr"
)

// EnvExportDelay is a testing-only knob: a Go duration that every backup
// processor of the node waits before exporting each span, so that tests
// can catch a backup while it runs. Never set it in production.
const EnvExportDelay = "CAIRN_TESTING_EXPORT_DELAY"

// EnvExportLog is a testing-only knob: a file to which every backup
// processor of the node appends one line, "<job id> <span index> <node
// id>", when it starts exporting a span (before EnvExportDelay). Lines are
// appended with O_APPEND in one write each, so several nodes can share the
// file; tests use it to prove that a resumed backup does not export again
// the spans its checkpoint holds. Never set it in production.
const EnvExportLog = "CAIRN_TESTING_EXPORT_LOG"

// EnvFinishDelay is a testing-only knob: a Go duration that a backup's
// coordinator waits once every span is exported and checkpointed, before
// it writes the manifest, so that tests can stop the job in that phase.
// Never set it in production.
const EnvFinishDelay = "CAIRN_TESTING_FINISH_DELAY"

// testingKnobs builds the backup knobs of the testing-only environment
// variables above; none set gives no knobs.
func testingKnobs(nodeID func() int32) (backup.Knobs, error) {
	var k backup.Knobs
	var delay, finish time.Duration
	if d := os.Getenv(EnvExportDelay); d != "" {
		var err error
		if delay, err = time.ParseDuration(d); err != nil {
			return k, fmt.Errorf("%s: %w", EnvExportDelay, err)
		}
	}
	if d := os.Getenv(EnvFinishDelay); d != "" {
		var err error
		if finish, err = time.ParseDuration(d); err != nil {
			return k, fmt.Errorf("%s: %w", EnvFinishDelay, err)
		}
	}
	logPath := os.Getenv(EnvExportLog)
	if delay > 0 || logPath != "" {
		k.BeforeExportSpan = func(ctx context.Context, job int64, span int) error {
			if logPath != "" {
				f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
				if err != nil {
					return fmt.Errorf("%s: %w", EnvExportLog, err)
				}
				_, err = fmt.Fprintf(f, "%d %d %d\n", job, span, nodeID())
				if cerr := f.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					return fmt.Errorf("%s: %w", EnvExportLog, err)
				}
			}
			return sleepCtx(ctx, delay)
		}
	}
	if finish > 0 {
		k.BeforeFinish = func(ctx context.Context, _ int64) error { return sleepCtx(ctx, finish) }
	}
	return k, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// listeningInfo is what --listening-file receives once the node serves.
type listeningInfo struct {
	NodeID        int32    `json:"node_id"`
	Addr          string   `json:"addr"`
	HTTPAddr      string   `json:"http_addr,omitempty"`
	EtcdEndpoints []string `json:"etcd_endpoints,omitempty"`
	PID           int      `json:"pid"`
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func startCommand() *cli.Command {
	return &cli.Command{
		Name:      "start",
		Usage:     "run one node of a multi-process cluster in this process",
		ArgsUsage: " ",
		Description: `Starts one node: a Pebble store in --store, a gRPC server on --listen-addr for
node-to-node traffic and for clients (--host), /metrics on --http-addr, and a job
registry that adopts BACKUP and RESTORE jobs. It runs until interrupted.

Control plane (etcd), one of:
  (no etcd flags)        embed a single-member etcd: a one-node cluster for play;
  --etcd-initial-cluster embed one member of a multi-member cluster, e.g.
                         --etcd-name n1 --etcd-peer-addr 127.0.0.1:2380 --etcd-client-addr 127.0.0.1:2379
                         --etcd-initial-cluster n1=http://127.0.0.1:2380,n2=...,n3=...
  --etcd-endpoints       connect to an external etcd cluster (http://host:port,...);
  --join                 ask running nodes (host:port,...) for their etcd endpoints.

Node ids come from --node-id or from a counter in etcd, and are kept in --store.
nodelocal://<id>/ is --external-io-dir (default <store>/extern) on node <id>.
Security: node-to-node gRPC uses mTLS with the certificates in --certs-dir
(cairn cert create-ca, cairn cert create-node); --insecure runs plaintext.

Examples:
  cairn start --insecure --store n1 --listen-addr 127.0.0.1:26257 --http-addr 127.0.0.1:8080
  cairn start --insecure --store n2 --listen-addr 127.0.0.1:26258 --join 127.0.0.1:26257 \
    --locality region=us-west1,zone=us-west1-a`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "store", Aliases: []string{"s"}, Required: true, Usage: "node directory: store, aux files, node id, embedded etcd data"},
			&cli.StringFlag{Name: "listen-addr", Value: "127.0.0.1:26257", Usage: "gRPC address for nodes and clients (port 0 picks a free one)"},
			&cli.StringFlag{Name: "http-addr", Value: "127.0.0.1:8080", Usage: "HTTP address serving /metrics; empty disables it"},
			&cli.StringFlag{Name: "locality", Value: "region=us-east1,zone=us-east1-a", Usage: "the node's locality tiers, most general first"},
			&cli.IntFlag{Name: "node-id", Usage: "node id; 0 allocates one from etcd"},
			&cli.StringFlag{Name: "external-io-dir", Usage: "root of nodelocal://<id>/ (default <store>/extern)"},
			&cli.StringFlag{Name: "join", Usage: "addresses of running nodes (host:port,...) to learn the etcd endpoints from"},
			&cli.StringFlag{Name: "etcd-endpoints", Usage: "client URLs of an external etcd cluster (http://host:port,...)"},
			&cli.StringFlag{Name: "etcd-name", Usage: "name of the embedded etcd member (default cairn)"},
			&cli.StringFlag{Name: "etcd-client-addr", Usage: "host:port for the embedded member's clients (default: a free port)"},
			&cli.StringFlag{Name: "etcd-peer-addr", Usage: "host:port for the embedded member's peers (default: a free port)"},
			&cli.StringFlag{Name: "etcd-initial-cluster", Usage: "name=http://host:peerport,... over every member of the embedded etcd cluster"},
			&cli.StringFlag{Name: "listening-file", Usage: "write the node's id and addresses as JSON to this file once it serves"},
			&cli.DurationFlag{Name: "adopt-interval", Value: 200 * time.Millisecond, Usage: "how often an idle node looks for jobs to adopt"},
			&cli.IntFlag{Name: "liveness-ttl", Value: 5, Usage: "seconds after which a node that stopped answering is considered dead"},
			certsDirFlag, insecureFlag, pluginDirFlag, checkpointFlag, verboseFlag,
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("start takes no arguments, got %q", c.Args().Slice())
			}
			log := slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: slog.LevelWarn}))
			if c.Bool("verbose") {
				log = slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: slog.LevelInfo}))
			}
			cfg := server.NodeConfig{
				ID: int32(c.Int("node-id")), Dir: c.String("store"), ExternalIODir: c.String("external-io-dir"),
				Locality: c.String("locality"), ListenAddr: c.String("listen-addr"), HTTPAddr: c.String("http-addr"),
				EtcdEndpoints: splitList(c.String("etcd-endpoints")), EtcdName: c.String("etcd-name"),
				EtcdClientAddr: c.String("etcd-client-addr"), EtcdPeerAddr: c.String("etcd-peer-addr"),
				EtcdInitialCluster: c.String("etcd-initial-cluster"), PluginDir: c.String("plugin-dir"),
				Logger: log, AdoptInterval: c.Duration("adopt-interval"), CheckpointEvery: c.Duration("checkpoint-interval"),
				LivenessTTL: c.Int("liveness-ttl"), RegionOf: movr.RegionOfKey,
			}
			if !c.Bool("insecure") {
				srv, cl, err := cluster.LoadTLS(c.String("certs-dir"))
				if err != nil {
					return fmt.Errorf("%w (create certificates with `cairn cert`, or pass --insecure for local play)", err)
				}
				cfg.ServerCreds, cfg.ClientCreds = srv, cl
			}
			// The node's id is known once StartNode returns; a processor
			// that starts before waits for it.
			var nd *server.Node
			started := make(chan struct{})
			knobs, err := testingKnobs(func() int32 { <-started; return nd.ID() })
			if err != nil {
				return err
			}
			cfg.Knobs = knobs
			if j := splitList(c.String("join")); len(j) > 0 && len(cfg.EtcdEndpoints) == 0 {
				eps, err := etcdFromJoin(c, j)
				if err != nil {
					return err
				}
				cfg.EtcdEndpoints = eps
			}
			nd, err = server.StartNode(c.Context, cfg)
			if err != nil {
				return err
			}
			close(started)
			defer nd.Close()
			info := listeningInfo{NodeID: nd.ID(), Addr: nd.Addr(), HTTPAddr: nd.HTTPAddr(), EtcdEndpoints: nd.EtcdEndpoints(), PID: os.Getpid()}
			fmt.Fprintf(c.App.Writer, "node %d serving at %s", info.NodeID, info.Addr)
			if info.HTTPAddr != "" {
				fmt.Fprintf(c.App.Writer, ", metrics at http://%s/metrics", info.HTTPAddr)
			}
			if len(info.EtcdEndpoints) > 0 {
				fmt.Fprintf(c.App.Writer, ", etcd at %s", strings.Join(info.EtcdEndpoints, ","))
			}
			fmt.Fprintln(c.App.Writer)
			if p := c.String("listening-file"); p != "" {
				data, _ := json.Marshal(info)
				// Written whole under a temporary name, so a reader never
				// sees half of it.
				tmp := p + ".tmp"
				if err := os.WriteFile(tmp, data, 0o644); err != nil {
					return fmt.Errorf("writing --listening-file: %w", err)
				}
				if err := os.Rename(tmp, p); err != nil {
					return fmt.Errorf("writing --listening-file: %w", err)
				}
			}
			<-c.Context.Done()
			log.Info("shutting down", "node", nd.ID())
			return nil
		},
	}
}

// etcdFromJoin asks the first node of addrs that answers for its etcd
// endpoints.
func etcdFromJoin(c *cli.Context, addrs []string) ([]string, error) {
	var errs []string
	for _, a := range addrs {
		cl, err := dialHost(c, a)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(c.Context, 10*time.Second)
		st, err := cl.Status(ctx)
		cancel()
		cl.Close()
		if err == nil && len(st.EtcdEndpoints) > 0 {
			return st.EtcdEndpoints, nil
		}
		errs = append(errs, fmt.Sprintf("%s: %v", a, err))
	}
	return nil, fmt.Errorf("joining %s: no node gave its etcd endpoints (%s)", strings.Join(addrs, ","), strings.Join(errs, "; "))
}
