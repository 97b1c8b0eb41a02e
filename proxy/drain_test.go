package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/tlsfront/tlsfront/internal/testnet"
	"github.com/tlsfront/tlsfront/limits"
)

// fakeBroker answers each client's CONNECT with a CONNACK of its level,
// then runs then on the connection.
func fakeBroker(t *testing.T, then func(c net.Conn)) Backend {
	t.Helper()
	ln := testnet.Listen(t)
	testnet.Serve(t, ln, func(c net.Conn) {
		_, info, err := readConnect(c, 1<<16)
		if err != nil {
			return
		}
		ack := []byte{0x20, 0x02, 0x00, 0x00}
		if info.Level == 5 {
			ack = []byte{0x20, 0x03, 0x00, 0x00, 0x00}
		}
		if _, err := c.Write(ack); err != nil {
			return
		}
		then(c)
	})
	return Backend{Network: "tcp", Address: ln.Addr().String()}
}

// quietBroker sends nothing after the CONNACK and ends when the
// connection does.
func quietBroker(c net.Conn) { io.Copy(io.Discard, c) }

// streamingBroker sends PUBLISH packets without pause, small and large
// (a 70,000-byte one spans several reads and TLS records), each split in
// two writes at a varying place. Packet i's payload is all byte(i), so a
// client can tell a torn packet. It stops when a write fails.
func streamingBroker(c net.Conn) {
	go io.Copy(io.Discard, c)
	sizes := []int{5, 3000, 70_000, 40, 16_500, 1}
	for i := range 1_000_000 {
		size := sizes[i%len(sizes)]
		pkt := publish("t", size)
		copy(pkt[len(pkt)-size:], bytes.Repeat([]byte{byte(i)}, size))
		cut := (i * 7919) % len(pkt)
		if _, err := c.Write(pkt[:cut]); err != nil {
			return
		}
		if _, err := c.Write(pkt[cut:]); err != nil {
			return
		}
	}
}

// mqttClient connects through p, sends a CONNECT of the given level and
// reads the CONNACK.
func mqttClient(t *testing.T, p *testProxy, level byte) (*tls.Conn, *bufio.Reader) {
	t.Helper()
	c := p.dial(t, "localhost")
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(bigConnect(level, 64)); err != nil {
		t.Fatalf("write CONNECT: %v", err)
	}
	r := bufio.NewReader(c)
	typ, body, err := readPacket(r)
	if err != nil || typ != 0x20 {
		t.Fatalf("no CONNACK: type %#x %x, %v", typ, body, err)
	}
	c.SetDeadline(time.Time{})
	return c, r
}

// readPacket reads one whole MQTT packet. At the end of the stream it
// returns io.EOF if that came at a packet boundary, io.ErrUnexpectedEOF
// inside a packet.
func readPacket(r *bufio.Reader) (typ byte, body []byte, err error) {
	typ, err = r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	rem, mult := 0, 1
	for i := range 4 {
		c, err := r.ReadByte()
		if err != nil {
			return typ, nil, io.ErrUnexpectedEOF
		}
		rem += int(c&0x7f) * mult
		mult *= 128
		if c&0x80 == 0 {
			break
		}
		if i == 3 {
			return typ, nil, errors.New("bad remaining length")
		}
	}
	body = make([]byte, rem)
	if _, err := io.ReadFull(r, body); err != nil {
		return typ, body, io.ErrUnexpectedEOF
	}
	return typ, body, nil
}

// readToEnd reads whole packets until the stream ends and returns the
// last one, checking each PUBLISH is whole.
func readToEnd(r *bufio.Reader) (n int, lastType byte, last []byte, err error) {
	for ; n < 1_000_000; n++ {
		typ, body, err := readPacket(r)
		if err == io.EOF {
			return n, lastType, last, nil
		}
		if err != nil {
			return n, typ, body, fmt.Errorf("packet %d: %w", n, err)
		}
		if typ == 0x30 {
			payload := body[3:]
			if len(payload) > 0 && bytes.Count(payload, payload[:1]) != len(payload) {
				return n, typ, body, fmt.Errorf("packet %d: PUBLISH payload mixes packets", n)
			}
		}
		lastType, last = typ, body
	}
	return n, lastType, last, errors.New("stream did not end")
}

