package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairnbackup/cairn/core/cluster"
)

func certCommand() *cli.Command {
	certsDir := &cli.StringFlag{Name: "certs-dir", Value: "certs", EnvVars: []string{"CAIRN_CERTS_DIR"}, Usage: "directory to write the certificates to"}
	lifetime := &cli.DurationFlag{Name: "lifetime", Value: 5 * 365 * 24 * time.Hour, Usage: "validity of the certificate"}
	return &cli.Command{
		Name:  "cert",
		Usage: "create the certificates for node-to-node and client mTLS",
		Description: `Example, for nodes on one machine:
  cairn cert create-ca --certs-dir certs
  cairn cert create-node --certs-dir certs 127.0.0.1 localhost
  cairn start --certs-dir certs --store n1 ...
A node trusts only peers and clients whose certificate the CA in its --certs-dir
signed; the CLI presents node.crt as its client certificate.`,
		Subcommands: []*cli.Command{{
			Name:      "create-ca",
			Usage:     "create a CA (ca.crt, ca.key); existing files are never overwritten",
			ArgsUsage: " ",
			Flags:     []cli.Flag{certsDir, lifetime},
			Action: func(c *cli.Context) error {
				if err := cluster.CreateCA(c.String("certs-dir"), c.Duration("lifetime")); err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "wrote %s and %s\n", filepath.Join(c.String("certs-dir"), cluster.CACertFile), filepath.Join(c.String("certs-dir"), cluster.CAKeyFile))
				return nil
			},
		}, {
			Name:      "create-node",
			Usage:     "create node.crt and node.key for the given hosts, signed by the CA",
			ArgsUsage: "<host or IP>...",
			Flags: []cli.Flag{certsDir, lifetime,
				&cli.StringFlag{Name: "ca-dir", Usage: "directory holding ca.crt and ca.key (default --certs-dir)"}},
			Action: func(c *cli.Context) error {
				if c.NArg() == 0 {
					return fmt.Errorf("create-node needs at least one host name or IP address the node is reached at")
				}
				caDir := c.String("ca-dir")
				if caDir == "" {
					caDir = c.String("certs-dir")
				}
				if err := cluster.CreateNodeCert(c.String("certs-dir"), caDir, c.Args().Slice(), c.Duration("lifetime")); err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "wrote %s and %s\n", filepath.Join(c.String("certs-dir"), cluster.NodeCertFile), filepath.Join(c.String("certs-dir"), cluster.NodeKeyFile))
				return nil
			},
		}},
	}
}
