package tickets_test

import (
	"context"
	"crypto/tls"
	"log"
	"os"
	"time"

	"github.com/tlsfront/tlsfront/certs/tickets"
)

// Every instance reads the same key file (made once with
// head -c 48 /dev/urandom) and resumes the others' sessions.
func ExampleNewDerived() {
	secret, err := os.ReadFile("/etc/tlsfront/ticket.key")
	if err != nil {
		log.Fatal(err)
	}
	src, err := tickets.NewDerived(secret, tickets.Schedule{Period: time.Hour, Keep: 2})
	if err != nil {
		log.Fatal(err)
	}
	m, err := tickets.New(tickets.Options{Source: src, MaxAge: 2 * time.Hour})
	if err != nil {
		log.Fatal(err)
	}
	cfg := &tls.Config{}
	if err := m.Apply(cfg); err != nil {
		log.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go m.Run(ctx) // in tlsfront, one of the components cmd/ runs and stops
}
