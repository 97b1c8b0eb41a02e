package redisstore_test

import (
	"context"
	"errors"
	"log"
	"time"

	"github.com/tlsfront/tlsfront/certs"
	"github.com/tlsfront/tlsfront/certs/redisstore"
)

// Every instance of a fleet opens the same Redis with the same prefix
// and hands the Storage to its ACME manager.
func ExampleOpen() {
	st, err := redisstore.Open("redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/certs", redisstore.Options{Prefix: "tlsfront-eu"})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	acme, err := certs.NewACME(certs.ACMEOptions{Email: "ops@example.com", StorageBackend: st})
	if err != nil {
		log.Fatal(err)
	}
	_ = acme
}

// A health check: a failed Ping is an alert, not a reason to stop
// serving the certificates already in memory.
func ExampleStorage_Ping() {
	st, err := redisstore.Open("rediss://tlsfront:secret@redis.internal:6380/0", redisstore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := st.Ping(ctx); errors.Is(err, redisstore.ErrUnavailable) {
		log.Printf("shared certificate storage unreachable: %v", err)
	}
}
