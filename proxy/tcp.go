package proxy

import (
	"crypto/tls"
	"time"
)

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
	start := time.Now()
	bc, err := be.dial(s.ctx, c.RemoteAddr(), c.LocalAddr())
	done(err)
	s.dialed(be, time.Since(start), err)
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
	s.opened()
	in, out := s.pipe(tc, bc)
	s.closed(in, out)
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

// refuseInProtocol answers a client we will not forward: for MQTT with a
// CONNACK giving the reason; otherwise the connection is just closed.
func (s *Server) refuseInProtocol(tc *tls.Conn, reason connackReason) {
	if s.opts.Protocol == "mqtt" {
		refuseMQTT(tc, reason, s.opts.HandshakeTimeout)
	}
	tc.Close()
}
