package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/cairnbackup/cairn/core/jobs"
	"github.com/cairnbackup/cairn/core/server"
	"github.com/cairnbackup/cairn/core/sql"
	"github.com/cairnbackup/cairn/core/workload/movr"
)

var dataDirFlag = &cli.StringFlag{
	Name: "data-dir", Value: "cairn-data", EnvVars: []string{"CAIRN_DATA_DIR"},
	Usage: "directory of the embedded in-process cluster (etcd and every node's store); created on first use and reopened after",
}

var formatFlag = &cli.StringFlag{Name: "format", Value: "table", Usage: "output format: table or json"}

var nodesFlag = &cli.IntFlag{Name: "nodes", Value: 9, Usage: "number of in-process nodes, spread over 3 regions"}

var userFlag = &cli.StringFlag{Name: "user", Value: "root", Usage: "user the statement runs as (privileges are checked)"}

var verboseFlag = &cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "log what the cluster does to stderr"}

func newApp() *cli.App {
	app := &cli.App{
		Name:  "cairn",
		Usage: "distributed, locality-aware backup and restore for MVCC key-value clusters",
		Description: `cairn backs up and restores the reference cluster: nodes with Pebble MVCC stores,
ranges with replicas and leaseholders, and a control plane in etcd. By default every
command runs the cluster embedded, in-process, in --data-dir.

Examples:
  cairn demo                                   # load movr, back it up, restore it, compare fingerprints
  cairn workload init movr --bytes 50MB        # create and load the movr database
  cairn sql -e "BACKUP DATABASE movr INTO 'nodelocal://1/backups'"
  cairn backups nodelocal://1/backups          # SHOW BACKUPS IN ...
  cairn sql -e "RESTORE DATABASE movr FROM LATEST IN 'nodelocal://1/backups' WITH new_db_name = 'movr2'"
  cairn jobs list`,
		HideHelpCommand: true,
		// Statements hold commas (DATABASE a, b; WITH x, y): -e must take
		// each value whole.
		DisableSliceFlagSeparator: true,
		Commands: []*cli.Command{
			demoCommand(),
			sqlCommand(),
			backupCommand(),
			restoreCommand(),
			backupsCommand(),
			jobsCommand(),
			workloadCommand(),
			fingerprintCommand(),
			userCommand(),
			benchCommand(),
			pluginsCommand(),
			startCommand(),
			clusterCommand(),
			nodeCommand(),
			certCommand(),
		},
	}
	withPluginDir(app.Commands)
	withHostFlags(app.Commands, "")
	return app
}

