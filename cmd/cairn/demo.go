package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/core/hlc"
	"github.com/cairnbackup/cairn/core/server"
	"github.com/cairnbackup/cairn/core/workload/movr"
)

func parseTS(s string) (hlc.Timestamp, error) { return hlc.Parse(s) }

// peakRSS returns the process's peak resident set size in bytes.
func peakRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Maxrss * 1024
}

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "run the whole flow on an in-process cluster: load movr, back it up under writes, restore, compare",
		Description: `Starts --nodes in-process nodes in 3 regions with an embedded etcd, loads the movr
dataset, and runs a full BACKUP to nodelocal://1/demo while a light workload keeps
writing. Then it shows the backup, restores it as movr_restored, and prints the
fingerprints of movr at the backup's end time and of movr_restored side by side.
It exits non-zero unless they are equal.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "bytes", Value: "100MB", Usage: "approximate size of movr to load"},
			&cli.IntFlag{Name: "rows", Usage: "load this many rows instead of --bytes"},
			&cli.Int64Flag{Name: "seed", Value: 1, Usage: "dataset seed"},
			&cli.Float64Flag{Name: "workload-rate", Value: 200, Usage: "operations per second of the workload during the backup (0 = none)"},
			&cli.StringFlag{Name: "dir", Usage: "keep the cluster in this directory (default: a temporary one, removed afterwards)"},
			nodesFlag, formatFlag, verboseFlag,
		},
		Action: runDemo,
	}
}

func runDemo(c *cli.Context) error {
	ctx := c.Context
	out := c.App.Writer
	cfg, err := movrConfig(c)
	if err != nil {
		return err
	}
	dir := c.String("dir")
	if dir == "" {
		dir, err = os.MkdirTemp("", "cairn-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	start := time.Now()
	srv, err := server.StartLocal(ctx, server.Config{
		Dir: dir, Nodes: c.Int("nodes"), Logger: logger(c), RegionOf: movr.RegionOfKey,
		AdoptInterval: 200 * time.Millisecond, CheckpointEvery: 2 * time.Second,
	})
	if err != nil {
		return err
	}
	defer srv.Close()
	fmt.Fprintf(out, "started %d nodes in %s (data in %s)\n", len(srv.Nodes), time.Since(start).Round(time.Millisecond), dir)
	for _, n := range srv.Nodes {
		fmt.Fprintf(out, "  node %d  %s  %s\n", n.Node.ID, n.Node.Addr(), n.Node.Locality)
	}

	ids, err := srv.CreateMovr(ctx, "movr")
	if err != nil {
		return err
	}
	loadStart := time.Now()
	stats, err := loadMovr(ctx, srv, ids, cfg)
	if err != nil {
		return err
	}
	el := time.Since(loadStart)
	fmt.Fprintf(out, "loaded movr: %d rows, %s in %s (%.1f MB/s)\n", stats.Rows, humanBytes(stats.Bytes), el.Round(time.Millisecond), float64(stats.Bytes)/1e6/el.Seconds())

	// A light workload writes while the backup runs.
	wctx, stopWorkload := context.WithCancel(ctx)
	type wres struct {
		stats movr.RunStats
		err   error
	}
	wdone := make(chan wres, 1)
	if rate := c.Float64("workload-rate"); rate > 0 {
		go func() {
			st, err := movr.Run(wctx, server.KV{Node: srv.Nodes[len(srv.Nodes)-1].Node}, ids, movr.RunConfig{
				Seed: cfg.Seed + 1, LoadSeed: cfg.Seed, Concurrency: 2, MaxOpsPerSecond: rate, LoadedRows: stats.PerTable,
			})
			wdone <- wres{st, err}
		}()
	} else {
		wdone <- wres{}
	}

	const uri = "nodelocal://1/demo"
	fmt.Fprintf(out, "\n> BACKUP DATABASE movr INTO '%s'\n", uri)
	bStart := time.Now()
	res, err := execute(c, srv, fmt.Sprintf("BACKUP DATABASE movr INTO '%s'", uri), out)
	bEl := time.Since(bStart)
	stopWorkload()
	w := <-wdone
	if err != nil {
		return err
	}
	if w.err != nil {
		return fmt.Errorf("workload: %w", w.err)
	}
	fmt.Fprintf(out, "backup took %s (%.1f MB/s logical); the workload applied %d inserts, %d updates, %d deletes meanwhile\n",
		bEl.Round(time.Millisecond), float64(stats.Bytes)/1e6/bEl.Seconds(), w.stats.Inserts, w.stats.Updates, w.stats.Deletes)
	_ = res

	fmt.Fprintf(out, "\n> SHOW BACKUP FROM LATEST IN '%s'\n", uri)
	show, err := execute(c, srv, fmt.Sprintf("SHOW BACKUP FROM LATEST IN '%s'", uri), out)
	if err != nil {
		return err
	}
	if len(show.Rows) == 0 {
		return errors.New("SHOW BACKUP returned no tables")
	}
	endTS, err := hlc.Parse(show.Rows[0][5])
	if err != nil {
		return fmt.Errorf("reading the backup's end time: %w", err)
	}

	fmt.Fprintf(out, "\n> RESTORE DATABASE movr FROM LATEST IN '%s' WITH new_db_name = 'movr_restored'\n", uri)
	rStart := time.Now()
	if _, err := execute(c, srv, fmt.Sprintf("RESTORE DATABASE movr FROM LATEST IN '%s' WITH new_db_name = 'movr_restored'", uri), out); err != nil {
		return err
	}
	rEl := time.Since(rStart)
	fmt.Fprintf(out, "restore took %s (%.1f MB/s logical)\n", rEl.Round(time.Millisecond), float64(stats.Bytes)/1e6/rEl.Seconds())

	src, err := srv.Fingerprint(ctx, "movr", endTS)
	if err != nil {
		return err
	}
	dst, err := srv.Fingerprint(ctx, "movr_restored", srv.Gateway().Node.Clock.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nfingerprints at the backup's end time %s:\n", endTS)
	fmt.Fprintf(out, "  movr           %s  rows=%d\n", src.Hex(), src.Rows)
	fmt.Fprintf(out, "  movr_restored  %s  rows=%d\n", dst.Hex(), dst.Rows)
	fmt.Fprintf(out, "peak memory (RSS): %s\n", humanBytes(peakRSS()))
	if src != dst {
		return errors.New("demo: the restored database differs from the source at the backup's end time")
	}
	fmt.Fprintln(out, "OK: the restore equals the source at the backup's end time")
	return nil
}