// An MQTT 5 client getting a steady flow of PUBLISH packets gets whole
// packets, then exactly the DISCONNECT 0x8B, then the end of the stream;
// an MQTT 3.1.1 client gets whole packets and the end of the stream.
func TestDrainEndsAtPacketBoundary(t *testing.T) {
	for _, tc := range []struct {
		name       string
		level      byte
		disconnect bool
		// readConnect: the proxy reads the CONNECT itself (to limit by
		// client id), so the pipe is told the level.
		readConnect bool
	}{
		{name: "mqtt 5", level: 5, disconnect: true},
		{name: "mqtt 5 CONNECT read by the proxy", level: 5, disconnect: true, readConnect: true},
		{name: "mqtt 3.1.1", level: 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{Backend: fakeBroker(t, streamingBroker), Protocol: "mqtt"}
			if tc.readConnect {
				o.Limiter = newLimiter(t, limits.Config{ClientIDRate: 1000, ClientIDBurst: 1000})
			}
			p := startProxy(t, o)
			c, r := mqttClient(t, p, tc.level)
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			// Some packets flow before the shutdown.
			for i := range 20 {
				if _, _, err := readPacket(r); err != nil {
					t.Fatalf("packet %d before the shutdown: %v", i, err)
				}
			}
			type result struct {
				n        int
				lastType byte
				last     []byte
				err      error
			}
			got := make(chan result, 1)
			go func() {
				n, typ, last, err := readToEnd(r)
				c.Close() // as a client does on DISCONNECT or end of stream
				got <- result{n, typ, last, err}
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			if err := p.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown: %v (the drained client should have gone before the deadline)", err)
			}
			res := <-got
			if res.err != nil {
				t.Fatalf("after %d packets: %v", res.n, res.err)
			}
			isDisconnect := res.lastType == 0xE0 && bytes.Equal(res.last, disconnectShuttingDown[2:])
			if isDisconnect != tc.disconnect {
				t.Fatalf("last packet type %#x body %x; DISCONNECT 0x8B wanted: %v", res.lastType, res.last, tc.disconnect)
			}
			st := p.pipes.drainStats()
			if tc.disconnect && (st.Disconnected != 1 || st.Closed != 0) || !tc.disconnect && (st.Disconnected != 0 || st.Closed != 1) {
				t.Errorf("drain counted %d DISCONNECT, %d closed", st.Disconnected, st.Closed)
			}
			t.Logf("%d packets, then the end", res.n)
		})
	}
}

// A broker stalled inside a packet is not at a boundary, parked or not:
// the client gets no DISCONNECT and is closed when the grace period ends.
func TestDrainLeavesTornPacketToDeadline(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parking needs epoll")
	}
	half := publish("t", 100)[:50]
	be := fakeBroker(t, func(c net.Conn) {
		c.Write(half)
		io.Copy(io.Discard, c)
	})
	p := startProxy(t, Options{Backend: be, Protocol: "mqtt", ParkAfter: 10 * time.Millisecond})
	c, r := mqttClient(t, p, 5)
	waitFor(t, "both directions parked", func() bool { return p.pipes.parked() == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := p.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want the deadline", err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, err := io.ReadAll(r)
	if !bytes.Equal(rest, half) {
		t.Fatalf("client read %x (%v), want the half packet and no DISCONNECT", rest, err)
	}
	if st := p.pipes.drainStats(); st.Disconnected+st.Closed != 0 {
		t.Errorf("drain counted %d DISCONNECT, %d closed", st.Disconnected, st.Closed)
	}
}

// Raw tcp connections are not drained: they are closed at the deadline,
// as before.
func TestDrainLeavesRawToDeadline(t *testing.T) {
	p := startProxy(t, Options{Backend: fakeBroker(t, quietBroker)})
	c, r := mqttClient(t, p, 5)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := p.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want the deadline", err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if rest, _ := io.ReadAll(r); len(rest) != 0 {
		t.Fatalf("client read %x, want nothing", rest)
	}
	if st := p.pipes.drainStats(); !st.Started.IsZero() {
		t.Errorf("a drain ran on a raw listener: %+v", st)
	}
}

// 200 quiet MQTT 5 connections, parked, drained over a 2 s grace period:
// each gets its DISCONNECT, and their ends are spread over the window
// instead of coming together.
func TestDrainSpreadsOverGrace(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parking needs epoll")
	}
	const n = 200
	const grace = 2 * time.Second
	p := startProxy(t, Options{Backend: fakeBroker(t, quietBroker), Protocol: "mqtt", ParkAfter: 10 * time.Millisecond})
	readers := make([]*bufio.Reader, n)
	conns := make([]*tls.Conn, n)
	for i := range n {
		conns[i], readers[i] = mqttClient(t, p, 5)
	}
	waitFor(t, "every direction parked", func() bool { return p.pipes.parked() == 2*n })

	ends := make([]time.Time, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			conns[i].SetReadDeadline(time.Now().Add(20 * time.Second))
			_, typ, last, err := readToEnd(readers[i])
			ends[i] = time.Now()
			conns[i].Close()
			if err == nil && (typ != 0xE0 || !bytes.Equal(last, disconnectShuttingDown[2:])) {
				err = fmt.Errorf("last packet %#x %x, want DISCONNECT 0x8B", typ, last)
			}
			errs <- err
		})
	}
	start := shutdownWithin(t, p, grace)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st := p.pipes.drainStats()
	if st.Disconnected != n {
		t.Errorf("%d DISCONNECTs counted, want %d", st.Disconnected, n)
	}
	checkSpread(t, "connections", start, ends, st.Window)
}

// shutdownWithin shuts p down with grace to drain and returns when it
// started.
func shutdownWithin(t *testing.T, p *testProxy, grace time.Duration) time.Time {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	return start
}

// checkSpread fails t when more than a fifth of ends fall in one tenth of
// window from start: the drain's schedule puts a tenth in each, and none
// may hold more than twice that.
func checkSpread(t *testing.T, what string, start time.Time, ends []time.Time, window time.Duration) {
	t.Helper()
	var tenths [10]int
	for _, e := range ends {
		tenths[min(max(int(10*e.Sub(start)/window), 0), 9)]++
	}
	t.Logf("%s ended per tenth of the %s window: %v", what, window, tenths)
	for i, k := range tenths {
		if k > len(ends)/5 {
			t.Errorf("%d of %d %s ended in tenth %d of the window: %v", k, len(ends), what, i, tenths)
		}
	}
}
