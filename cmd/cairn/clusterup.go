package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/core/cluster"
)

// clusterState is what `cairn cluster up` writes to <dir>/cluster.json.
type clusterState struct {
	Insecure      bool            `json:"insecure"`
	CertsDir      string          `json:"certs_dir,omitempty"`
	EtcdEndpoints []string        `json:"etcd_endpoints"`
	Nodes         []listeningInfo `json:"nodes"`
}

func readClusterState(dir string) (clusterState, error) {
	var st clusterState
	data, err := os.ReadFile(filepath.Join(dir, clusterStateFile))
	if err != nil {
		return st, fmt.Errorf("reading cluster state: %w", err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("reading cluster state %s: %w", filepath.Join(dir, clusterStateFile), err)
	}
	return st, nil
}

func writeClusterState(dir string, st clusterState) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, clusterStateFile+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("writing cluster state: %w", err)
	}
	return os.Rename(tmp, filepath.Join(dir, clusterStateFile))
}

func freeAddrs(n int) ([]string, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("choosing free ports: %w", err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().String())
	}
	return out, nil
}

// nodeProc is a node process started by cluster up.
type nodeProc struct {
	cmd  *exec.Cmd
	done chan error
	file string
	log  string
}

func (p *nodeProc) alive() error {
	select {
	case err := <-p.done:
		p.done <- err
		return fmt.Errorf("node process exited (%v); see %s", err, p.log)
	default:
		return nil
	}
}

func clusterCommand() *cli.Command {
	return &cli.Command{
		Name:  "cluster",
		Usage: "start and stop a local multi-process cluster on 127.0.0.1",
		Description: `cairn cluster up starts --nodes processes of ` + "`cairn start`" + ` on 127.0.0.1, spread over
3 regions (us-east1, us-west1, europe-west1) with zones a, b, c: nodes 1-3 each embed a
member of one 3-member etcd cluster, the others connect to it with --etcd-endpoints.

The state directory (--dir, default cairn-cluster) holds:
  cluster.json    node ids, pids, gRPC, metrics and etcd addresses, TLS mode
  n<id>/          each node's store, etcd member data and nodelocal:// root (n<id>/extern)
  n<id>.log       each node's stdout and stderr
  certs/          the CA and node certificate (unless --insecure or --certs-dir)
` + "`cairn node status`" + `, ` + "`cairn node drain`" + ` and ` + "`cairn cluster down`" + ` read it; other commands take
--host with an address from it, e.g.
  cairn cluster up --insecure
  cairn workload init movr --insecure --host $(jq -r '.nodes[0].addr' cairn-cluster/cluster.json)
Starting again on the same --dir restarts the same nodes with their data.`,
		Subcommands: []*cli.Command{{
			Name:      "up",
			Usage:     "start the local cluster's node processes in the background",
			ArgsUsage: " ",
			Flags: []cli.Flag{
				clusterDirFlag,
				&cli.IntFlag{Name: "nodes", Value: 9, Usage: "number of node processes"},
				&cli.BoolFlag{Name: "insecure", Usage: "plaintext gRPC (no certificates)"},
				&cli.StringFlag{Name: "certs-dir", Usage: "certificates to use (default <dir>/certs, created when missing)"},
				pluginDirFlag, verboseFlag,
			},
			Action: clusterUp,
		}, {
			Name:      "down",
			Usage:     "stop the node processes recorded in the state directory (their data stays)",
			ArgsUsage: " ",
			Flags:     []cli.Flag{clusterDirFlag, &cli.DurationFlag{Name: "timeout", Value: 30 * time.Second, Usage: "how long to wait for a node to stop before killing it"}},
			Action:    clusterDown,
		}},
	}
}

