// Command cairn is the operator's CLI: it runs backups and restores of the
// reference cluster, shows collections and jobs, and runs the demo.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Stdout, os.Stderr)
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

// run is the whole CLI, callable from tests: results go to stdout,
// progress and logs to stderr, and the error is for the caller to print.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	app := newApp()
	app.Writer = stdout
	app.ErrWriter = stderr
	return app.RunContext(ctx, args)
}
