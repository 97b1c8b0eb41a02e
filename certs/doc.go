// Package certs loads, validates and serves certificates.
//
// A certificate is read from PEM files into a Bundle only when every check
// passes: the key matches, the leaf is valid now, and the chain verifies
// against the trust store. The Store serves bundles by SNI through
// tls.Config.GetCertificate and replaces any one of them with a single
// atomic pointer swap, so handshakes in flight never see a half-updated
// table. Other packages see only the tls.Config callback.
package certs
