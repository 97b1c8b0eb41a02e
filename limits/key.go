package limits

import (
	"encoding/binary"
	"net/netip"
)

// clientKey identifies a client for per-client limits: an IPv4 address, or
// the /64 prefix of an IPv6 address. It holds no pointers, so tables of
// them cost the garbage collector nothing to scan.
type clientKey struct{ hi, lo uint64 }

// keyOf returns the key for addr. IPv4-mapped IPv6 addresses count as the
// IPv4 address they carry. An IPv6 client usually owns a whole /64 and can
// pick any address in it, so limiting single IPv6 addresses would limit
// nothing; the /64 is the unit that costs an attacker something.
func keyOf(addr netip.Addr) clientKey {
	addr = addr.Unmap()
	if addr.Is4() {
		v4 := addr.As4()
		// The IPv4-mapped form: it cannot collide with a masked /64,
		// whose low half is always zero.
		return clientKey{lo: 0xffff<<32 | uint64(binary.BigEndian.Uint32(v4[:]))}
	}
	b := addr.As16()
	return clientKey{hi: binary.BigEndian.Uint64(b[:8])}
}

// mix64 is a 64-bit finaliser (from SplitMix64): good enough spread to pick
// a shard, and seeded per limiter so that no one can aim many clients at
// one shard from outside.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func hashClientKey(seed uint64) func(clientKey) uint64 {
	return func(k clientKey) uint64 { return mix64(k.hi ^ seed ^ mix64(k.lo+seed)) }
}

func hashID(seed uint64) func(uint64) uint64 {
	return func(k uint64) uint64 { return mix64(k ^ seed) }
}
