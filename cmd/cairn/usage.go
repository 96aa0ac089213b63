package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// This file adapts urfave/cli v2 to what an operator expects of cairn:
//   - flags may follow positional arguments (cli v2 stops parsing flags at
//     the first argument, so `cairn backups nodelocal://1/b --format json`
//     would silently take --format and json as two more URIs);
//   - a usage mistake (unknown flag or command, missing required flag,
//     stray argument) is one line on stderr naming the problem, not the
//     whole help page on stdout;
//   - run never calls os.Exit: cli's default exit handler does for errors
//     that carry an exit code, which would end a test binary.

// commandPath returns the command named by the leading words of args
// (after the program name) and how many words named it; nil at the root.
func commandPath(cmds []*cli.Command, args []string) (*cli.Command, int) {
	var cmd *cli.Command
	n := 0
	for n < len(args) {
		var next *cli.Command
		for _, c := range cmds {
			if c.HasName(args[n]) {
				next = c
				break
			}
		}
		if next == nil {
			break
		}
		cmd, cmds = next, next.Subcommands
		n++
	}
	return cmd, n
}

// lookupFlag returns the flag of cmd called name (without dashes), or nil.
func lookupFlag(cmd *cli.Command, name string) cli.Flag {
	if name == "help" || name == "h" {
		return cli.HelpFlag
	}
	for _, f := range cmd.Flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}

// takesValue reports whether a flag consumes the following word when it is
// written without "=".
func takesValue(f cli.Flag) bool {
	if f == nil {
		return false // unknown: cli reports it; consuming a word would hide it
	}
	if _, ok := f.(*cli.BoolFlag); ok {
		return false
	}
	return true
}

// permuteArgs moves the positional arguments of the command that args
// name after its flags, so cli v2 parses flags wherever they are written.
// Everything after "--" stays positional and in order.
func permuteArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	cmd, n := commandPath(app.Commands, args[1:])
	if cmd == nil {
		return args
	}
	head := args[:1+n]
	rest := args[1+n:]
	var flags, positional []string
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			positional = append(positional, rest[i:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			positional = append(positional, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if takesValue(lookupFlag(cmd, name)) && i+1 < len(rest) {
			i++
			flags = append(flags, rest[i])
		}
	}
	if len(positional) > 0 && cmd.Command(positional[0]) != nil {
		// Flags of cmd before its subcommand's name: cli handles those.
		return args
	}
	out := append([]string{}, head...)
	out = append(out, flags...)
	return append(out, positional...)
}

// commandName is the command's path without the program name, such as
// "jobs show"; empty at the root.
func commandName(c *cli.Context) string {
	if c.Command == nil {
		return ""
	}
	return strings.TrimPrefix(strings.TrimPrefix(c.Command.HelpName, c.App.Name), " ")
}

// seeHelp points at the help of the command c runs.
func seeHelp(c *cli.Context) string {
	return "(see " + strings.TrimSpace(c.App.Name+" "+commandName(c)) + " --help)"
}

// prefixed puts the command's path before msg, when there is one.
func prefixed(c *cli.Context, msg string) string {
	if n := commandName(c); n != "" {
		return n + ": " + msg
	}
	return msg
}

func usageError(c *cli.Context, err error, _ bool) error {
	// The flag package writes every flag with one dash.
	dashed := func(f string) string {
		name := strings.TrimLeft(f, "-")
		if len(name) > 1 {
			return "--" + name
		}
		return "-" + name
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		msg = "unknown flag " + dashed(f)
	} else if f, ok := strings.CutPrefix(msg, "flag needs an argument: "); ok {
		msg = "flag " + dashed(f) + " needs a value"
	}
	return fmt.Errorf("%s %s", prefixed(c, msg), seeHelp(c))
}

// harden applies the conventions above to every command of app.
func harden(app *cli.App) {
	app.ExitErrHandler = func(*cli.Context, error) {}
	app.OnUsageError = usageError
	app.Action = unknownCommand
	var walk func([]*cli.Command)
	walk = func(cmds []*cli.Command) {
		for _, cmd := range cmds {
			cmd.OnUsageError = usageError
			requireFlags(cmd)
			if len(cmd.Subcommands) > 0 {
				if cmd.Action == nil {
					cmd.Action = unknownCommand
				}
				walk(cmd.Subcommands)
			} else if strings.TrimSpace(cmd.ArgsUsage) == "" {
				before := cmd.Before
				cmd.Before = func(c *cli.Context) error {
					if c.NArg() > 0 {
						return fmt.Errorf("%s takes no arguments, got %q %s", commandName(c), c.Args().First(), seeHelp(c))
					}
					if before != nil {
						return before(c)
					}
					return nil
				}
			}
		}
	}
	walk(app.Commands)
}

// unknownCommand is the action of the app and of commands that only group
// subcommands: with no argument it shows help, else it names the mistake.
func unknownCommand(c *cli.Context) error {
	if c.NArg() == 0 {
		if c.Command == nil || c.Command.Name == "" {
			return cli.ShowAppHelp(c)
		}
		return cli.ShowSubcommandHelp(c)
	}
	return fmt.Errorf("%s %s", prefixed(c, fmt.Sprintf("unknown command %q", c.Args().First())), seeHelp(c))
}

// requireFlags replaces cli's required-flag check, which prints the whole
// help page to stdout, with a one-line error; help marks the flag required.
func requireFlags(cmd *cli.Command) {
	var names []string
	for _, f := range cmd.Flags {
		switch f := f.(type) {
		case *cli.StringFlag:
			if f.Required {
				f.Required = false
				f.Usage += " (required)"
				names = append(names, f.Name)
			}
		case *cli.StringSliceFlag:
			if f.Required {
				f.Required = false
				f.Usage += " (required)"
				names = append(names, f.Name)
			}
		case cli.RequiredFlag:
			if f.IsRequired() {
				panic(fmt.Sprintf("cairn: required flag %v of %s: handle its type in requireFlags", f.Names(), cmd.Name))
			}
		}
	}
	if len(names) == 0 {
		return
	}
	before := cmd.Before
	cmd.Before = func(c *cli.Context) error {
		var missing []string
		for _, n := range names {
			if !c.IsSet(n) {
				missing = append(missing, "--"+n)
			}
		}
		switch len(missing) {
		case 0:
		case 1:
			return fmt.Errorf("%s: missing required flag %s %s", commandName(c), missing[0], seeHelp(c))
		default:
			return fmt.Errorf("%s: missing required flags %s %s", commandName(c), strings.Join(missing, ", "), seeHelp(c))
		}
		if before != nil {
			return before(c)
		}
		return nil
	}
}
