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
	reasonTooLarge    connackReason = 0x95 // CONNECT over the listener's maximum
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

// DefaultMQTTMaxConnectSize is the largest CONNECT packet read by default,
// fixed header included. Real CONNECTs are small (client id, credentials,
// a will message); a long token as password or a will with a payload of a
// few kilobytes is still far below it. MQTT allows 256 MB.
const DefaultMQTTMaxConnectSize = 256 << 10

// MaxMQTTPacketSize is the largest packet MQTT can frame: a remaining
// length of 268,435,455 and its 5-byte fixed header.
const MaxMQTTPacketSize = 268_435_455 + 5

// connectTooLargeError is a CONNECT whose length says it is over the
// maximum. Level is its protocol level when the bytes read tell, else 0.
type connectTooLargeError struct {
	Size, Max int
	Level     byte
}

func (e *connectTooLargeError) Error() string {
	return fmt.Sprintf("mqtt: CONNECT of %d bytes is larger than the maximum of %d", e.Size, e.Max)
}

// parseConnect parses a whole CONNECT packet from b (fixed header included).
// It returns errShort when b ends before the packet does. It sets no
// limit on the size: readConnect does, before it holds the bytes.
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

// levelOf reads the protocol level from the start of a CONNECT's variable
// header (protocol name, then level), or 0 when body is too short or not
// MQTT.
func levelOf(body []byte) byte {
	p := reader{b: body}
	name := p.str()
	level := p.byte()
	if p.err != nil || (name != "MQTT" && name != "MQIsdp") {
		return 0
	}
	return level
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

// readConnect reads one CONNECT packet of at most max bytes from r, and
// returns exactly its bytes. Memory follows what arrives, not what the
// packet claims: the buffer grows as bytes come, up to the packet's size.
// A packet over max is not read further: the error is a
// *connectTooLargeError, with the protocol level when the first bytes of
// the variable header tell it (a few more are read for that).
func readConnect(r io.Reader, max int) ([]byte, mqttConnect, error) {
	var info mqttConnect
	// The fixed header is at most 5 bytes; a CONNECT is longer, so reading
	// 5 never reads past it.
	buf := make([]byte, 0, 64)
	total := 0 // the packet's size, once the fixed header is in
	idle := 0  // reads in a row that returned nothing
	for total == 0 || len(buf) < total {
		want := 5
		if total > 0 {
			want = total
		}
		if len(buf) == cap(buf) {
			// Every byte so far has arrived: at most double, so that
			// memory stays within twice what the client really sent.
			grown := make([]byte, len(buf), min(want, 2*cap(buf)))
			buf = grown[:copy(grown, buf)]
		}
		n, err := r.Read(buf[len(buf):min(cap(buf), want)])
		buf = buf[:len(buf)+n]
		if idle = idle + 1; n > 0 {
			idle = 0
		} else if idle > 100 && err == nil {
			return buf, info, io.ErrNoProgress
		}
		if total == 0 && len(buf) > 0 {
			if buf[0] != 0x10 {
				return buf, info, errNotConnect
			}
			rem, hl, verr := decodeVarint(buf[1:])
			switch {
			case verr == nil:
				total = 1 + hl + rem
				if total > max {
					return buf, info, tooLarge(r, buf[1+hl:], total, max)
				}
			case verr != errShort:
				return buf, info, verr
			}
		}
		if err != nil && (total == 0 || len(buf) < total) {
			if err == io.EOF {
				err = errShort
			}
			return buf, info, err
		}
	}
	info, err := parseConnect(buf)
	return buf, info, err
}

// tooLarge reads just enough of a CONNECT over max to learn its protocol
// level, so that the refusal can be a CONNACK the client understands.
// body holds the part of the variable header read already.
func tooLarge(r io.Reader, body []byte, size, max int) error {
	// Protocol name (2 + at most 6 bytes, "MQIsdp") and level.
	var vh [9]byte
	n := copy(vh[:], body)
	for i := 0; i < len(vh) && n < len(vh) && levelOf(vh[:n]) == 0; i++ {
		m, err := r.Read(vh[n:])
		n += m
		if err != nil {
			break
		}
	}
	return &connectTooLargeError{Size: size, Max: max, Level: levelOf(vh[:n])}
}

// connack builds the CONNACK refusing a client of the given level. MQTT
// 3.1 and 3.1.1 have no code for most refusals; they get 3 (server
// unavailable), which makes clients back off and retry, as they should.
// That includes a CONNECT over the maximum, which EMQX and Mosquitto
// answer by closing the connection without a CONNACK: a client cannot tell
// that from a network failure, and tlsfront logs the size.
func connack(level byte, reason connackReason) []byte {
	if level == 5 {
		return []byte{0x20, 0x03, 0x00, byte(reason), 0x00}
	}
	return []byte{0x20, 0x02, 0x00, 0x03} // 3: server unavailable
}

// refuseMQTT reads the client's CONNECT (up to max bytes) and answers with
// a refusing CONNACK, so that the client backs off as the protocol tells it
// to. A client that sends no valid CONNECT within timeout is just closed.
// A CONNECT over max is refused for reason all the same: its first bytes
// tell the protocol level.
func refuseMQTT(c net.Conn, reason connackReason, timeout time.Duration, max int) {
	c.SetDeadline(time.Now().Add(timeout))
	_, info, err := readConnect(c, max)
	var big *connectTooLargeError
	switch {
	case errors.As(err, &big) && big.Level != 0:
		info.Level = big.Level
	case err != nil:
		return
	}
	c.Write(connack(info.Level, reason))
}
