// Package report is the one seam through which the parts of tlsfront say
// what happened: plain event types and the Sink that receives them.
//
// proxy and certs emit events; monitor implements Sink. The package is a
// leaf: it imports nothing of tlsfront, so every part can depend on it
// without depending on each other.
package report
