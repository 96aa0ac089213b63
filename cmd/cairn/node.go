package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/core/server"
)

var clusterDirFlag = &cli.StringFlag{
	Name: "dir", Value: "cairn-cluster", EnvVars: []string{"CAIRN_CLUSTER_DIR"},
	Usage: "state directory of cairn cluster up (" + clusterStateFile + ": pids and addresses; one subdirectory and log per node)",
}

// nodeHost is --host, else the first node recorded in --dir.
func nodeHost(c *cli.Context) (string, error) {
	if h := c.String("host"); h != "" {
		return h, nil
	}
	h, err := stateHost(c.String("dir"))
	if err != nil {
		return "", fmt.Errorf("finding a node: pass --host, or start a cluster with `cairn cluster up`: %w", err)
	}
	return h, nil
}

func nodeCommand() *cli.Command {
	flags := func(extra ...cli.Flag) []cli.Flag {
		return append(extra, hostFlag, clusterDirFlag, certsDirFlag, insecureFlag, formatFlag)
	}
	return &cli.Command{
		Name:  "node",
		Usage: "inspect and drain the nodes of a running cluster",
		Subcommands: []*cli.Command{{
			Name:      "status",
			Usage:     "list the cluster's nodes: address, locality, liveness, draining, jobs they coordinate",
			ArgsUsage: " ",
			Flags:     flags(),
			Action: func(c *cli.Context) error {
				host, err := nodeHost(c)
				if err != nil {
					return err
				}
				cl, err := dialHost(c, host)
				if err != nil {
					return err
				}
				defer cl.Close()
				st, err := cl.Status(c.Context)
				if err != nil {
					return fmt.Errorf("reading node status from %s: %w", host, err)
				}
				res := &server.Result{Columns: []string{"id", "address", "locality", "is_live", "is_draining", "running_jobs", "metrics"}}
				for _, n := range st.Nodes {
					var ids []string
					for _, j := range n.RunningJobs {
						ids = append(ids, strconv.FormatInt(j, 10))
					}
					res.Rows = append(res.Rows, []string{
						strconv.Itoa(int(n.Id)), n.Address, n.Locality, strconv.FormatBool(n.Live),
						strconv.FormatBool(n.Draining), strings.Join(ids, ","), n.HttpAddress,
					})
				}
				return printResult(c.App.Writer, c.String("format"), res)
			},
		}, {
			Name:      "drain",
			Usage:     "stop a node adopting jobs and hand the jobs it coordinates to other nodes",
			ArgsUsage: "[<node id>]",
			Description: `Drains the node with the given id (its address is looked up through --host), or
the node at --host itself. The node's running jobs keep their state: their claims are
released and other live nodes adopt and resume them from their last checkpoint. The
drained node keeps serving reads and exports for other nodes' plans; stop its process
when they no longer need it.`,
			Flags: flags(),
			Action: func(c *cli.Context) error {
				if c.NArg() > 1 {
					return fmt.Errorf("node drain takes at most one node id, got %d arguments", c.NArg())
				}
				host, err := nodeHost(c)
				if err != nil {
					return err
				}
				if c.NArg() == 1 {
					id, err := strconv.Atoi(c.Args().First())
					if err != nil || id <= 0 {
						return fmt.Errorf("node id %q is not a positive integer", c.Args().First())
					}
					if host, err = nodeAddr(c, host, int32(id)); err != nil {
						return err
					}
				}
				cl, err := dialHost(c, host)
				if err != nil {
					return err
				}
				defer cl.Close()
				resp, err := cl.Drain(c.Context)
				if err != nil {
					return fmt.Errorf("draining the node at %s: %w", host, err)
				}
				var ids []string
				for _, j := range resp.HandedOver {
					ids = append(ids, strconv.FormatInt(j, 10))
				}
				if len(ids) == 0 {
					ids = []string{"none"}
				}
				fmt.Fprintf(c.App.Writer, "node at %s drained; jobs handed over: %s\n", host, strings.Join(ids, ", "))
				return nil
			},
		}},
	}
}

// nodeAddr looks node id's address up through the node at host.
func nodeAddr(c *cli.Context, host string, id int32) (string, error) {
	cl, err := dialHost(c, host)
	if err != nil {
		return "", err
	}
	defer cl.Close()
	st, err := cl.Status(c.Context)
	if err != nil {
		return "", fmt.Errorf("reading node status from %s: %w", host, err)
	}
	for _, n := range st.Nodes {
		if n.Id == id {
			if !n.Live {
				return "", fmt.Errorf("node %d is not live", id)
			}
			return n.Address, nil
		}
	}
	return "", fmt.Errorf("node %d does not exist", id)
}
