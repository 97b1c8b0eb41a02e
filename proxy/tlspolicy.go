package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// TLSPolicy is what a listener accepts of a client's TLS stack. The zero
// value is the modern profile: TLS 1.2 and 1.3, ECDHE key exchange with
// AEAD ciphers only, Go's default groups (a post-quantum hybrid first).
type TLSPolicy struct {
	// Profile is modern (the default), intermediate (adds ECDHE suites
	// with CBC for TLS 1.2 stacks without GCM) or legacy (down to TLS 1.0,
	// with RSA key exchange, for device fleets that cannot be upgraded).
	Profile string
	// MinVersion and MaxVersion override the profile's versions.
	MinVersion, MaxVersion uint16
	// CipherSuites override the profile's TLS 1.0-1.2 suites (TLS 1.3's
	// are not configurable in Go, and all modern).
	CipherSuites []uint16
	// Groups override the key exchange groups, most preferred first.
	Groups []tls.CurveID
	// NoPostQuantum leaves the post-quantum hybrid groups out of the
	// default list; with Groups set it has no effect.
	NoPostQuantum bool
}

// TLS profiles.
const (
	ProfileModern       = "modern"
	ProfileIntermediate = "intermediate"
	ProfileLegacy       = "legacy"
)

var (
	intermediateSuites = append(slices.Clone(modernSuites),
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
		tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
	)
	// legacySuites add RSA key exchange (no forward secrecy), which
	// stacks from before ECDHE need. Never RC4 or 3DES: a client that
	// has nothing else must name them in cipher_suites itself.
	legacySuites = append(slices.Clone(intermediateSuites),
		tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_RSA_WITH_AES_128_CBC_SHA,
		tls.TLS_RSA_WITH_AES_256_CBC_SHA,
	)
	classicGroups = []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP384}
)

// Name is the profile's name, modern when empty.
func (p TLSPolicy) Name() string {
	if p.Profile == "" {
		return ProfileModern
	}
	return p.Profile
}

// BelowDefault reports whether p lets in clients the modern profile
// refuses, which deserves a warning at start.
func (p TLSPolicy) BelowDefault() bool {
	c := &tls.Config{}
	p.apply(c)
	if c.MinVersion < tls.VersionTLS12 {
		return true
	}
	for _, s := range c.CipherSuites {
		if !slices.Contains(modernSuites, s) {
			return true
		}
	}
	return false
}

// Validate checks p; errors name the YAML keys under tls.
func (p TLSPolicy) Validate() error {
	var errs []error
	switch p.Profile {
	case "", ProfileModern, ProfileIntermediate, ProfileLegacy:
	default:
		errs = append(errs, fmt.Errorf("profile: %q is not modern, intermediate or legacy", p.Profile))
	}
	if p.MinVersion != 0 && p.MaxVersion != 0 && p.MinVersion > p.MaxVersion {
		errs = append(errs, fmt.Errorf("min_version: %s is above max_version %s", tls.VersionName(p.MinVersion), tls.VersionName(p.MaxVersion)))
	}
	return errors.Join(errs...)
}

// apply sets cfg's versions, suites and groups from p.
func (p TLSPolicy) apply(cfg *tls.Config) {
	cfg.MinVersion, cfg.CipherSuites = tls.VersionTLS12, modernSuites
	switch p.Profile {
	case ProfileIntermediate:
		cfg.CipherSuites = intermediateSuites
	case ProfileLegacy:
		cfg.MinVersion, cfg.CipherSuites = tls.VersionTLS10, legacySuites
	}
	if p.MinVersion != 0 {
		cfg.MinVersion = p.MinVersion
	}
	if p.MaxVersion != 0 {
		cfg.MaxVersion = p.MaxVersion
	}
	if len(p.CipherSuites) > 0 {
		cfg.CipherSuites = p.CipherSuites
	}
	switch {
	case len(p.Groups) > 0:
		cfg.CurvePreferences = p.Groups
	case p.NoPostQuantum:
		cfg.CurvePreferences = classicGroups
	}
}

// ParseTLSVersion reads "1.0" to "1.3" (or "tls1.2").
func ParseTLSVersion(s string) (uint16, error) {
	switch strings.TrimPrefix(strings.ToLower(s), "tls") {
	case "1.0", "10":
		return tls.VersionTLS10, nil
	case "1.1", "11":
		return tls.VersionTLS11, nil
	case "1.2", "12":
		return tls.VersionTLS12, nil
	case "1.3", "13":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("%q is not a TLS version (1.0, 1.1, 1.2 or 1.3)", s)
}

// ParseCipherSuite reads a suite by its IANA name
// (TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256). RC4 is refused: it is broken
// beyond any fleet's need.
func ParseCipherSuite(s string) (uint16, error) {
	for _, list := range [][]*tls.CipherSuite{tls.CipherSuites(), tls.InsecureCipherSuites()} {
		for _, c := range list {
			if strings.EqualFold(c.Name, s) {
				if strings.Contains(c.Name, "RC4") {
					return 0, fmt.Errorf("%s: RC4 is broken; tlsfront does not offer it", c.Name)
				}
				return c.ID, nil
			}
		}
	}
	return 0, fmt.Errorf("%q is not a cipher suite Go implements (IANA names, e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)", s)
}

// ParseGroup reads a key exchange group: x25519, p256, p384, p521,
// x25519mlkem768 (the post-quantum hybrid).
func ParseGroup(s string) (tls.CurveID, error) {
	switch strings.ToLower(strings.ReplaceAll(s, "-", "")) {
	case "x25519":
		return tls.X25519, nil
	case "p256", "secp256r1", "prime256v1":
		return tls.CurveP256, nil
	case "p384", "secp384r1":
		return tls.CurveP384, nil
	case "p521", "secp521r1":
		return tls.CurveP521, nil
	case "x25519mlkem768":
		return tls.X25519MLKEM768, nil
	}
	return 0, fmt.Errorf("%q is not a group (x25519, p256, p384, p521, x25519mlkem768)", s)
}
