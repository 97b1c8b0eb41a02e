package main

import "flag"

// limitsConfig is the limits section of the configuration.
type limitsConfig struct{}

func (c *limitsConfig) registerFlags(fs *flag.FlagSet) {}

func (c *limitsConfig) validate() error { return nil }
