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
		os.Exit(reportError(os.Stderr, err))
	}
}

// reportError prints err as main does and returns the exit code.
func reportError(w io.Writer, err error) int {
	code := 1
	var exit cli.ExitCoder
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintln(w, "cairn: "+msg)
	}
	return code
}

// run is the whole CLI, callable from tests: results go to stdout,
// progress and logs to stderr, and the error is for the caller to print.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	app := newApp()
	app.Writer = stdout
	app.ErrWriter = stderr
	harden(app)
	return app.RunContext(ctx, permuteArgs(app, args))
}
