package proxy

import (
	"context"
	"net"
	"net/netip"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/tlsfront/tlsfront/limits"
	"github.com/tlsfront/tlsfront/report"
)

// Shield paces new backend connections and refuses them while a backend is
// down (*limits.Limiter; a nil one admits everything).
type Shield interface {
	BackendFor(ctx context.Context, backend string, client netip.Addr) (done func(dialErr error), refused *limits.Refusal)
}

// dialer connects to backends through the shield and reports each attempt
// and refusal. Every forwarder dials through it.
type dialer struct {
	listener string
	shield   Shield
	rep      report.Sink
}

// dial connects to be for client, whose connection arrived from src at dst
// (for the PROXY header). A refusal by the shield is returned as a
// *limits.Refusal error, already reported.
func (d *dialer) dial(ctx context.Context, be Backend, client netip.Addr, src, dst net.Addr) (net.Conn, error) {
	return d.dialWith(ctx, be, client, src, dst, nil)
}

// dialWith is dial with TLVs for the PROXY protocol v2 header.
func (d *dialer) dialWith(ctx context.Context, be Backend, client netip.Addr, src, dst net.Addr, tlvs []proxyproto.TLV) (net.Conn, error) {
	done, refusal := d.shield.BackendFor(ctx, be.String(), client)
	if refusal != nil {
		d.rep.Refused(report.Refusal{Listener: d.listener, Client: client, Limit: refusal.Limit})
		return nil, refusal
	}
	start := time.Now()
	c, err := be.dialTLVs(ctx, src, dst, tlvs)
	done(err)
	d.rep.BackendDial(report.BackendDial{Listener: d.listener, Backend: be.String(), Took: time.Since(start), Err: err})
	return c, err
}
