package main

import "flag"

// acmeConfig is the acme section of the configuration.
type acmeConfig struct{}

func (c *acmeConfig) registerFlags(fs *flag.FlagSet) {}

func (c *acmeConfig) validate() error { return nil }

// enabled reports whether tlsfront obtains certificates itself.
func (c *acmeConfig) enabled() bool { return false }
