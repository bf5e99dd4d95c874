package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"unicode"
	"unicode/utf8"
)

// flags is a new, empty flag set for the command.
func (c *call) flags() *flag.FlagSet {
	fs := flag.NewFlagSet(c.cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parse parses the command's arguments: the flags defined on fs (and the global flags, for a command that
// reaches the daemon) mixed freely with positional arguments, in any order; "--" ends the flags, so that what
// follows is positional even when it begins with '-'. It wants n positional arguments (what names them in the
// error; n < 0: any number) and returns them. -h, -help and --help print the command's help and return
// flag.ErrHelp.
func (c *call) parse(fs *flag.FlagSet, n int, what string) ([]string, error) {
	all := fs
	if c.cmd.daemon {
		all = flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
		all.SetOutput(io.Discard)
		fs.VisitAll(func(f *flag.Flag) { all.Var(f.Value, f.Name, f.Usage) })
		c.g.define(all)
	}
	args, err := parseInterleaved(all, c.args)
	if errors.Is(err, flag.ErrHelp) {
		c.help(fs)
		return nil, err
	}
	if err != nil {
		return nil, usageError{fmt.Sprintf("%s: %v (see announcementctl %s -h)", fs.Name(), err, fs.Name())}
	}
	switch {
	case n < 0 || len(args) == n:
		return args, nil
	case n == 0:
		return nil, usageError{fmt.Sprintf("%s: unexpected argument %q", fs.Name(), args[0])}
	}
	return nil, usageError{fmt.Sprintf("%s: want %s (usage: announcementctl %s)", fs.Name(), what, join(c.cmd.name, c.cmd.synopsis))}
}

// parseInterleaved parses flags and positional arguments in any order and returns the positional ones. The flag
// package stops at the first argument that is not a flag; this parses the rest again after taking it, until
// nothing is left or "--" ends the flags.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if endedFlags(fs, args[:len(args)-len(rest)]) {
			return append(pos, rest...), nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// endedFlags reports whether the arguments a Parse consumed end with the "--" that ends the flags (rather than
// with "--" as a flag's value, as in --at --).
func endedFlags(fs *flag.FlagSet, consumed []string) bool {
	for i := 0; i < len(consumed); i++ {
		a := consumed[i]
		if a == "--" {
			return true
		}
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if f := fs.Lookup(name); f != nil && !isBool(f) {
			i++ // its value
		}
	}
	return false
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// argNames name the value of each flag in help, as the usage lines do.
var argNames = map[string]string{
	"id": "N", "priority": "N", "ttl": "DUR", "at": "TIME", "timeout": "DUR", "stale": "DUR",
	"shm": "PATH", "runtime-dir": "DIR", "addr": "tcp:HOST:PORT", "token-file": "FILE",
}

// printFlags prints the flags of fs, one a line: "  --name ARG   what it does (default D)".
func printFlags(w io.Writer, fs *flag.FlagSet) {
	var names, usages []string
	fs.VisitAll(func(f *flag.Flag) {
		name := "--" + f.Name
		if !isBool(f) {
			arg := argNames[f.Name]
			if arg == "" {
				arg, _ = flag.UnquoteUsage(f)
				arg = strings.ToUpper(arg)
			}
			name += " " + arg
		}
		u := f.Usage
		switch f.DefValue {
		case "", "0", "0s", "false":
		default:
			u += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		names, usages = append(names, name), append(usages, u)
	})
	printTable(w, len(names), func(i int) (string, string) { return names[i], usages[i] })
}

// printTable prints n rows of two columns, indented, the second aligned.
func printTable(w io.Writer, n int, row func(i int) (string, string)) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for i := range n {
		a, b := row(i)
		fmt.Fprintf(tw, "  %s\t%s\n", a, b)
	}
	tw.Flush()
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// join joins a command's name and its synopsis with a space (none when the synopsis is empty).
func join(name, synopsis string) string { return strings.TrimSpace(name + " " + synopsis) }

func capitalize(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	return string(unicode.ToUpper(r)) + s[n:]
}