func logger(c *cli.Context) *slog.Logger {
	if c.Bool("verbose") {
		return slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// openCluster starts the embedded cluster in --data-dir.
func openCluster(c *cli.Context) (*server.Server, error) {
	dir := c.String("data-dir")
	if dir == "" {
		return nil, fmt.Errorf("--data-dir must not be empty")
	}
	return server.StartLocal(c.Context, server.Config{
		Dir: dir, Nodes: c.Int("nodes"), Logger: logger(c), RegionOf: movr.RegionOfKey,
		AdoptInterval: 200 * time.Millisecond, CheckpointEvery: c.Duration("checkpoint-interval"),
		PluginDir: c.String("plugin-dir"),
	})
}

var checkpointFlag = &cli.DurationFlag{
	Name: "checkpoint-interval", Value: 5 * time.Second,
	Usage: "how often a running backup writes a checkpoint (and updates its progress)",
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progressBar returns an OnProgress callback that draws a bar on a
// terminal, and a function to finish it.
func progressBar(label string) (func(jobs.Record), func()) {
	if !isTerminal(os.Stderr) {
		return nil, func() {}
	}
	p := mpb.New(mpb.WithOutput(os.Stderr), mpb.WithWidth(40))
	bar := p.AddBar(1000,
		mpb.PrependDecorators(decor.Name(label+" "), decor.Percentage()),
		mpb.AppendDecorators(decor.Elapsed(decor.ET_STYLE_GO)),
	)
	return func(r jobs.Record) {
			bar.SetCurrent(int64(r.Fraction * 1000))
		}, func() {
			bar.SetCurrent(1000)
			bar.Abort(false)
			p.Wait()
		}
}

// execute runs one statement and prints its result.
func execute(c *cli.Context, srv *server.Server, stmt string, out io.Writer) (*server.Result, error) {
	st, err := sql.Parse(stmt)
	if err != nil {
		return nil, err
	}
	opts := server.ExecOptions{User: c.String("user")}
	var done func() = func() {}
	switch st.(type) {
	case *sql.Backup, *sql.Restore:
		opts.OnProgress, done = progressBar(strings.Fields(stmt)[0])
	}
	res, err := srv.ExecStatement(c.Context, st, opts)
	done()
	if res != nil {
		if perr := printResult(out, c.String("format"), res); perr != nil && err == nil {
			err = perr
		}
	}
	return res, err
}

func printResult(w io.Writer, format string, res *server.Result) error {
	switch format {
	case "json":
		var rows []map[string]string
		for _, r := range res.Rows {
			m := map[string]string{}
			for i, col := range res.Columns {
				if i < len(r) {
					m[col] = r[i]
				}
			}
			rows = append(rows, m)
		}
		if rows == nil {
			rows = []map[string]string{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	case "table", "":
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(res.Columns, "\t"))
		for _, r := range res.Rows {
			fmt.Fprintln(tw, strings.Join(r, "\t"))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(w, "(%d row%s)\n", len(res.Rows), plural(len(res.Rows)))
		return nil
	default:
		return fmt.Errorf("unknown --format %q: want table or json", format)
	}
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func sqlCommand() *cli.Command {
	return &cli.Command{
		Name:      "sql",
		Usage:     "execute statements on the embedded cluster",
		ArgsUsage: " ",
		Description: `Runs each -e statement in order and prints its result. Statements:
  BACKUP [DATABASE a, b | TABLE db.t, db.*] INTO 'uri' [AS OF SYSTEM TIME '-10s'] [WITH detached]
  RESTORE DATABASE a FROM LATEST IN 'uri' [WITH new_db_name = 'b', detached]
  SHOW BACKUPS IN 'uri' | SHOW BACKUP FROM LATEST IN 'uri' [WITH check_files]
  SHOW JOBS | SHOW JOB <id> [WHEN COMPLETE] | PAUSE JOB <id> | RESUME JOB <id> | CANCEL JOB <id>
URIs: nodelocal://<node id|self>/path, file:///absolute/path.`,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "execute", Aliases: []string{"e"}, Usage: "statement to run (repeatable)", Required: true},
			dataDirFlag, nodesFlag, formatFlag, userFlag, verboseFlag, checkpointFlag,
		},
		Action: func(c *cli.Context) error {
			stmts := c.StringSlice("execute")
			if c.String("host") != "" {
				return remoteStatements(c, stmts)
			}
			for _, s := range stmts {
				if _, err := sql.Parse(s); err != nil {
					return err
				}
			}
			srv, err := openCluster(c)
			if err != nil {
				return err
			}
			defer srv.Close()
			for _, s := range stmts {
				if _, err := execute(c, srv, s, c.App.Writer); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func backupCommand() *cli.Command {
	return &cli.Command{
		Name:  "backup",
		Usage: "back up databases or tables into a collection (flag form of BACKUP)",
		Description: `Example: cairn backup --database movr --into nodelocal://1/backups
The backup lands in a subdirectory named by its end time, e.g. 2026/11/25-101500.00.`,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "database", Usage: "database to back up (repeatable)"},
			&cli.StringSliceFlag{Name: "table", Usage: "table db.t or db.* to back up (repeatable)"},
			&cli.StringFlag{Name: "into", Usage: "collection URI", Required: true},
			&cli.StringFlag{Name: "subdir", Usage: "explicit subdirectory (default: named by end time)"},
			&cli.StringFlag{Name: "as-of", Usage: "AS OF SYSTEM TIME: a negative duration like -10s, or a timestamp"},
			&cli.BoolFlag{Name: "detached", Usage: "return the job id at once instead of waiting"},
			dataDirFlag, nodesFlag, formatFlag, userFlag, verboseFlag, checkpointFlag,
		},
		Action: func(c *cli.Context) error {
			var b strings.Builder
			b.WriteString("BACKUP ")
			if dbs := c.StringSlice("database"); len(dbs) > 0 {
				b.WriteString("DATABASE " + strings.Join(dbs, ", ") + " ")
			} else if ts := c.StringSlice("table"); len(ts) > 0 {
				b.WriteString("TABLE " + strings.Join(ts, ", ") + " ")
			}
			b.WriteString("INTO ")
			if s := c.String("subdir"); s != "" {
				b.WriteString(quote(s) + " IN ")
			}
			b.WriteString(quote(c.String("into")))
			if a := c.String("as-of"); a != "" {
				b.WriteString(" AS OF SYSTEM TIME " + quote(a))
			}
			if c.Bool("detached") {
				b.WriteString(" WITH detached")
			}
			return runStatement(c, b.String())
		},
	}
}

func runStatement(c *cli.Context, stmt string) error {
	if c.String("host") != "" {
		return remoteStatements(c, []string{stmt})
	}
	if _, err := sql.Parse(stmt); err != nil {
		return err
	}
	srv, err := openCluster(c)
	if err != nil {
		return err
	}
	defer srv.Close()
	_, err = execute(c, srv, stmt, c.App.Writer)
	return err
}

func restoreCommand() *cli.Command {
	return &cli.Command{
		Name:        "restore",
		Usage:       "restore a database from a collection (flag form of RESTORE)",
		Description: `Example: cairn restore --database movr --from nodelocal://1/backups --new-db-name movr2`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "database", Usage: "database to restore", Required: true},
			&cli.StringFlag{Name: "from", Usage: "collection URI", Required: true},
			&cli.StringFlag{Name: "subdir", Usage: "backup subdirectory (default: LATEST)"},
			&cli.StringFlag{Name: "new-db-name", Usage: "restore under this name"},
			&cli.BoolFlag{Name: "detached", Usage: "return the job id at once instead of waiting"},
			dataDirFlag, nodesFlag, formatFlag, userFlag, verboseFlag,
		},
		Action: func(c *cli.Context) error {
			from := "LATEST"
			if s := c.String("subdir"); s != "" {
				from = quote(s)
			}
			stmt := fmt.Sprintf("RESTORE DATABASE %s FROM %s IN %s", c.String("database"), from, quote(c.String("from")))
			var with []string
			if n := c.String("new-db-name"); n != "" {
				with = append(with, "new_db_name = "+quote(n))
			}
			if c.Bool("detached") {
				with = append(with, "detached")
			}
			if len(with) > 0 {
				stmt += " WITH " + strings.Join(with, ", ")
			}
			return runStatement(c, stmt)
		},
	}
}

func backupsCommand() *cli.Command {
	return &cli.Command{
		Name:      "backups",
		Usage:     "list the backups in a collection (SHOW BACKUPS IN)",
		ArgsUsage: "<collection uri>",
		Flags:     []cli.Flag{dataDirFlag, nodesFlag, formatFlag, verboseFlag, userFlag},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("%s takes exactly one collection URI, got %d arguments", commandName(c), c.NArg())
			}
			return runStatement(c, "SHOW BACKUPS IN "+quote(c.Args().First()))
		},
		Subcommands: []*cli.Command{{
			Name:      "show",
			Usage:     "show what one backup holds (SHOW BACKUP)",
			ArgsUsage: "<collection uri>",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "subdir", Usage: "backup subdirectory (default: LATEST)"},
				&cli.BoolFlag{Name: "check-files", Usage: "check that every data file is present with its recorded size"},
				dataDirFlag, nodesFlag, formatFlag, verboseFlag, userFlag,
			},
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return fmt.Errorf("%s takes exactly one collection URI, got %d arguments", commandName(c), c.NArg())
				}
				from := "LATEST"
				if s := c.String("subdir"); s != "" {
					from = quote(s)
				}
				stmt := fmt.Sprintf("SHOW BACKUP FROM %s IN %s", from, quote(c.Args().First()))
				if c.Bool("check-files") {
					stmt += " WITH check_files"
				}
				return runStatement(c, stmt)
			},
		}},
	}
}

