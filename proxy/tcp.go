package proxy

import "crypto/tls"

// forwardTCP connects the handshaken client to its backend and copies bytes
// both ways until both sides are done.
func (s *Server) forwardTCP(tc *tls.Conn, c *conn) {
	be := s.backendFor(tc.ConnectionState().ServerName)
	client := addrOf(c.RemoteAddr())
	done, refusal := s.opts.Limiter.Backend(s.ctx, client)
	if refusal != nil {
		s.refused(client, refusal)
		s.refuseInProtocol(tc, reasonBusy)
		return
	}
	bc, err := be.dial(s.ctx, c.RemoteAddr(), c.LocalAddr())
	done(err)
	if err != nil {
		s.log.Warn("backend dial failed", "backend", be.String(), "client", client.String(), "err", err)
		// Tell the client the server is unavailable in its own protocol,
		// so that it backs off instead of retrying at once.
		s.refuseInProtocol(tc, reasonUnavailable)
		return
	}
	if !s.setBackend(c, bc) {
		bc.Close()
		return
	}
	defer bc.Close()
	s.pipe(tc, bc)
}

// refuseInProtocol answers a client we will not forward: for MQTT with a
// CONNACK giving the reason; otherwise the connection is just closed.
func (s *Server) refuseInProtocol(tc *tls.Conn, reason connackReason) {
	if s.opts.Protocol == "mqtt" {
		refuseMQTT(tc, reason, s.opts.HandshakeTimeout)
	}
	tc.Close()
}