func clusterUp(c *cli.Context) error {
	dir, err := filepath.Abs(c.String("dir"))
	if err != nil {
		return err
	}
	n := c.Int("nodes")
	if n < 1 {
		return fmt.Errorf("--nodes must be at least 1, got %d", n)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	if st, err := readClusterState(dir); err == nil {
		for _, nd := range st.Nodes {
			if nd.PID > 0 && syscall.Kill(nd.PID, 0) == nil {
				return fmt.Errorf("a cluster recorded in %s still runs (node %d, pid %d): run `cairn cluster down --dir %s` first", dir, nd.NodeID, nd.PID, c.String("dir"))
			}
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the cairn binary: %w", err)
	}
	st := clusterState{Insecure: c.Bool("insecure")}
	if !st.Insecure {
		st.CertsDir = c.String("certs-dir")
		if st.CertsDir == "" {
			st.CertsDir = filepath.Join(dir, "certs")
		}
		if _, err := os.Stat(filepath.Join(st.CertsDir, cluster.NodeCertFile)); errors.Is(err, os.ErrNotExist) {
			if err := cluster.CreateCA(st.CertsDir, 5*365*24*time.Hour); err != nil {
				return err
			}
			if err := cluster.CreateNodeCert(st.CertsDir, st.CertsDir, []string{"127.0.0.1", "localhost"}, 5*365*24*time.Hour); err != nil {
				return err
			}
		}
	}
	members := min(3, n)
	// Members keep their ports across restarts: the peer URLs are part of
	// etcd's membership. They are recorded in <dir>/etcd-ports.json.
	ports, err := etcdPorts(dir, members)
	if err != nil {
		return err
	}
	var initial []string
	for i := 0; i < members; i++ {
		initial = append(initial, fmt.Sprintf("n%d=http://%s", i+1, ports[2*i+1]))
		st.EtcdEndpoints = append(st.EtcdEndpoints, "http://"+ports[2*i])
	}
	regions := cluster.DefaultRegions
	perRegion := (n + len(regions) - 1) / len(regions)
	start := func(i int) (*nodeProc, error) {
		id := i + 1
		region := regions[i/perRegion]
		zone := fmt.Sprintf("%s-%c", region, 'a'+i%perRegion)
		file := filepath.Join(dir, fmt.Sprintf("n%d.listening.json", id))
		os.Remove(file)
		args := []string{"start", "--store", filepath.Join(dir, fmt.Sprintf("n%d", id)), "--node-id", strconv.Itoa(id),
			"--listen-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--listening-file", file,
			"--locality", fmt.Sprintf("region=%s,zone=%s", region, zone)}
		if i < members {
			args = append(args, "--etcd-name", fmt.Sprintf("n%d", id), "--etcd-client-addr", ports[2*i],
				"--etcd-peer-addr", ports[2*i+1], "--etcd-initial-cluster", strings.Join(initial, ","))
		} else {
			args = append(args, "--etcd-endpoints", strings.Join(st.EtcdEndpoints, ","))
		}
		if st.Insecure {
			args = append(args, "--insecure")
		} else {
			args = append(args, "--certs-dir", st.CertsDir)
		}
		if p := c.String("plugin-dir"); p != "" {
			args = append(args, "--plugin-dir", p)
		}
		if c.Bool("verbose") {
			args = append(args, "--verbose")
		}
		logPath := filepath.Join(dir, fmt.Sprintf("n%d.log", id))
		logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("opening node %d's log: %w", id, err)
		}
		cmd := exec.Command(exe, args...)
		cmd.Stdout, cmd.Stderr = logf, logf
		// Its own process group: the node outlives this command and does
		// not get the terminal's Ctrl-C.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			logf.Close()
			return nil, fmt.Errorf("starting node %d: %w", id, err)
		}
		logf.Close()
		p := &nodeProc{cmd: cmd, done: make(chan error, 1), file: file, log: logPath}
		go func() { p.done <- cmd.Wait() }()
		return p, nil
	}
	var procs []*nodeProc
	fail := func(err error) error {
		for _, p := range procs {
			syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		}
		return err
	}
	ctx, cancel := context.WithTimeout(c.Context, 2*time.Minute)
	defer cancel()
	wait := func(from int) error {
		for _, p := range procs[from:] {
			data, err := waitForFile(ctx, p.file, p.alive)
			if err != nil {
				return err
			}
			var info listeningInfo
			if err := json.Unmarshal(data, &info); err != nil {
				return fmt.Errorf("reading %s: %w", p.file, err)
			}
			st.Nodes = append(st.Nodes, info)
			fmt.Fprintf(c.App.Writer, "node %d: %s (metrics http://%s/metrics, pid %d)\n", info.NodeID, info.Addr, info.HTTPAddr, info.PID)
		}
		return nil
	}
	// The members start together: each waits for a quorum.
	for i := 0; i < members; i++ {
		p, err := start(i)
		if err != nil {
			return fail(err)
		}
		procs = append(procs, p)
	}
	if err := wait(0); err != nil {
		return fail(err)
	}
	for i := members; i < n; i++ {
		p, err := start(i)
		if err != nil {
			return fail(err)
		}
		procs = append(procs, p)
	}
	if err := wait(members); err != nil {
		return fail(err)
	}
	if err := writeClusterState(dir, st); err != nil {
		return fail(err)
	}
	fmt.Fprintf(c.App.Writer, "cluster of %d nodes up; state in %s; stop it with `cairn cluster down --dir %s`\n", n, filepath.Join(dir, clusterStateFile), c.String("dir"))
	return nil
}

// etcdPorts returns 2*members addresses (client, peer per member), the ones
// recorded in dir when there are, else free ones, recorded there.
func etcdPorts(dir string, members int) ([]string, error) {
	path := filepath.Join(dir, "etcd-ports.json")
	var ports []string
	if data, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(data, &ports); err == nil && len(ports) == 2*members {
			return ports, nil
		}
		return nil, fmt.Errorf("reading %s: it records %d addresses, want %d (the cluster was made with another --nodes)", path, len(ports), 2*members)
	}
	ports, err := freeAddrs(2 * members)
	if err != nil {
		return nil, err
	}
	data, _ := json.Marshal(ports)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return nil, fmt.Errorf("recording etcd ports: %w", err)
	}
	return ports, nil
}

func clusterDown(c *cli.Context) error {
	dir := c.String("dir")
	st, err := readClusterState(dir)
	if err != nil {
		return err
	}
	members := min(3, len(st.Nodes))
	// Clients first, then the etcd members: the clients need etcd to
	// release their liveness sessions. Each phase stops its nodes together.
	stop(c, st.Nodes[members:])
	stop(c, st.Nodes[:members])
	return nil
}

// stop sends SIGTERM to every node, waits for them to exit, and kills the
// process groups of those still running after --timeout.
func stop(c *cli.Context, nodes []listeningInfo) {
	var running []listeningInfo
	for _, nd := range nodes {
		if nd.PID > 0 && syscall.Kill(nd.PID, 0) == nil {
			syscall.Kill(nd.PID, syscall.SIGTERM)
			running = append(running, nd)
		}
	}
	deadline := time.Now().Add(c.Duration("timeout"))
	for _, nd := range running {
		for syscall.Kill(nd.PID, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if syscall.Kill(nd.PID, 0) == nil {
			syscall.Kill(-nd.PID, syscall.SIGKILL)
			fmt.Fprintf(c.App.Writer, "node %d (pid %d) killed after %s\n", nd.NodeID, nd.PID, c.Duration("timeout"))
			continue
		}
		fmt.Fprintf(c.App.Writer, "node %d (pid %d) stopped\n", nd.NodeID, nd.PID)
	}
}