func jobIDArg(c *cli.Context) (string, error) {
	if c.NArg() != 1 {
		return "", fmt.Errorf("%s takes exactly one job id, got %d arguments", commandName(c), c.NArg())
	}
	id := c.Args().First()
	if n, err := strconv.ParseInt(id, 10, 64); err != nil || n <= 0 {
		return "", fmt.Errorf("job id %q is not a positive integer", id)
	}
	return id, nil
}

func jobsCommand() *cli.Command {
	flags := []cli.Flag{dataDirFlag, nodesFlag, formatFlag, verboseFlag, userFlag}
	control := func(name, verb string) *cli.Command {
		return &cli.Command{
			Name: name, Usage: verb + " a job", ArgsUsage: "<job id>", Flags: flags,
			Action: func(c *cli.Context) error {
				id, err := jobIDArg(c)
				if err != nil {
					return err
				}
				return runStatement(c, strings.ToUpper(name)+" JOB "+id)
			},
		}
	}
	return &cli.Command{
		Name:  "jobs",
		Usage: "list and control backup and restore jobs",
		Subcommands: []*cli.Command{
			{Name: "list", Usage: "list every job (SHOW JOBS)", Flags: flags, Action: func(c *cli.Context) error {
				return runStatement(c, "SHOW JOBS")
			}},
			{Name: "show", Usage: "show one job (SHOW JOB)", ArgsUsage: "<job id>",
				Flags: append([]cli.Flag{&cli.BoolFlag{Name: "wait", Usage: "wait until the job ends (WHEN COMPLETE)"}}, flags...),
				Action: func(c *cli.Context) error {
					id, err := jobIDArg(c)
					if err != nil {
						return err
					}
					stmt := "SHOW JOB " + id
					if c.Bool("wait") {
						stmt += " WHEN COMPLETE"
					}
					return runStatement(c, stmt)
				}},
			control("pause", "pause"),
			control("resume", "resume"),
			control("cancel", "cancel"),
		},
	}
}

