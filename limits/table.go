package limits

import (
	"sync"
	"sync/atomic"
)

// numShards splits each table so that admissions from different clients
// rarely wait on the same lock.
const numShards = 64

// noSlot marks the end of a list and a slot that is not in the LRU list.
const (
	noSlot  int32 = -1
	pinned  int32 = -2
	minSize       = numShards // at least one entry per shard
)

// table tracks per-key state in memory that stays bounded: it never holds
// more than its capacity in entries, all shards together. Entries live in a slab
// (a slice) indexed by int32 rather than behind pointers, so a table of a
// million entries is a handful of large pointer-free allocations the
// garbage collector never scans.
//
// Entries that may be dropped are kept in a per-shard LRU list, most
// recently used first. An entry can be pinned (taken off the list) while
// something refers to it by index, e.g. a client with open connections;
// pinned entries are never evicted or swept, so their index stays valid.
//
// At capacity a new entry takes the place of an old one, chosen by the
// table's policy: never one that is protected (a client in its penalty
// box), an idle plain entry before one that remembers something (failures
// being counted). When a shard holds nothing it may give up, the new key
// goes without an entry and the table counts as full until a later insert
// succeeds.
//
// All methods of shard need its mu held, as their unsynced prefix says.
type table[K comparable, E any] struct {
	shards    [numShards]shard[K, E]
	hash      func(K) uint64
	policy    policy[E]
	cap       int64
	count     atomic.Int64  // live entries, all shards; at most cap
	evicted   atomic.Uint64 // entries dropped at capacity before they expired
	full      atomic.Bool   // the last insert at capacity found no place
	fullTimes atomic.Uint64 // times full went from false to true
}

// policy tells a table how its entries age; the table knows nothing of
// what they hold. Times are the caller's nanoseconds.
type policy[E any] struct {
	// expired reports whether e holds nothing a fresh entry would not;
	// expired entries are dropped first, as the cheapest to lose.
	expired func(e *E, now int64) bool
	// keepUntil returns when e may be evicted at the earliest; while now
	// is before it, e is never evicted. Nil: no entry is protected.
	keepUntil func(e *E) int64
	// remembers reports whether e holds history worth more than an idle
	// entry's (failures being counted); such entries are evicted only when
	// no plain one is found near the tail. Nil: none does.
	remembers func(e *E, now int64) bool
}

// victimScan bounds how many evictable entries a full shard looks at for
// a plain one before it settles for the oldest that remembers something,
// so that a storm of clients that all remember does not make every insert
// walk the whole shard.
const victimScan = 8

type shard[K comparable, E any] struct {
	mu         sync.Mutex
	index      map[K]int32
	slots      []slot[K, E]
	free       int32 // head of the free list, linked through next
	head, tail int32 // LRU list of unpinned entries; head is the newest
	// keptUntil is set when a scan found every entry on the LRU list
	// protected: no victim can appear before then unless an entry joins
	// the list, which resets it. It makes a shard full of boxed clients
	// cost O(1) per newcomer instead of a walk.
	keptUntil int64
	t         *table[K, E]
	_         [64]byte // keep hot shards on separate cache lines
}

type slot[K comparable, E any] struct {
	key        K
	prev, next int32 // prev is pinned when the entry is off the LRU list
	e          E
}

func newTable[K comparable, E any](capacity int, hash func(K) uint64, p policy[E]) *table[K, E] {
	capacity = max(capacity, minSize)
	t := &table[K, E]{hash: hash, cap: int64(capacity), policy: p}
	for i := range t.shards {
		s := &t.shards[i]
		s.free, s.head, s.tail = noSlot, noSlot, noSlot
		s.t = t
	}
	return t
}

// shardFor returns the shard that holds k.
func (t *table[K, E]) shardFor(k K) *shard[K, E] {
	return &t.shards[t.hash(k)>>(64-6)]
}

// unsyncedGet returns the index of k's entry, creating a zero entry when
// there is none (created is then true). A new entry starts at the LRU
// head. At capacity it takes the place of an entry of this shard chosen by
// unsyncedVictim; the cap is global rather than per shard so that an
// uneven spread of keys over shards does not waste capacity. When this
// shard has no entry it may give up it returns noSlot and the caller must
// do without.
func (s *shard[K, E]) unsyncedGet(k K, now int64) (idx int32, created bool) {
	if i, ok := s.index[k]; ok {
		return i, false
	}
	// Cleanup on access: a couple of expired tail entries per insert keeps
	// a shard from filling up with dead entries even without a sweeper.
	for n := 0; n < 2 && s.tail != noSlot && s.t.policy.expired(&s.slots[s.tail].e, now); n++ {
		s.unsyncedRemove(s.tail)
	}
	for {
		n := s.t.count.Load()
		if n < s.t.cap {
			// Reserve the place first, so that concurrent inserts in
			// other shards cannot take the table past its cap.
			if s.t.count.CompareAndSwap(n, n+1) {
				break
			}
			continue
		}
		v := s.unsyncedVictim(now)
		if v == noSlot {
			if s.t.full.CompareAndSwap(false, true) {
				s.t.fullTimes.Add(1)
			}
			return noSlot, false
		}
		// The new entry takes over the evicted one's place in count.
		s.unsyncedDrop(v)
		s.t.evicted.Add(1)
		break
	}
	if s.t.full.Load() {
		s.t.full.Store(false)
	}
	if s.index == nil {
		s.index = make(map[K]int32)
	}
	if s.free != noSlot {
		idx = s.free
		s.free = s.slots[idx].next
		s.slots[idx] = slot[K, E]{key: k}
	} else {
		idx = int32(len(s.slots))
		s.slots = append(s.slots, slot[K, E]{key: k})
	}
	s.index[k] = idx
	s.unsyncedPushFront(idx)
	return idx, true
}

