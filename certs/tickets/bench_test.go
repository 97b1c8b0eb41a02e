package tickets_test

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/tlsfront/tlsfront/certs/tickets"
	"github.com/tlsfront/tlsfront/internal/pki"
	"github.com/tlsfront/tlsfront/internal/pki/pkitest"
)

// BenchmarkHandshake compares, in memory (net.Pipe, both ends in this
// process), a full TLS 1.3 handshake with a resumed one on a server
// whose keys come from a Manager with MaxAge set: what a fleet saves
// for each reconnecting client that lands on another instance.
func BenchmarkHandshake(b *testing.B) {
	ca := pkitest.NewCA(b)
	leaf := ca.Leaf(pki.Options{})
	clk := newClock(time.Now())
	m, err := tickets.New(tickets.Options{Source: mustDerived(b), Now: clk.Now, MaxAge: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	scfg := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.DER, ca.Intermediate.DER}, PrivateKey: leaf.Key}}}
	if err := m.Apply(scfg); err != nil {
		b.Fatal(err)
	}
	if _, err := m.Refresh(b.Context()); err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, cache tls.ClientSessionCache, wantResume bool) {
		ccfg := ca.ClientConfig("localhost")
		ccfg.ClientSessionCache = cache
		for b.Loop() {
			cc, sc := net.Pipe()
			done := make(chan error, 1)
			go func() {
				s := tls.Server(sc, scfg)
				err := s.Handshake()
				if err == nil {
					_, err = s.Write([]byte{1})
				}
				// The raw pipe, not s.Close: a close_notify on a
				// synchronous pipe nobody reads waits 5s.
				sc.Close()
				done <- err
			}()
			c := tls.Client(cc, ccfg)
			buf := make([]byte, 1)
			if _, err := c.Read(buf); err != nil { // takes in the ticket too
				b.Fatal(err)
			}
			if c.ConnectionState().DidResume != wantResume {
				b.Fatalf("resumed %v", c.ConnectionState().DidResume)
			}
			cc.Close()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("full", func(b *testing.B) { run(b, nil, false) })
	b.Run("resumed", func(b *testing.B) {
		cache := tls.NewLRUClientSessionCache(1)
		ccfg := ca.ClientConfig("localhost")
		ccfg.ClientSessionCache = cache
		// One full handshake fills the cache; each resumption then
		// brings the next ticket.
		cc, sc := net.Pipe()
		go func() { s := tls.Server(sc, scfg); s.Handshake(); s.Write([]byte{1}); sc.Close() }()
		c := tls.Client(cc, ccfg)
		c.Read(make([]byte, 1))
		cc.Close()
		run(b, cache, true)
	})
}

func mustDerived(b *testing.B) *tickets.Derived {
	d, err := tickets.NewDerived([]byte(secret), tickets.Schedule{})
	if err != nil {
		b.Fatal(err)
	}
	return d
}
