package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/core/server"
	"github.com/cairnbackup/cairn/core/workload/movr"
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure full backup and restore throughput against a plain copy of the same stores",
		Description: `Loads movr into an in-process cluster, then measures, in one run:
  cp -r   copying every node's Pebble directory (the raw rate of the disk),
  BACKUP  a full backup of movr to nodelocal://1/bench,
  RESTORE restoring it as a new database,
and prints logical MB/s (key+value bytes of the rows, counted once) with the
ratio of each to cp -r. Note the stores hold every row three times (replicas),
so cp -r moves about three times the logical bytes.

With --bench-plugins DIR it also backs up to file:// in process and through
DIR/storage-local out of process, --rounds times each (alternating which goes
first, each on a freshly opened cluster after sync), and prints the ratio of
the medians; then it restores each one's last backup once, the same two ways. CAIRN_BENCH_CPUPROFILE=PREFIX writes a CPU profile of each of
those backups to PREFIX-<inproc|plugin>-<round>.pprof (go tool pprof).`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "bytes", Value: "200MB", Usage: "approximate size of movr"},
			&cli.IntFlag{Name: "rows", Usage: "load this many rows instead of --bytes"},
			&cli.Int64Flag{Name: "seed", Value: 1, Usage: "dataset seed"},
			&cli.StringFlag{Name: "dir", Usage: "work directory (default: a temporary one, removed afterwards)"},
			&cli.StringFlag{Name: "bench-plugins", Usage: "directory holding the storage-local plugin: also compare a file:// backup through it with the same backup in process"},
			&cli.IntFlag{Name: "rounds", Value: 5, Usage: "with --bench-plugins: rounds of the in-process and plugin backups, alternating which goes first; medians are compared"},
			nodesFlag, verboseFlag,
		},
		Action: runBench,
	}
}

func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			n += info.Size()
		}
		return nil
	})
	return n
}

