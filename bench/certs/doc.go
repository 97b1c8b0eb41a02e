// Command certs measures the certificate manager with many certificates
// in a folder (certbot's live/ layout, ECDSA P-256 leaves from one test
// CA):
//
//	go run ./bench/certs                # 10,000 certificates, 5 runs
//	go run ./bench/certs -n 2000 -runs 3
//
// Each run is a fresh child process, so that its memory is its own. It
// measures the start (wall time, CPU time, live heap and resident memory
// per certificate), a reload with nothing changed, and the time from one
// pair rewritten to its new certificate served over real TLS on
// loopback, through Reload. The certificates are generated once and kept
// in the user cache folder (-cache) between runs.
package main
