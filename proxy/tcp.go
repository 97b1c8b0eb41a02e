package proxy

import (
	"crypto/tls"
	"io"
	"time"
)

// forwardTCP connects the handshaken client to its backend and starts
// copying bytes both ways. It reports whether it did: the copy goroutines
// then own c, and close and untrack it when both sides are done.
func (s *Server) forwardTCP(tc *tls.Conn, c *conn) bool {
	be := s.backendFor(tc.ConnectionState().ServerName)
	client := addrOf(c.RemoteAddr())

	// With a per-client-id limit, the CONNECT is read first: the id is in
	// it. It is replayed to the backend once connected.
	var head []byte
	level := byte(0) // unknown until CONNECT is read
	if s.clientIDLimit {
		tc.SetReadDeadline(time.Now().Add(s.opts.HandshakeTimeout))
		h, info, err := readConnect(io.LimitReader(tc, maxConnectLen+5))
		tc.SetReadDeadline(time.Time{})
		if err != nil {
			s.log.Debug("no MQTT CONNECT", "client", client.String(), "err", err)
			tc.Close()
			return false
		}
		if r := s.opts.Limiter.AdmitClientID(info.ClientID); r != nil {
			s.refused(client, r)
			s.answerMQTT(tc, info.Level, reasonRateLimited)
			return false
		}
		head, level = h, info.Level
	}

	done, refusal := s.opts.Limiter.BackendFor(s.ctx, be.String(), client)
	if refusal != nil {
		s.refused(client, refusal)
		reason := reasonBusy
		if !refusal.Busy {
			reason = reasonUnavailable
		}
		s.refuseInProtocol(tc, head, level, reason)
		return false
	}
	start := time.Now()
	bc, err := be.dial(s.ctx, c.RemoteAddr(), c.LocalAddr())
	done(err)
	s.dialed(be, time.Since(start), err)
	if err != nil {
		s.log.Warn("backend dial failed", "backend", be.String(), "client", client.String(), "err", err)
		// Tell the client the server is unavailable in its own protocol,
		// so that it backs off instead of retrying at once.
		s.refuseInProtocol(tc, head, level, reasonUnavailable)
		return false
	}
	if !s.setBackend(c, bc) {
		bc.Close()
		return false
	}
	if len(head) > 0 {
		bc.SetWriteDeadline(time.Now().Add(s.opts.HandshakeTimeout))
		if _, err := bc.Write(head); err != nil {
			bc.Close()
			tc.Close()
			return false
		}
		bc.SetWriteDeadline(time.Time{})
	}
	s.opened()
	s.pipes.start(tc, bc, func(in, out int64) {
		bc.Close()
		s.closed(in+int64(len(head)), out)
		c.Close()
		s.untrack(c)
	})
	return true
}

// refuseInProtocol answers a client we will not forward: for MQTT with a
// CONNACK giving the reason (reading the CONNECT first unless head already
// holds it); otherwise the connection is just closed.
func (s *Server) refuseInProtocol(tc *tls.Conn, head []byte, level byte, reason connackReason) {
	if s.opts.Protocol != "mqtt" {
		tc.Close()
		return
	}
	if head != nil {
		s.answerMQTT(tc, level, reason)
		return
	}
	refuseMQTT(tc, reason, s.opts.HandshakeTimeout)
	tc.Close()
}

func (s *Server) answerMQTT(tc *tls.Conn, level byte, reason connackReason) {
	tc.SetWriteDeadline(time.Now().Add(s.opts.HandshakeTimeout))
	tc.Write(connack(level, reason))
	tc.Close()
}

func (s *Server) dialed(be Backend, took time.Duration, err error) {
	if h := s.opts.Hooks.BackendDial; h != nil {
		h(s.opts.Name, be.String(), took, err)
	}
}

func (s *Server) opened() {
	if h := s.opts.Hooks.ConnOpened; h != nil {
		h(s.opts.Name)
	}
}

func (s *Server) closed(fromClient, toClient int64) {
	if h := s.opts.Hooks.ConnClosed; h != nil {
		h(s.opts.Name, fromClient, toClient)
	}
}
