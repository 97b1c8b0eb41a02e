package main

import "flag"

// reloadConfig is the reload section of the configuration.
type reloadConfig struct{}

func (c *reloadConfig) registerFlags(fs *flag.FlagSet) {}

func (c *reloadConfig) validate() error { return nil }

// clientAuthConfig turns on client certificate verification (mTLS).
type clientAuthConfig struct{}

func (c *clientAuthConfig) registerFlags(fs *flag.FlagSet) {}

func (c *clientAuthConfig) validate() error { return nil }
