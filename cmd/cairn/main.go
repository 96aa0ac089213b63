// Command cairn is the operator's CLI: it runs backups and restores of the
// reference cluster, shows collections and jobs, and runs the demo.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args)
	stop()
	if err != nil {
		var exit cli.ExitCoder
		if errors.As(err, &exit) && exit.Error() == "" {
			os.Exit(exit.ExitCode())
		}
		fmt.Fprintln(os.Stderr, "cairn: "+err.Error())
		os.Exit(1)
	}
}

// run is the whole CLI, callable from tests.
func run(ctx context.Context, args []string) error {
	app := newApp()
	return app.RunContext(ctx, args)
}