func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(strings.ToUpper(s))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GIB", 1 << 30}, {"MIB", 1 << 20}, {"KIB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("size %q: want a number with an optional unit (KB, MB, GB, KiB, MiB, GiB)", s)
	}
	return int64(f * float64(mult)), nil
}

func workloadCommand() *cli.Command {
	return &cli.Command{
		Name:  "workload",
		Usage: "create and load the movr demo database, or keep writing to it",
		Subcommands: []*cli.Command{{
			Name:      "init",
			Usage:     "create database movr and load it",
			ArgsUsage: "movr",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "bytes", Value: "100MB", Usage: "approximate size to load"},
				&cli.IntFlag{Name: "rows", Usage: "load this many rows instead of --bytes"},
				&cli.Int64Flag{Name: "seed", Value: 1, Usage: "dataset seed"},
				&cli.StringFlag{Name: "db", Value: "movr", Usage: "database name"},
				dataDirFlag, nodesFlag, verboseFlag,
			},
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 || c.Args().First() != "movr" {
					return fmt.Errorf("%s: unknown workload %q: the only workload is movr", commandName(c), strings.Join(c.Args().Slice(), " "))
				}
				if c.String("host") != "" {
					return remoteWorkloadInit(c)
				}
				cfg, err := movrConfig(c)
				if err != nil {
					return err
				}
				srv, err := openCluster(c)
				if err != nil {
					return err
				}
				defer srv.Close()
				ids, err := srv.CreateMovr(c.Context, c.String("db"))
				if err != nil {
					return err
				}
				stats, err := loadMovr(c.Context, srv, ids, cfg)
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "loaded %d rows, %s into %s\n", stats.Rows, humanBytes(stats.Bytes), c.String("db"))
				return nil
			},
		}, workloadRunCommand()},
	}
}

func workloadRunCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "keep writing to a movr database: new rides, users, vehicles and promo codes",
		ArgsUsage: "movr",
		Description: `Inserts movr rows, one row per write, with ids beyond the loaded ones, until
--duration ends or the command is interrupted (which stops it cleanly). It prints how
many operations it applied. With --host the writes run on that node (cairn start),
which is their gateway.

Examples:
  cairn workload run movr --host 127.0.0.1:26257 --insecure --duration 1m --max-rate 200`,
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "duration", Usage: "how long to run; 0 runs until interrupted"},
			&cli.Float64Flag{Name: "max-rate", Usage: "cap on operations per second; 0 is unlimited"},
			&cli.Int64Flag{Name: "seed", Value: 1, Usage: "seed of the operation stream"},
			&cli.StringFlag{Name: "db", Value: "movr", Usage: "database name"},
			dataDirFlag, nodesFlag, verboseFlag,
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 || c.Args().First() != "movr" {
				return fmt.Errorf("%s: unknown workload %q: the only workload is movr", commandName(c), strings.Join(c.Args().Slice(), " "))
			}
			if c.Duration("duration") < 0 || c.Float64("max-rate") < 0 {
				return fmt.Errorf("%s: --duration and --max-rate must not be negative", commandName(c))
			}
			// An interrupt (main cancels c.Context) ends the run like the
			// end of --duration, not with an error.
			ctx := c.Context
			d := c.Duration("duration")
			var ops int64
			if c.String("host") != "" {
				n, interrupted, err := remoteWorkloadRun(ctx, c, d)
				if err != nil {
					return err
				}
				if interrupted {
					fmt.Fprintf(c.App.Writer, "interrupted: the operations applied to %s were not counted\n", c.String("db"))
					return nil
				}
				ops = n
			} else {
				if d > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, d)
					defer cancel()
				}
				srv, err := openCluster(c)
				if err != nil {
					return err
				}
				defer srv.Close()
				ids, err := srv.TableIDs(ctx, c.String("db"))
				if err != nil {
					return err
				}
				st, err := movr.Run(ctx, server.KV{Node: srv.Gateway().Node}, ids, movr.RunConfig{
					Seed: c.Int64("seed"), Concurrency: 2, MaxOpsPerSecond: c.Float64("max-rate"),
				})
				if err != nil {
					return err
				}
				ops = st.Ops()
			}
			fmt.Fprintf(c.App.Writer, "applied %d operations to %s\n", ops, c.String("db"))
			return nil
		},
	}
}