func runBench(c *cli.Context) error {
	ctx := c.Context
	out := c.App.Writer
	cfg, err := movrConfig(c)
	if err != nil {
		return err
	}
	dir := c.String("dir")
	if dir == "" {
		if dir, err = os.MkdirTemp("", "cairn-bench-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	clusterDir := filepath.Join(dir, "cluster")
	open := func(pluginDir string) (*server.Server, error) {
		return server.StartLocal(ctx, server.Config{
			Dir: clusterDir, Nodes: c.Int("nodes"), Logger: logger(c), RegionOf: movr.RegionOfKey,
			AdoptInterval: 200 * time.Millisecond, PluginDir: pluginDir,
		})
	}
	srv, err := open("")
	if err != nil {
		return err
	}
	ids, err := srv.CreateMovr(ctx, "movr")
	if err != nil {
		return err
	}
	stats, err := loadMovr(ctx, srv, ids, cfg)
	if err != nil {
		return err
	}
	logical := float64(stats.Bytes)
	fmt.Fprintf(c.App.ErrWriter, "loaded %d rows, %s logical\n", stats.Rows, humanBytes(stats.Bytes))

	type row struct {
		what    string
		secs    float64
		onDisk  int64
		comment string
	}
	var rows []row

	// cp -r of every node's store directory, with the cluster stopped so
	// the files hold still.
	nodes := len(srv.Nodes)
	srv.Close()
	var stores []string
	var storeBytes int64
	for id := 1; id <= nodes; id++ {
		d := filepath.Join(clusterDir, fmt.Sprintf("n%d", id), "store")
		stores = append(stores, d)
		storeBytes += dirSize(d)
	}
	copyDir := filepath.Join(dir, "cp")
	if err := os.MkdirAll(copyDir, 0o755); err != nil {
		return err
	}
	t0 := time.Now()
	for i, d := range stores {
		cmd := exec.CommandContext(ctx, "cp", "-r", d, filepath.Join(copyDir, fmt.Sprintf("n%d", i+1)))
		cmd.Stderr = c.App.ErrWriter
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("copying %s: %w", d, err)
		}
	}
	if err := exec.CommandContext(ctx, "sync").Run(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	rows = append(rows, row{"cp -r of the stores (+sync)", time.Since(t0).Seconds(), storeBytes, fmt.Sprintf("%d stores, every row x3 replicas", len(stores))})
	os.RemoveAll(copyDir)

	if srv, err = open(""); err != nil {
		return err
	}
	defer func() { srv.Close() }()

	run := func(what, stmt string) error {
		t := time.Now()
		res, err := srv.Exec(ctx, stmt, server.ExecOptions{})
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		_ = res
		rows = append(rows, row{what: what, secs: time.Since(t).Seconds()})
		return nil
	}
	if err := run("BACKUP (full, nodelocal)", "BACKUP DATABASE movr INTO 'nodelocal://1/bench'"); err != nil {
		return err
	}
	rows[len(rows)-1].onDisk = dirSize(filepath.Join(clusterDir, "n1", "extern", "bench"))
	rows[len(rows)-1].comment = "sstables written once"
	if err := run("RESTORE (new_db_name)", "RESTORE DATABASE movr FROM LATEST IN 'nodelocal://1/bench' WITH new_db_name = 'movr_bench'"); err != nil {
		return err
	}
	rows[len(rows)-1].comment = "ingested into 3 replicas"

	// The same backup through a storage plugin out of process, against the
	// same local-store code in process, both to file://. Rounds alternate
	// which goes first; each starts from a freshly opened cluster with the
	// page cache's dirty pages written back (sync), so neither pays for the
	// other's writes. The medians are compared.
	if benchPlugins := c.String("bench-plugins"); benchPlugins != "" {
		rounds := c.Int("rounds")
		if rounds < 1 {
			return fmt.Errorf("bench: --rounds must be at least 1")
		}
		// Only the storage plugin differs between the two: the other
		// plugins of the directory (locality, cloud stores) stay out.
		bin := filepath.Join(benchPlugins, "storage-local")
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("bench: --bench-plugins: %w", err)
		}
		pluginDir := filepath.Join(dir, "plugins")
		if err := os.MkdirAll(pluginDir, 0o755); err != nil {
			return err
		}
		if abs, err := filepath.Abs(bin); err != nil {
			return err
		} else if err := os.Symlink(abs, filepath.Join(pluginDir, "storage-local")); err != nil {
			return err
		}
		type mode struct {
			what, key, pluginDir, comment string
			secs                          []float64
		}
		modes := []*mode{
			{what: "BACKUP to file:// in process", key: "inproc", comment: "core/cloud/local in the node's process"},
			{what: "BACKUP to file:// via plugin", key: "plugin", pluginDir: pluginDir},
		}
		for r := range rounds {
			for i := range modes {
				m := modes[(i+r)%len(modes)]
				srv.Close()
				if srv, err = open(m.pluginDir); err != nil {
					return err
				}
				if err := exec.CommandContext(ctx, "sync").Run(); err != nil {
					return fmt.Errorf("sync: %w", err)
				}
				dest := filepath.Join(dir, fmt.Sprintf("file-%s-%d", m.key, r))
				stopProfile, err := startProfile(fmt.Sprintf("%s-%d", m.key, r))
				if err != nil {
					return err
				}
				t := time.Now()
				if _, err := srv.Exec(ctx, fmt.Sprintf("BACKUP DATABASE movr INTO 'file://%s'", dest), server.ExecOptions{}); err != nil {
					return fmt.Errorf("%s: %w", m.what, err)
				}
				m.secs = append(m.secs, time.Since(t).Seconds())
				stopProfile()
				if r < rounds-1 {
					os.RemoveAll(dest) // the last one is restored below
				}
			}
		}
		// One restore each, from that mode's last backup.
		var restoreSecs []float64
		for _, m := range modes {
			srv.Close()
			if srv, err = open(m.pluginDir); err != nil {
				return err
			}
			if err := exec.CommandContext(ctx, "sync").Run(); err != nil {
				return fmt.Errorf("sync: %w", err)
			}
			src := filepath.Join(dir, fmt.Sprintf("file-%s-%d", m.key, rounds-1))
			t := time.Now()
			stmt := fmt.Sprintf("RESTORE DATABASE movr FROM LATEST IN 'file://%s' WITH new_db_name = 'movr_%s'", src, m.key)
			if _, err := srv.Exec(ctx, stmt, server.ExecOptions{}); err != nil {
				return fmt.Errorf("restoring %s: %w", m.what, err)
			}
			restoreSecs = append(restoreSecs, time.Since(t).Seconds())
			os.RemoveAll(src)
		}
		for _, m := range modes {
			rows = append(rows, row{what: m.what, secs: median(m.secs), comment: m.comment})
			if rounds > 1 {
				rows[len(rows)-1].comment += fmt.Sprintf("; median of %d rounds: %s s", rounds, fmtSecs(m.secs))
			}
		}
		ratio := median(modes[0].secs) / median(modes[1].secs)
		last := &rows[len(rows)-1]
		last.comment = fmt.Sprintf("the same store served by the storage-local plugin (bytes handed over as spool files); %.2fx the in-process backup%s", ratio, last.comment)
		rows = append(rows,
			row{what: "RESTORE from file:// in process", secs: restoreSecs[0], comment: "one run, from the in-process backup"},
			row{what: "RESTORE from file:// via plugin", secs: restoreSecs[1],
				comment: fmt.Sprintf("one run, from the plugin's backup; %.2fx the in-process restore", restoreSecs[0]/restoreSecs[1])})
	}

	fmt.Fprintf(out, "cairn bench: %d nodes, movr %s logical (%d rows)\n\n", len(srv.Nodes), humanBytes(stats.Bytes), stats.Rows)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "operation\tseconds\tlogical MB/s\ton-disk MB\tvs cp -r\t")
	base := logical / rows[0].secs
	for _, r := range rows {
		rate := logical / r.secs
		disk := "-"
		if r.onDisk > 0 {
			disk = fmt.Sprintf("%.1f", float64(r.onDisk)/1e6)
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%.1f\t%s\t%.2fx\t\n", r.what, r.secs, rate/1e6, disk, rate/base)
	}
	tw.Flush()
	fmt.Fprintln(out)
	for _, r := range rows {
		fmt.Fprintf(out, "  %s: %s\n", r.what, r.comment)
	}
	return nil
}

var _ io.Writer

// startProfile writes a CPU profile of the cairn process to
// $CAIRN_BENCH_CPUPROFILE-<name>.pprof until the returned function is
// called; without the variable it does nothing.
func startProfile(name string) (func(), error) {
	prefix := os.Getenv("CAIRN_BENCH_CPUPROFILE")
	if prefix == "" {
		return func() {}, nil
	}
	f, err := os.Create(prefix + "-" + strings.ReplaceAll(name, " ", "_") + ".pprof")
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// median of xs (not empty); xs is left as it was.
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func fmtSecs(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(parts, ", ")
}