// unsyncedVictim picks the entry to evict for a newcomer, or noSlot when
// every entry on the LRU list is protected. It walks from the oldest end:
// the first plain entry wins; failing that among the first victimScan
// evictable ones, the oldest that remembers something. Protected entries
// met on the way are moved to the front, out of the next walk's way; their
// place in the LRU order does not matter while they are protected.
func (s *shard[K, E]) unsyncedVictim(now int64) int32 {
	p := &s.t.policy
	if s.keptUntil > now {
		return noSlot
	}
	fallback, seen := noSlot, 0
	var keptUntil int64 // the earliest end of protection met; 0: none met
	// Rotating protected entries to the front makes the walk come round
	// to them again; len(index) steps visit every listed entry once.
	for idx, steps := s.tail, len(s.index); idx != noSlot && steps > 0; steps-- {
		prev := s.slots[idx].prev
		e := &s.slots[idx].e
		if p.keepUntil != nil {
			if until := p.keepUntil(e); until > now {
				if keptUntil == 0 || until < keptUntil {
					keptUntil = until
				}
				if s.head != idx {
					s.unsyncedUnlink(idx)
					s.unsyncedPushFront(idx)
				}
				idx = prev
				continue
			}
		}
		if p.remembers == nil || !p.remembers(e, now) {
			return idx
		}
		if fallback == noSlot {
			fallback = idx
		}
		if seen++; seen >= victimScan {
			break
		}
		idx = prev
	}
	if fallback == noSlot {
		// Every listed entry is protected (or none is listed: keptUntil
		// stays 0 and the next newcomer looks again).
		s.keptUntil = keptUntil
	}
	return fallback
}

// unsyncedTouch marks idx as just used, if it is on the LRU list.
func (s *shard[K, E]) unsyncedTouch(idx int32) {
	if s.slots[idx].prev == pinned || s.head == idx {
		return
	}
	s.unsyncedUnlink(idx)
	s.unsyncedPushFront(idx)
}

// unsyncedPin takes idx off the LRU list so it is neither evicted nor
// swept until unsyncedUnpin.
func (s *shard[K, E]) unsyncedPin(idx int32) {
	if s.slots[idx].prev != pinned {
		s.unsyncedUnlink(idx)
		s.slots[idx].prev = pinned
	}
}

// unsyncedUnpin puts idx back on the LRU list as the newest entry.
func (s *shard[K, E]) unsyncedUnpin(idx int32) {
	if s.slots[idx].prev == pinned {
		s.unsyncedPushFront(idx)
	}
}

// unsyncedRemove deletes the entry at idx and gives its place back.
func (s *shard[K, E]) unsyncedRemove(idx int32) {
	s.unsyncedDrop(idx)
	s.t.count.Add(-1)
}

// unsyncedDrop deletes the entry at idx but keeps its place in count, for
// a new entry to take.
func (s *shard[K, E]) unsyncedDrop(idx int32) {
	sl := &s.slots[idx]
	if sl.prev != pinned {
		s.unsyncedUnlink(idx)
	}
	delete(s.index, sl.key)
	var zero slot[K, E]
	*sl = zero
	sl.next = s.free
	s.free = idx
}

func (s *shard[K, E]) unsyncedUnlink(idx int32) {
	sl := &s.slots[idx]
	if sl.prev != noSlot {
		s.slots[sl.prev].next = sl.next
	} else {
		s.head = sl.next
	}
	if sl.next != noSlot {
		s.slots[sl.next].prev = sl.prev
	} else {
		s.tail = sl.prev
	}
	sl.prev, sl.next = noSlot, noSlot
}

func (s *shard[K, E]) unsyncedPushFront(idx int32) {
	s.keptUntil = 0 // a newly listed entry may be a victim
	sl := &s.slots[idx]
	sl.prev, sl.next = noSlot, s.head
	if s.head != noSlot {
		s.slots[s.head].prev = idx
	}
	s.head = idx
	if s.tail == noSlot {
		s.tail = idx
	}
}

// sweep walks every shard's LRU list from its oldest end and removes
// expired entries. old reports whether an entry was last used long enough
// ago that it may have expired; the walk of a shard stops at the first
// entry that is not old, since everything newer is newer still.
func (t *table[K, E]) sweep(old, expired func(*E) bool) (removed int) {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for idx := s.tail; idx != noSlot; {
			e := &s.slots[idx].e
			if !old(e) {
				break
			}
			prev := s.slots[idx].prev
			if expired(e) {
				s.unsyncedRemove(idx)
				removed++
			}
			idx = prev
		}
		s.mu.Unlock()
	}
	return removed
}
