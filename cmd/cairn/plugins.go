package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/core/pluginhost"
)

// pluginDirFlag goes on every command that opens the cluster (see
// withPluginDir): every node starts the plugins it finds there.
var pluginDirFlag = &cli.StringFlag{
	Name: "plugin-dir", EnvVars: []string{pluginhost.EnvDir},
	Usage: "directory of plugin binaries; every node runs its own processes of them, and storage plugins take over the schemes they serve (file:// included)",
}

// withPluginDir adds --plugin-dir to every command, at any depth, that
// has --data-dir, i.e. that opens the cluster.
func withPluginDir(cmds []*cli.Command) {
	for _, cmd := range cmds {
		for _, f := range cmd.Flags {
			if f == dataDirFlag {
				cmd.Flags = append(cmd.Flags, pluginDirFlag)
				break
			}
		}
		withPluginDir(cmd.Subcommands)
	}
}

func pluginsCommand() *cli.Command {
	return &cli.Command{
		Name:  "plugins",
		Usage: "inspect plugins",
		Subcommands: []*cli.Command{{
			Name:  "list",
			Usage: "start each plugin in the plugin directory and show what it serves",
			Description: `Without --plugin-dir or CAIRN_PLUGIN_DIR, lists the plugins directory next to
the cairn binary (make build puts them in bin/plugins).`,
			ArgsUsage: " ",
			Flags:     []cli.Flag{pluginDirFlag, formatFlag, verboseFlag},
			Action: func(c *cli.Context) error {
				dir := c.String("plugin-dir")
				if dir == "" {
					exe, err := os.Executable()
					if err != nil {
						return fmt.Errorf("finding the default plugin directory: %w", err)
					}
					dir = filepath.Join(filepath.Dir(exe), "plugins")
				}
				ctx, cancel := context.WithTimeout(c.Context, 2*time.Minute)
				defer cancel()
				h, err := pluginhost.New(ctx, pluginhost.Config{Dir: dir, Logger: logger(c)})
				if err != nil {
					return err
				}
				defer h.Close()
				return printPlugins(c.App.Writer, c.String("format"), h.Plugins())
			},
		}},
	}
}

// pluginRow is one plugin as `cairn plugins list --format json` prints it.
type pluginRow struct {
	Name         string   `json:"name"`
	Version      string   `json:"version"`
	Kinds        []string `json:"kinds"`
	Schemes      []string `json:"schemes,omitempty"`
	Capabilities []string `json:"capabilities,omitempty"`
	Policies     []string `json:"policies,omitempty"`
	Protocols    []int    `json:"protocols"`
	Protocol     int      `json:"protocol"`
	Path         string   `json:"path"`
}

func printPlugins(w io.Writer, format string, ps []pluginhost.PluginInfo) error {
	rows := make([]pluginRow, 0, len(ps))
	for _, p := range ps {
		rows = append(rows, pluginRow{
			Name: p.Info.Name, Version: p.Info.Version, Kinds: p.Info.Kinds, Schemes: p.Info.Schemes,
			Capabilities: p.Info.Capabilities, Policies: p.Info.Policies,
			Protocols: p.Info.Protocols, Protocol: p.Protocol, Path: p.Path,
		})
	}
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	case "table", "":
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tVERSION\tKINDS\tSCHEMES\tPROTOCOLS\tPATH")
		for _, r := range rows {
			protos := make([]string, len(r.Protocols))
			for i, p := range r.Protocols {
				protos[i] = strconv.Itoa(p)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Version, strings.Join(r.Kinds, ","),
				dash(strings.Join(r.Schemes, ",")), strings.Join(protos, ","), r.Path)
		}
		return tw.Flush()
	default:
		return fmt.Errorf("unknown --format %q (want table or json)", format)
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
