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
// The Manager owns every certificate served: the files, a dynamic source
// (ACME, which obtains and renews certificates with certmagic), the trust
// store they are checked against and the client CA bundle (ClientCAs). The
// start and every reload go through one pipeline: read, doctor, a real TLS
// handshake against itself in memory (SelfTest), key warnings, then
// publish into the Store with a single atomic pointer swap; a candidate
// that fails any step is refused and the last good one keeps serving. The
// Store serves bundles by SNI through tls.Config.GetCertificate; several
// bundles may cover one name (ECDSA and RSA), and each client gets the
// first it supports, ECDSA preferred. Reload
// results, ACME events included, are reported through a report.Sink.
//
// Besides certificates listed one by one, the Manager reads folders of
// pairs (FolderSource: certbot's live/, Kubernetes TLS secrets, or a
// pattern such as "*.crt" + "{name}.key"), listed again on every reload,
// so that a customer added or removed needs no configuration change. It
// scales to thousands of pairs: the start checks them in parallel, the
// handshakes run once per kind of key rather than per certificate, a
// reload reads only the pairs whose files changed (stats, then a content
// hash; ReloadChanged, for a file watch, does not even stat the pairs no
// event touched), and everything that changed is published with one swap.
// Every certificate, key and CA file is read through ReadFile, which
// refuses FIFOs, devices, directories and oversized files without blocking
// or reading them whole.
//
// No handshake ever waits on the CA: on-demand names are obtained in the
// background, within caps, and a handshake for a name without a
// certificate yet fails at once with an *IssuanceError the proxy can
// classify.
//
// Other packages see only tls.Config callbacks.
package certs
