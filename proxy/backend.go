package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// Backend is where plaintext goes.
type Backend struct {
	// Network is "tcp" or "unix".
	Network string
	// Address is host:port, or a socket path.
	Address string
	// ProxyProtocol is 0 (off), 1 or 2: the PROXY protocol header version
	// written before any byte, so the backend sees the client's address.
	ProxyProtocol int
	// DialTimeout bounds connecting; zero means 5 s.
	DialTimeout time.Duration
}

// ParseBackend reads "host:port", "tcp://host:port" or "unix:/path".
func ParseBackend(s string) (Backend, error) {
	switch {
	case strings.HasPrefix(s, "unix:"):
		p := strings.TrimPrefix(strings.TrimPrefix(s, "unix:"), "//")
		if p == "" {
			return Backend{}, errors.New("unix socket path is empty")
		}
		return Backend{Network: "unix", Address: p}, nil
	case strings.HasPrefix(s, "tcp://"):
		s = strings.TrimPrefix(s, "tcp://")
	case strings.Contains(s, "://"):
		return Backend{}, fmt.Errorf("%q: use host:port or unix:/path (no scheme)", s)
	}
	if _, _, err := net.SplitHostPort(s); err != nil {
		return Backend{}, fmt.Errorf("%q is not host:port: %w", s, err)
	}
	return Backend{Network: "tcp", Address: s}, nil
}

func (b Backend) String() string {
	if b.Network == "unix" {
		return "unix:" + b.Address
	}
	return b.Address
}

// dialTLVs connects to the backend and writes the PROXY header, with tlvs
// added to a version 2 header, for a client whose connection arrived from
// src at dst.
func (b Backend) dialTLVs(ctx context.Context, src, dst net.Addr, tlvs []proxyproto.TLV) (net.Conn, error) {
	timeout := b.DialTimeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, b.Network, b.Address)
	if err != nil {
		return nil, err
	}
	if b.ProxyProtocol != 0 {
		h := proxyproto.HeaderProxyFromAddrs(byte(b.ProxyProtocol), src, dst)
		if len(tlvs) > 0 && b.ProxyProtocol == 2 {
			if err := h.SetTLVs(tlvs); err != nil {
				c.Close()
				return nil, fmt.Errorf("PROXY header TLVs: %w", err)
			}
		}
		c.SetWriteDeadline(time.Now().Add(timeout))
		if _, err := h.WriteTo(c); err != nil {
			c.Close()
			return nil, fmt.Errorf("write PROXY header: %w", err)
		}
		c.SetWriteDeadline(time.Time{})
	}
	return c, nil
}

// addrOf returns the IP of a net.Addr, unmapped, or the zero Addr.
func addrOf(a net.Addr) netip.Addr {
	switch v := a.(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(v.IP)
		return ip.Unmap()
	case interface{ AddrPort() netip.AddrPort }:
		return v.AddrPort().Addr().Unmap()
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}
