package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// MQTT CONNACK answers. MQTT 3.1 and 3.1.1 have one code for all of them
// (3, server unavailable); MQTT 5 tells them apart.
type connackReason byte

const (
	reasonUnavailable connackReason = 0x88 // backend down or unreachable
	reasonBusy        connackReason = 0x89 // we are shedding load
	reasonRateLimited connackReason = 0x9F // this client connects too fast
)

// mqttConnect is what tlsfront needs from an MQTT CONNECT packet.
type mqttConnect struct {
	// Level is the protocol level: 3 (3.1), 4 (3.1.1) or 5.
	Level    byte
	ClientID string
}

var (
	errNotConnect = errors.New("mqtt: first packet is not CONNECT")
	errShort      = errors.New("mqtt: packet truncated")
)

// maxConnectLen bounds how much of a CONNECT we are willing to read. Real
// CONNECTs are small; a client claiming more is not worth the memory.
const maxConnectLen = 64 << 10

// parseConnect parses a whole CONNECT packet from b (fixed header included).
// It returns errShort when b ends before the packet does.
func parseConnect(b []byte) (mqttConnect, error) {
	var out mqttConnect
	if len(b) < 2 {
		return out, errShort
	}
	if b[0] != 0x10 {
		return out, errNotConnect
	}
	rem, n, err := decodeVarint(b[1:])
	if err != nil {
		return out, err
	}
	if rem > maxConnectLen {
		return out, fmt.Errorf("mqtt: CONNECT of %d bytes is larger than %d", rem, maxConnectLen)
	}
	body := b[1+n:]
	if len(body) < rem {
		return out, errShort
	}
	p := reader{b: body[:rem]}
	name := p.str()
	out.Level = p.byte()
	p.byte()  // connect flags
	p.skip(2) // keepalive
	if p.err == nil && name != "MQTT" && name != "MQIsdp" {
		return out, fmt.Errorf("mqtt: protocol name %q is not MQTT", name)
	}
	if out.Level == 5 {
		props, err := p.varint()
		if err != nil {
			return out, err
		}
		p.skip(props)
	}
	out.ClientID = p.str()
	if p.err != nil {
		return out, fmt.Errorf("mqtt: malformed CONNECT: %w", p.err)
	}
	return out, nil
}

// decodeVarint reads an MQTT variable byte integer (at most 4 bytes).
func decodeVarint(b []byte) (val, n int, err error) {
	mult := 1
	for n < 4 {
		if n >= len(b) {
			return 0, 0, errShort
		}
		c := b[n]
		n++
		val += int(c&0x7f) * mult
		if c&0x80 == 0 {
			return val, n, nil
		}
		mult *= 128
	}
	return 0, 0, errors.New("mqtt: malformed remaining length")
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) need(n int) bool {
	if r.err != nil {
		return false
	}
	if n < 0 || len(r.b) < n {
		r.err = errShort
		return false
	}
	return true
}

func (r *reader) byte() byte {
	if !r.need(1) {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) skip(n int) {
	if r.need(n) {
		r.b = r.b[n:]
	}
}

func (r *reader) str() string {
	if !r.need(2) {
		return ""
	}
	l := int(binary.BigEndian.Uint16(r.b))
	r.b = r.b[2:]
	if !r.need(l) {
		return ""
	}
	s := string(r.b[:l])
	r.b = r.b[l:]
	return s
}

func (r *reader) varint() (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	v, n, err := decodeVarint(r.b)
	if err != nil {
		r.err = err
		return 0, err
	}
	r.b = r.b[n:]
	return v, nil
}

// readConnect reads one CONNECT packet from r.
func readConnect(r io.Reader) ([]byte, mqttConnect, error) {
	buf := make([]byte, 0, 256)
	tmp := make([]byte, 512)
	for {
		info, err := parseConnect(buf)
		if err != errShort {
			return buf, info, err
		}
		n, rerr := r.Read(tmp)
		buf = append(buf, tmp[:n]...)
		if rerr != nil && n == 0 {
			if rerr == io.EOF {
				return buf, info, errShort
			}
			return buf, info, rerr
		}
	}
}

// connack builds the CONNACK refusing a client of the given level.
func connack(level byte, reason connackReason) []byte {
	if level == 5 {
		return []byte{0x20, 0x03, 0x00, byte(reason), 0x00}
	}
	return []byte{0x20, 0x02, 0x00, 0x03} // 3: server unavailable
}

// refuseMQTT reads the client's CONNECT and answers with a refusing
// CONNACK, so that the client backs off as the protocol tells it to. A
// client that sends no valid CONNECT within timeout is just closed.
func refuseMQTT(c net.Conn, reason connackReason, timeout time.Duration) {
	c.SetDeadline(time.Now().Add(timeout))
	_, info, err := readConnect(io.LimitReader(c, maxConnectLen+5))
	if err != nil {
		return
	}
	c.Write(connack(info.Level, reason))
}
