// Package certs loads, validates and serves certificates.
//
// A certificate file becomes a Bundle only when clients could connect with
// it. The chain doctor (Diagnose) builds the chain clients need: ordered
// leaf first, completed from a bundle folder or from the AIA caIssuers URL
// (cached on disk, so a restart needs no network), trimmed of the root and
// of certificates off the path, and never through an expired cross-sign
// when a valid path exists. It checks that the key matches, the leaf is
// valid now, the names routed to it are covered and the chain verifies
// against the trust store, and reports every repair and problem in words.
//
// The Store serves bundles by SNI through tls.Config.GetCertificate and
// replaces any one of them with a single atomic pointer swap. Several
// bundles may cover one name (ECDSA and RSA): each client gets the first
// it supports, ECDSA preferred. A Reloader
// publishes a renewed certificate only after it passed the doctor and a
// real TLS handshake against itself in memory; otherwise the last good one
// keeps serving. ClientCAs holds a reloadable pool for client certificates.
// ACME obtains and renews certificates with certmagic.
//
// Other packages see only tls.Config callbacks.
package certs
