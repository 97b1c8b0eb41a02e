// Package pki makes throwaway certificate authorities and certificates for
// tests and for the demo. Nothing here is meant for production key material:
// keys are ECDSA P-256 (or RSA when asked), kept in memory and written
// unencrypted.
package pki
