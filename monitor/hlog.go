package monitor

import "time"

// handshakeLog decides which failed handshakes get a log line: at most
// burst per (reason, fingerprint) each period, so that a storm of one kind
// cannot fill the disk while a new kind is still logged at once. What it
// holds back is counted and summarised once per period.
//
// handshakeLog is not safe for concurrent use; the Monitor locks.
type handshakeLog struct {
	burst  int
	period time.Duration
	keys   map[logKey]*logState
}

type logKey struct{ reason, ja4 string }

type logState struct {
	start      time.Time
	logged     int
	suppressed int
}

// suppressed is a summary of held-back lines for one kind.
type suppressed struct {
	reason, ja4 string
	count       int
	over        time.Duration
}

// maxLogKeys bounds the kinds tracked; beyond it, kinds share one entry
// per reason so an attacker varying fingerprints gains nothing.
const maxLogKeys = 1024

func (l *handshakeLog) init(burst int, period time.Duration) {
	l.burst, l.period = burst, period
	l.keys = map[logKey]*logState{}
}

// note records one failure and says whether to log it, and returns the
// summary of the previous period when this failure starts a new one.
func (l *handshakeLog) note(reason, ja4 string, now time.Time) (logIt bool, s *suppressed) {
	k := logKey{reason, ja4}
	st, ok := l.keys[k]
	if !ok {
		if len(l.keys) >= maxLogKeys {
			k = logKey{reason, "*"}
			st = l.keys[k]
		}
		if st == nil {
			st = &logState{start: now}
			l.keys[k] = st
		}
	}
	if now.Sub(st.start) >= l.period {
		if st.suppressed > 0 {
			s = &suppressed{reason: k.reason, ja4: k.ja4, count: st.suppressed, over: now.Sub(st.start)}
		}
		st.start, st.logged, st.suppressed = now, 0, 0
	}
	if st.logged < l.burst {
		st.logged++
		return true, s
	}
	st.suppressed++
	return false, s
}

// flush returns the summaries of kinds whose period has ended (all kinds
// with held-back lines when all is set) and forgets quiet kinds.
func (l *handshakeLog) flush(now time.Time, all bool) []suppressed {
	var out []suppressed
	for k, st := range l.keys {
		if !all && now.Sub(st.start) < l.period {
			continue
		}
		if st.suppressed == 0 {
			delete(l.keys, k)
			continue
		}
		out = append(out, suppressed{reason: k.reason, ja4: k.ja4, count: st.suppressed, over: now.Sub(st.start)})
		st.start, st.logged, st.suppressed = now, 0, 0
	}
	return out
}

func (m *Monitor) flushLogs(all bool) {
	m.mu.Lock()
	out := m.hlog.flush(m.now(), all)
	m.mu.Unlock()
	for i := range out {
		m.logSuppressed(&out[i])
	}
}

func (m *Monitor) logSuppressed(s *suppressed) {
	m.met.logSuppressed.Add(float64(s.count))
	m.log.Warn("handshake failures suppressed",
		"count", s.count, "over", s.over.Round(time.Second).String(), "reason", s.reason, "ja4", s.ja4,
		"detail", "suppressed handshake failure lines like this one; see tlsfront_handshake_failures_total and /status")
}
