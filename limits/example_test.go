package limits_test

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/tlsfront/tlsfront/limits"
)

// A proxy asks the limiter before accepting, after accepting, when the
// client's first bytes arrive and before dialling the backend.
func Example() {
	l, err := limits.New(limits.Config{ClientRate: 1, ClientBurst: 2})
	if err != nil {
		panic(err)
	}
	client := netip.MustParseAddr("2001:db8::1")
	for range 3 {
		release, _ := l.AcquireSlot(context.Background())
		ticket, refusal := l.Admit(client)
		if refusal != nil {
			fmt.Println("refused by", refusal.Limit)
			release()
			continue
		}
		// Once the client's first bytes arrive, within ClientHelloTimeout:
		if refusal := ticket.StartHandshake(); refusal != nil {
			fmt.Println("refused by", refusal.Limit)
			ticket.Close()
			release()
			continue
		}
		ticket.Handshake(true)
		done, refusal := l.Backend(context.Background(), client)
		if refusal == nil {
			done(nil) // the dial's result
		}
		fmt.Println("admitted")
		ticket.Close()
		release()
	}
	fmt.Println(l.Stats().Refused[limits.LimitClientRate])
	// Output:
	// admitted
	// admitted
	// refused by client_rate
	// 1
}
