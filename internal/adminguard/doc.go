// Package adminguard guards tlsfront's own HTTP listeners (admin,
// metrics) against what a browser can be tricked into sending: simple
// cross-site requests that change state, and DNS rebinding (a Host that is
// not an address, localhost or a configured name); with a token, against
// whoever lacks it. Config is the admin_guard section of the
// configuration, and reads the token file.
package adminguard
