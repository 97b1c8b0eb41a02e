package supervise

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// log records what the components do, in order.
type log struct {
	mu     sync.Mutex
	events []string
}

func (l *log) add(e string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *log) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// waiter runs until its ctx ends and records that.
func waiter(l *log, name string) Component {
	return Component{Name: name, Run: func(ctx context.Context) error {
		<-ctx.Done()
		l.add(name + " done")
		return nil
	}}
}

// TestStopOrder: graceful stops run first, all together, then contexts
// are cancelled in reverse order of start; an error a stopped component
// returns is no failure.
func TestStopOrder(t *testing.T) {
	var l log
	closed := make(chan struct{})
	server := Component{Name: "server",
		Run: func(context.Context) error {
			<-closed
			l.add("server done")
			return errors.New("server closed")
		},
		Stop: func(context.Context) error {
			l.add("server stop")
			close(closed)
			return nil
		},
	}
	g := Start([]Component{waiter(&l, "first"), server, waiter(&l, "last")})
	g.Stop(context.Background())
	got := l.get()
	// The server's Run ends on its own once stopped, at a moment of its
	// own; the others end in reverse order, the first started last.
	if len(got) != 4 || got[0] != "server stop" || got[3] != "first done" || !slices.Contains(got, "last done") {
		t.Fatalf("events %q", got)
	}
	select {
	case err := <-g.Failed():
		t.Fatalf("failure after Stop: %v", err)
	default:
	}
}

// TestFailure: a component that returns an error while running is
// reported, named, and the others keep running until Stop.
func TestFailure(t *testing.T) {
	var l log
	boom := errors.New("boom")
	g := Start([]Component{
		waiter(&l, "steady"),
		{Name: "broken", Run: func(context.Context) error { return boom }},
	})
	select {
	case err := <-g.Failed():
		if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "broken: ") {
			t.Fatalf("failure %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no failure reported")
	}
	if got := l.get(); len(got) != 0 {
		t.Fatalf("events before Stop: %q", got)
	}
	g.Stop(context.Background())
	if got := l.get(); !slices.Equal(got, []string{"steady done"}) {
		t.Fatalf("events %q", got)
	}
}

// TestStopBoundedByContext: a graceful stop that does not finish is cut
// short by Stop's context, and the component is then cancelled.
func TestStopBoundedByContext(t *testing.T) {
	var l log
	slow := Component{Name: "slow",
		Run: func(ctx context.Context) error {
			<-ctx.Done()
			l.add("slow done")
			return nil
		},
		Stop: func(ctx context.Context) error {
			<-ctx.Done()
			l.add("slow stop gave up")
			return ctx.Err()
		},
	}
	g := Start([]Component{slow})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	g.Stop(ctx)
	if got := l.get(); !slices.Equal(got, []string{"slow stop gave up", "slow done"}) {
		t.Fatalf("events %q", got)
	}
}
