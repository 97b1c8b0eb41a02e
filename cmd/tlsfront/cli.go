package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// errHelp is --help: the usage was printed, and asking for it is no error.
var errHelp = errors.New("help requested")

// cli is a flag set whose flags are grouped into sections, so that --help
// reads like the configuration file, with each flag's environment
// variable and default.
type cli struct {
	fs       *flag.FlagSet
	out      io.Writer
	sections []cliSection
}

type cliSection struct {
	title string
	names []string
}

func newCLI(name string, out io.Writer) *cli {
	c := &cli{fs: flag.NewFlagSet(name, flag.ContinueOnError), out: out}
	// A mistake gets its one-line error, not 250 lines of help; the help
	// is printed when asked for (see parseConfig).
	c.fs.SetOutput(io.Discard)
	c.fs.Usage = func() {}
	return c
}

// section registers flags under a title.
func (c *cli) section(title string, register func(fs *flag.FlagSet)) {
	seen := map[string]bool{}
	c.fs.VisitAll(func(f *flag.Flag) { seen[f.Name] = true })
	register(c.fs)
	s := cliSection{title: title}
	c.fs.VisitAll(func(f *flag.Flag) {
		if !seen[f.Name] {
			s.names = append(s.names, f.Name)
		}
	})
	c.sections = append(c.sections, s)
}

func (c *cli) usage() {
	fmt.Fprintf(c.out, `usage: tlsfront [flags]              serve (the default)
       tlsfront check-config [flags] check a configuration as start-up does
       tlsfront check [flags]        diagnose a certificate or a live server
       tlsfront reload [flags]       ask a running tlsfront to reload
       tlsfront healthcheck [flags]  ask a running tlsfront whether it is ready
       tlsfront version              print the version

Every flag can also be set in the environment (shown after it) and most in
the YAML file given with --config; flags win over the environment, which
wins over the file.
`)
	for _, s := range c.sections {
		fmt.Fprintf(c.out, "\n%s:\n", s.title)
		for _, name := range s.names {
			c.printFlag(c.fs.Lookup(name))
		}
	}
}

func (c *cli) printFlag(f *flag.Flag) {
	arg, usage := flag.UnquoteUsage(f)
	head := "  --" + f.Name
	if arg != "" {
		head += " " + arg
	}
	fmt.Fprintf(c.out, "%s\n      %s\n", head, usage)
	extra := []string{envName(f.Name)}
	if d := f.DefValue; d != "" && d != "0" && d != "false" && d != "0s" && !strings.Contains(usage, "default") {
		extra = append(extra, "default "+d)
	}
	fmt.Fprintf(c.out, "      (%s)\n", strings.Join(extra, ", "))
}
