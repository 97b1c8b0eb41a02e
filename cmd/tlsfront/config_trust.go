package main

import "flag"

// trustConfig says what served chains are checked against.
type trustConfig struct {
	// CAFile is a PEM bundle of the roots clients trust. Served chains
	// are verified against it; empty means the system roots.
	CAFile string `yaml:"ca_file"`
}

func (c *trustConfig) registerFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.CAFile, "trust-ca", c.CAFile, "PEM `file` of the roots clients trust (default: system roots)")
}

func (c *trustConfig) validate() error { return nil }
