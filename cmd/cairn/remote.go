package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"google.golang.org/grpc/credentials"

	"github.com/cairnbackup/cairn/core/cluster"
	"github.com/cairnbackup/cairn/core/hlc"
	"github.com/cairnbackup/cairn/core/server"
	"github.com/cairnbackup/cairn/core/server/serverpb"
	"github.com/cairnbackup/cairn/core/sql"
)

// hostFlag sends a command to a running node (cairn start) instead of
// opening the embedded cluster in --data-dir.
var hostFlag = &cli.StringFlag{
	Name: "host", EnvVars: []string{"CAIRN_HOST"},
	Usage: "address (host:port) of a running node started by cairn start or cairn cluster up; the command runs there instead of on the embedded cluster in --data-dir",
}

var certsDirFlag = &cli.StringFlag{
	Name: "certs-dir", Value: "certs", EnvVars: []string{"CAIRN_CERTS_DIR"},
	Usage: "directory with ca.crt, node.crt and node.key (made by cairn cert), for node-to-node and client mTLS",
}

var insecureFlag = &cli.BoolFlag{
	Name: "insecure", EnvVars: []string{"CAIRN_INSECURE"},
	Usage: "plaintext gRPC without certificates, for local play only",
}

// remoteCommands are the commands (by full name) that accept --host.
var remoteCommands = map[string]bool{
	"sql": true, "backup": true, "restore": true, "backups": true, "backups show": true,
	"jobs list": true, "jobs show": true, "jobs pause": true, "jobs resume": true, "jobs cancel": true,
	"workload init": true, "workload run": true, "fingerprint": true,
}

// withHostFlags adds --host, --certs-dir and --insecure to the commands
// that can run on a running node.
func withHostFlags(cmds []*cli.Command, prefix string) {
	for _, cmd := range cmds {
		name := strings.TrimSpace(prefix + " " + cmd.Name)
		if remoteCommands[name] {
			cmd.Flags = append(cmd.Flags, hostFlag, certsDirFlag, insecureFlag)
		}
		withHostFlags(cmd.Subcommands, name)
	}
}

// clientCreds returns the transport credentials for talking to nodes: nil
// (plaintext) with --insecure, else mTLS from --certs-dir.
func clientCreds(c *cli.Context) (credentials.TransportCredentials, error) {
	if c.Bool("insecure") {
		return nil, nil
	}
	_, cl, err := cluster.LoadTLS(c.String("certs-dir"))
	if err != nil {
		return nil, fmt.Errorf("%w (or pass --insecure to a cluster started with --insecure)", err)
	}
	return cl, nil
}

func dialHost(c *cli.Context, addr string) (*server.Client, error) {
	creds, err := clientCreds(c)
	if err != nil {
		return nil, err
	}
	return server.Dial(addr, creds)
}

// remoteStatements runs statements on the node named by --host.
func remoteStatements(c *cli.Context, stmts []string) error {
	for _, s := range stmts {
		if _, err := sql.Parse(s); err != nil {
			return err
		}
	}
	cl, err := dialHost(c, c.String("host"))
	if err != nil {
		return err
	}
	defer cl.Close()
	for _, s := range stmts {
		onProgress, done := progressBar(strings.Fields(s)[0])
		res, err := cl.Exec(c.Context, s, c.String("user"), onProgress)
		done()
		if res != nil {
			if perr := printResult(c.App.Writer, c.String("format"), res); perr != nil && err == nil {
				err = perr
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func remoteWorkloadInit(c *cli.Context) error {
	cfg, err := movrConfig(c)
	if err != nil {
		return err
	}
	cl, err := dialHost(c, c.String("host"))
	if err != nil {
		return err
	}
	defer cl.Close()
	resp, err := cl.Workload(c.Context, &serverpb.WorkloadRequest{
		Op: "init", Database: c.String("db"), Seed: cfg.Seed, Bytes: cfg.Bytes, Rows: int64(cfg.Rows),
	}, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "loaded %d rows, %s into %s\n", resp.Rows, humanBytes(resp.Bytes), c.String("db"))
	return nil
}

// remoteWorkloadRun runs the workload on the node at --host for d (0:
// until ctx ends) and returns how many operations it applied. The node
// bounds the run by d, so it answers with its count; when ctx ends first
// (an interrupt) the call is cancelled, the node stops, and the count is
// unknown: interrupted is then true.
func remoteWorkloadRun(ctx context.Context, c *cli.Context, d time.Duration) (ops int64, interrupted bool, err error) {
	cl, err := dialHost(c, c.String("host"))
	if err != nil {
		return 0, false, err
	}
	defer cl.Close()
	resp, err := cl.Workload(ctx, &serverpb.WorkloadRequest{
		Op: "run", Database: c.String("db"), Seed: c.Int64("seed"),
		MaxOpsPerSecond: c.Float64("max-rate"), DurationNanos: int64(d),
	}, nil)
	if err != nil {
		if ctx.Err() != nil {
			return 0, true, nil
		}
		return 0, false, err
	}
	return resp.Ops, false, nil
}

func remoteFingerprint(c *cli.Context) error {
	cl, err := dialHost(c, c.String("host"))
	if err != nil {
		return err
	}
	defer cl.Close()
	var ts hlc.Timestamp
	if a := c.String("as-of"); a != "" {
		if ts, err = parseTS(a); err != nil {
			return fmt.Errorf("--as-of: %w", err)
		}
	}
	fp, err := cl.Fingerprint(c.Context, c.String("database"), ts)
	if err != nil {
		return err
	}
	at := hlc.Timestamp{WallTime: fp.WallTime, Logical: fp.Logical}
	fmt.Fprintf(c.App.Writer, "%s at %s: %s rows=%d\n", c.String("database"), at, fp.Hex, fp.Rows)
	return nil
}

// clusterStateFile is where `cairn cluster up` records its nodes.
const clusterStateFile = "cluster.json"

// stateHost returns the gRPC address of the first node that `cairn cluster
// up` recorded in dir.
func stateHost(dir string) (string, error) {
	st, err := readClusterState(dir)
	if err != nil {
		return "", err
	}
	for _, n := range st.Nodes {
		if n.Addr != "" {
			return n.Addr, nil
		}
	}
	return "", fmt.Errorf("reading %s: no node recorded", filepath.Join(dir, clusterStateFile))
}

// waitForFile polls until path exists and is not empty, or ctx ends.
func waitForFile(ctx context.Context, path string, alive func() error) ([]byte, error) {
	for {
		data, err := os.ReadFile(path)
		if err == nil && len(data) > 0 {
			return data, nil
		}
		if alive != nil {
			if err := alive(); err != nil {
				return nil, err
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for %s: %w", path, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
