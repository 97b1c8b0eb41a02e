package monitor

import "sort"

// topK keeps approximate counts of the most frequent keys in bounded
// memory with the space-saving algorithm (Metwally et al., 2005): when full,
// a new key replaces the key with the smallest count and inherits that
// count as its overestimate. A key whose true count exceeds total/cap is
// guaranteed to be kept.
//
// topK is not safe for concurrent use; its owner locks.
type topK struct {
	cap  int
	idx  map[string]int // key -> position in h
	h    []topEntry     // min-heap on count
	rest uint64         // counts never attributed to a kept key (cap 0)
}

// topEntry is one kept key. Count may overestimate by at most Err.
type topEntry struct {
	Key   string `json:"key"`
	Count uint64 `json:"count"`
	Err   uint64 `json:"-"`
}

func newTopK(capacity int) *topK {
	return &topK{cap: capacity, idx: make(map[string]int, capacity)}
}

func (t *topK) add(key string, n uint64) {
	if i, ok := t.idx[key]; ok {
		t.h[i].Count += n
		t.down(i)
		return
	}
	if t.cap <= 0 {
		t.rest += n
		return
	}
	if len(t.h) < t.cap {
		t.h = append(t.h, topEntry{Key: key, Count: n})
		t.idx[key] = len(t.h) - 1
		t.up(len(t.h) - 1)
		return
	}
	low := t.h[0]
	delete(t.idx, low.Key)
	t.h[0] = topEntry{Key: key, Count: low.Count + n, Err: low.Count}
	t.idx[key] = 0
	t.down(0)
}

func (t *topK) reset() {
	clear(t.idx)
	t.h = t.h[:0]
	t.rest = 0
}

// top returns up to n entries, largest count first, ties by key.
func (t *topK) top(n int) []topEntry {
	out := append([]topEntry(nil), t.h...)
	sortEntries(out)
	if n >= 0 && len(out) > n {
		out = out[:n]
	}
	return out
}

func sortEntries(es []topEntry) {
	sort.Slice(es, func(i, j int) bool {
		if es[i].Count != es[j].Count {
			return es[i].Count > es[j].Count
		}
		return es[i].Key < es[j].Key
	})
}

func (t *topK) less(i, j int) bool { return t.h[i].Count < t.h[j].Count }

func (t *topK) swap(i, j int) {
	t.h[i], t.h[j] = t.h[j], t.h[i]
	t.idx[t.h[i].Key] = i
	t.idx[t.h[j].Key] = j
}

func (t *topK) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !t.less(i, p) {
			return
		}
		t.swap(i, p)
		i = p
	}
}

func (t *topK) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(t.h) {
			return
		}
		m := l
		if r := l + 1; r < len(t.h) && t.less(r, l) {
			m = r
		}
		if !t.less(m, i) {
			return
		}
		t.swap(i, m)
		i = m
	}
}
