package monitor

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBackendState(t *testing.T) {
	clk := newClock()
	var logs logBuffer
	var mu sync.Mutex
	breaker := "closed"
	m := newTestMonitor(t, Options{Now: clk.Now, Log: slog.New(slog.NewJSONHandler(&logs, nil)),
		Backends: func() []BackendState {
			mu.Lock()
			defer mu.Unlock()
			return []BackendState{{Backend: "10.0.0.1:1883", Breaker: breaker, Waiting: 2}, {Backend: "10.0.0.2:1883", Breaker: "closed"}}
		}})
	setBreaker := func(s string) { mu.Lock(); breaker = s; mu.Unlock() }
	metrics := func() string {
		rec := httptest.NewRecorder()
		m.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		return rec.Body.String()
	}

	m.BackendDial("mqtt", "10.0.0.1:1883", time.Millisecond, nil)
	m.evaluate()
	if n := len(logs.records(t, "backend breaker opened")); n != 0 {
		t.Fatalf("%d breaker lines while closed", n)
	}
	body := metrics()
	for _, want := range []string{`tlsfront_backend_up{backend="10.0.0.1:1883"} 1`, `tlsfront_backend_breaker_open{backend="10.0.0.1:1883"} 0`,
		`tlsfront_backend_waiting{backend="10.0.0.1:1883"} 2`} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// The broker dies: dials fail, connections are reset, the breaker opens.
	m.BackendDial("mqtt", "10.0.0.1:1883", 3*time.Millisecond, errors.New("connection refused"))
	m.BackendReset("mqtt", "10.0.0.1:1883", errors.New("backend closed the connection without answering: EOF"))
	setBreaker("open")
	clk.Add(10 * time.Second)
	m.evaluate()
	m.evaluate() // no change, no second line
	body = metrics()
	for _, want := range []string{`tlsfront_backend_up{backend="10.0.0.1:1883"} 0`, `tlsfront_backend_breaker_open{backend="10.0.0.1:1883"} 1`,
		`tlsfront_backend_up{backend="10.0.0.2:1883"} 1`, `tlsfront_backend_resets_total{backend="10.0.0.1:1883",listener="mqtt"} 1`,
		`tlsfront_backend_dial_errors_total{backend="10.0.0.1:1883",listener="mqtt"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if lines := logs.records(t, "backend breaker opened"); len(lines) != 1 || lines[0]["backend"] != "10.0.0.1:1883" {
		t.Fatalf("breaker opened lines = %v", lines)
	}
	firing := m.alerts.firing()
	if len(firing) != 1 || firing[0].Key != "backend/breaker_open" || !strings.Contains(firing[0].Summary, "10.0.0.1:1883") {
		t.Fatalf("alerts = %+v", firing)
	}
	st := m.Status()
	if len(st.Backends) != 2 {
		t.Fatalf("backends = %+v", st.Backends)
	}
	if b := st.Backends[0]; b.Up || b.Breaker != "open" || b.DialErrors != 1 || b.Resets != 1 || b.Dials != 2 ||
		b.LastError != "backend closed the connection without answering: EOF" || !b.BreakerSince.Equal(clk.Now()) {
		t.Fatalf("backend = %+v", b)
	}

	setBreaker("closed")
	m.BackendDial("mqtt", "10.0.0.1:1883", time.Millisecond, nil)
	m.evaluate()
	if lines := logs.records(t, "backend breaker closed"); len(lines) != 1 || lines[0]["was"] != "open" {
		t.Fatalf("breaker closed lines = %v", lines)
	}
	if f := m.alerts.firing(); len(f) != 0 {
		t.Fatalf("still firing: %+v", f)
	}
}

func TestStandardSeries(t *testing.T) {
	m := newTestMonitor(t, Options{Version: "1.2.3"})
	rec := httptest.NewRecorder()
	m.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{`tlsfront_build_info{goversion="go`, `version="1.2.3"} 1`, "go_goroutines ", "go_memstats_heap_alloc_bytes ",
		"process_open_fds ", "process_max_fds ", "process_resident_memory_bytes "} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestPerMinuteHistory(t *testing.T) {
	clk := newClock()
	m := newTestMonitor(t, Options{Now: clk.Now})
	for range 5 {
		m.Handshake(&Handshake{Listener: "mqtt", Version: tls.VersionTLS13})
	}
	m.Handshake(failed("no_shared_cipher", "x"))
	clk.Add(2 * time.Minute)
	m.Handshake(failed("no_shared_cipher", "x"))
	ps := m.Status().PerMinute
	if len(ps) != historyMinutes {
		t.Fatalf("%d points, want %d", len(ps), historyMinutes)
	}
	last, earlier := ps[len(ps)-1], ps[len(ps)-3]
	if last.Handshakes != 1 || last.Failures != 1 || earlier.Handshakes != 6 || earlier.Failures != 1 {
		t.Fatalf("points = %+v ... %+v", earlier, last)
	}
	// An hour later the ring has forgotten them.
	clk.Add(time.Hour)
	for _, p := range m.Status().PerMinute {
		if p.Handshakes != 0 {
			t.Fatalf("old minute still counted: %+v", p)
		}
	}
}

func TestStatusJSONIsSnakeCase(t *testing.T) {
	m := newTestMonitor(t, Options{LimitStats: func() any {
		return struct {
			TrackedClientIDs   int
			HandshakesInFlight int64
			Refused            map[string]uint64
			Backends           []struct{ Name, Breaker string }
		}{3, 1, map[string]uint64{"client_rate": 2}, []struct{ Name, Breaker string }{{"b", "open"}}}
	}})
	rec := httptest.NewRecorder()
	m.StatusHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/status?format=json", nil))
	var v any
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	var walk func(path string, x any)
	walk = func(path string, x any) {
		switch t2 := x.(type) {
		case map[string]any:
			for k, c := range t2 {
				if k != strings.ToLower(k) || strings.Contains(k, " ") {
					t.Errorf("key %s.%s is not snake_case", path, k)
				}
				walk(path+"."+k, c)
			}
		case []any:
			for _, c := range t2 {
				walk(path+"[]", c)
			}
		}
	}
	walk("", v)
	for _, want := range []string{`"tracked_client_ids": 3`, `"handshakes_in_flight": 1`, `"client_rate": 2`, `"breaker": "open"`} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("status lacks %s", want)
		}
	}
}

func TestSnake(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"TrackedClientIDs", "tracked_client_ids"},
		{"HandshakesInFlight", "handshakes_in_flight"},
		{"HTTPServer", "http_server"},
		{"already_snake", "already_snake"},
		{"OCSP", "ocsp"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := snake(tc.in); got != tc.want {
				t.Fatalf("snake(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestHandshakeLogDurationIsReadable(t *testing.T) {
	var logs logBuffer
	m := newTestMonitor(t, Options{Log: slog.New(slog.NewJSONHandler(&logs, nil))})
	h := failed("no_shared_cipher", "x")
	h.Duration = 1234567 * time.Nanosecond
	m.Handshake(h)
	lines := logs.records(t, "handshake failed")
	if len(lines) != 1 || lines[0]["took"] != "1ms" {
		t.Fatalf("took = %v, want \"1ms\"", lines)
	}
}