func movrConfig(c *cli.Context) (movr.Config, error) {
	cfg := movr.Config{Seed: c.Int64("seed"), Concurrency: 4, BatchSize: 200}
	if r := c.Int("rows"); r > 0 {
		cfg.Rows = r
		return cfg, nil
	}
	b, err := parseSize(c.String("bytes"))
	if err != nil {
		return cfg, fmt.Errorf("--bytes: %w", err)
	}
	if b <= 0 {
		return cfg, fmt.Errorf("--bytes must be positive")
	}
	cfg.Bytes = b
	return cfg, nil
}

func loadMovr(ctx context.Context, srv *server.Server, ids map[string]uint32, cfg movr.Config) (movr.Stats, error) {
	var onProgress func(int64)
	var finish func() = func() {}
	if isTerminal(os.Stderr) {
		total := cfg.Bytes
		if total == 0 {
			total = int64(cfg.Rows) * 512
		}
		p := mpb.New(mpb.WithOutput(os.Stderr), mpb.WithWidth(40))
		bar := p.AddBar(total, mpb.PrependDecorators(decor.Name("loading movr "), decor.CountersKibiByte("% .1f / % .1f")))
		onProgress = func(done int64) { bar.SetCurrent(min(done, total)) }
		finish = func() { bar.SetCurrent(total); bar.Abort(false); p.Wait() }
	}
	stats, err := movr.Load(ctx, server.KV{Node: srv.Gateway().Node}, ids, cfg, onProgress)
	finish()
	return stats, err
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func fingerprintCommand() *cli.Command {
	return &cli.Command{
		Name:  "fingerprint",
		Usage: "print an order-independent hash of a database's rows at a time",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "database", Required: true, Usage: "database to fingerprint"},
			&cli.StringFlag{Name: "as-of", Usage: "timestamp (nanos[.logical]) to read at; default now"},
			dataDirFlag, nodesFlag, verboseFlag,
		},
		Action: func(c *cli.Context) error {
			if c.String("host") != "" {
				return remoteFingerprint(c)
			}
			srv, err := openCluster(c)
			if err != nil {
				return err
			}
			defer srv.Close()
			ts := srv.Gateway().Node.Clock.Now()
			if a := c.String("as-of"); a != "" {
				if ts, err = parseTS(a); err != nil {
					return fmt.Errorf("--as-of: %w", err)
				}
			}
			fp, err := srv.Fingerprint(c.Context, c.String("database"), ts)
			if err != nil {
				return err
			}
			// The whole sum, so that two runs can be compared.
			fmt.Fprintf(c.App.Writer, "%s at %s: %s rows=%d\n", c.String("database"), ts, fp.Hex(), fp.Rows)
			return nil
		},
	}
}

func privList(privs []string) string {
	if len(privs) == 0 {
		return "none"
	}
	return strings.Join(privs, ", ")
}

func userCommand() *cli.Command {
	return &cli.Command{
		Name:  "user",
		Usage: "manage users and their BACKUP/RESTORE privileges",
		Subcommands: []*cli.Command{{
			Name:      "grant",
			Usage:     "create a user (if needed) and add privileges to it",
			ArgsUsage: "<user> [BACKUP] [RESTORE]",
			Flags:     []cli.Flag{dataDirFlag, nodesFlag, verboseFlag},
			Action: func(c *cli.Context) error {
				if c.NArg() < 1 {
					return fmt.Errorf("user grant needs a user name")
				}
				var privs []string
				for _, p := range c.Args().Tail() {
					p = strings.ToUpper(p)
					if p != "BACKUP" && p != "RESTORE" {
						return fmt.Errorf("unknown privilege %q: want BACKUP or RESTORE", p)
					}
					privs = append(privs, p)
				}
				srv, err := openCluster(c)
				if err != nil {
					return err
				}
				defer srv.Close()
				all, err := srv.Gateway().Node.Meta.Grant(c.Context, c.Args().First(), privs...)
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "user %s: privileges %s\n", c.Args().First(), privList(all))
				return nil
			},
		}},
	}
}
