package main

import "flag"

// monitorConfig is the monitor section of the configuration.
type monitorConfig struct{}

func (c *monitorConfig) registerFlags(fs *flag.FlagSet) {}

func (c *monitorConfig) validate() error { return nil }
