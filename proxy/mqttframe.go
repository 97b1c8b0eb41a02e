package proxy

// MQTT packet boundaries of a byte stream, followed as bytes are copied
// (for the shutdown drain, see drain.go).

// mqttFramer follows the packet boundaries of one MQTT byte stream without
// holding any of it: it reads each fixed header (type byte, then a
// remaining length of 1 to 4 bytes) and skips the body by arithmetic, so
// its cost is O(header bytes). A stream whose framing is invalid (a
// reserved packet type 0, a length over 4 bytes) is broken from then on:
// it is never at a boundary again.
//
// A mqttFramer is used by one goroutine at a time (the direction that
// copies the stream, or the watcher's owner while it is parked).
type mqttFramer struct {
	state   uint8  // frameStart, frameLength, frameBody or frameBroken
	lenN    uint8  // length bytes read of the current fixed header
	rem     uint32 // bytes left of the current length or body
	mult    uint32 // weight of the next length byte
	packets uint32 // whole packets seen, saturating
	// connack is set once a CONNACK started: an MQTT 5 server may send
	// DISCONNECT only after it (an AUTH exchange may come first).
	connack bool
}

const (
	frameStart  uint8 = iota // at a packet boundary: the next byte is a fixed header
	frameLength              // reading the remaining length
	frameBody                // skipping rem body bytes
	frameBroken              // not MQTT framing: no boundary any more
)

// atBoundary reports whether the bytes seen so far end with a whole packet
// (or are none).
func (f *mqttFramer) atBoundary() bool { return f.state == frameStart }

// broken reports whether the stream stopped parsing as MQTT.
func (f *mqttFramer) broken() bool { return f.state == frameBroken }

// advance follows b, the next bytes of the stream, and returns how many it
// took: all of them, or with stop the bytes up to the first packet
// boundary in b (0 when the stream is at a boundary already). A broken
// stream takes everything.
func (f *mqttFramer) advance(b []byte, stop bool) int {
	i := 0
	for i < len(b) {
		switch f.state {
		case frameStart:
			if stop {
				return i
			}
			switch b[i] >> 4 {
			case 0: // reserved
				f.state = frameBroken
				return len(b)
			case 2:
				f.connack = true
			}
			f.state, f.lenN, f.rem, f.mult = frameLength, 0, 0, 1
			i++
		case frameLength:
			c := b[i]
			i++
			f.rem += uint32(c&0x7f) * f.mult
			f.lenN++
			if c&0x80 != 0 {
				if f.lenN == 4 {
					f.state = frameBroken
					return len(b)
				}
				f.mult *= 128
				continue
			}
			f.state = frameBody
			f.endIfEmpty()
		case frameBody:
			k := min(uint64(f.rem), uint64(len(b)-i))
			i += int(k)
			f.rem -= uint32(k)
			f.endIfEmpty()
		default:
			return len(b)
		}
	}
	return i
}

// endIfEmpty closes the packet when its body is all read.
func (f *mqttFramer) endIfEmpty() {
	if f.rem == 0 {
		f.state = frameStart
		if f.packets < ^uint32(0) {
			f.packets++
		}
	}
}

// MQTT protocol levels as the drain knows them: 0 until the client's
// CONNECT told, levelNotMQTT when its first bytes are not one.
const (
	levelUnknown uint32 = 0
	levelNotMQTT uint32 = 0xff
)

// connectSniffer learns the protocol level from the first bytes of the
// client's stream, a CONNECT: fixed header, 2-byte-length protocol name
// ("MQTT", or "MQIsdp" for 3.1), level. It keeps at most the 14 bytes
// that takes.
type connectSniffer struct {
	buf [14]byte
	n   uint8
}

// feed adds b and returns the level once the bytes tell (3, 4 or 5, or
// levelNotMQTT), else levelUnknown.
func (s *connectSniffer) feed(b []byte) uint32 {
	s.n += uint8(copy(s.buf[s.n:], b))
	h := s.buf[:s.n]
	if len(h) == 0 {
		return levelUnknown
	}
	if h[0] != 0x10 {
		return levelNotMQTT
	}
	rem, n, err := decodeVarint(h[1:])
	switch {
	case err == errShort && len(h) < len(s.buf):
		return levelUnknown
	case err != nil || rem < 7: // at least "MQTT" and a level
		return levelNotMQTT
	}
	p := reader{b: h[1+n:]}
	name := p.str()
	level := p.byte()
	switch {
	case p.err != nil && len(h) < len(s.buf):
		return levelUnknown
	case p.err != nil, name != "MQTT" && name != "MQIsdp":
		return levelNotMQTT
	case level == 3 || level == 4 || level == 5:
		return uint32(level)
	}
	return levelNotMQTT
}
