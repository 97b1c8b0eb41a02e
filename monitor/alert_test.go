package monitor

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestAlertRefiresAtOnceAfterResolving(t *testing.T) {
	clk := newClock()
	wh := newWebhook(t)
	m := newTestMonitor(t, Options{Now: clk.Now, Alerts: AlertOptions{Webhook: wh.srv.URL, Cooldown: time.Hour, RetryBase: time.Millisecond}})
	runMonitor(t, m)

	m.Reloaded("main", errors.New("key mismatch"))
	m.Reloaded("main", errors.New("key mismatch"))
	clk.Add(time.Minute)
	m.Reloaded("main", errors.New("key mismatch"))
	waitFor(t, "first firing", func() bool { return wh.count("reload/main", "firing") == 1 })
	m.Reloaded("main", nil)
	m.Reloaded("main", nil)
	waitFor(t, "resolution", func() bool { return wh.count("reload/main", "resolved") == 1 })

	// Well within the cooldown, it fires again: a new episode is told at
	// once (an unusable-key renewal right after a good one must not wait
	// an hour).
	clk.Add(5 * time.Minute)
	m.Reloaded("main", errors.New("unusable key"))
	waitFor(t, "second firing within the cooldown", func() bool { return wh.count("reload/main", "firing") == 2 })
	waitNotified(t, m, "reload/main") // the cooldown counts from here

	// While it keeps firing, the cooldown spaces out the repeats.
	clk.Add(30 * time.Minute)
	m.Reloaded("main", errors.New("unusable key"))
	clk.Add(31 * time.Minute)
	waitFor(t, "one repeat after the cooldown", func() bool { return wh.count("reload/main", "firing") == 3 })
	m.Reloaded("main", nil)
	waitFor(t, "second resolution", func() bool { return wh.count("reload/main", "resolved") == 2 })
	if f, r := wh.count("", "firing"), wh.count("", "resolved"); f != 3 || r != 2 {
		t.Fatalf("firing %d, resolved %d; want 3 (two episodes and one repeat) and 2", f, r)
	}
}

func TestAlertShorterThanDeliveryIsStillTold(t *testing.T) {
	wh := newWebhook(t)
	wh.down.Store(true)
	m := newTestMonitor(t, Options{Alerts: AlertOptions{Webhook: wh.srv.URL, RetryBase: time.Millisecond, Retries: 1}})
	runMonitor(t, m)
	m.Reloaded("main", errors.New("broken"))
	m.Reloaded("main", nil)
	waitFor(t, "a failed attempt", func() bool { return m.deliveries("webhook", "failed") >= 1 })
	wh.down.Store(false)
	waitFor(t, "firing then resolved", func() bool { return wh.count("reload/main", "resolved") == 1 })
	wh.mu.Lock()
	defer wh.mu.Unlock()
	if len(wh.got) != 2 || wh.got[0].Status != "firing" || wh.got[1].Status != "resolved" {
		t.Fatalf("got %+v, want firing then resolved", wh.got)
	}
}

func TestAlertDeliveryRetries(t *testing.T) {
	for _, tc := range []struct {
		name    string
		fails   int32
		retries int
		// failed is how many deliveries failed all their quick retries
		// before the receiver answered.
		failed int
	}{
		{"recovers within the quick retries", 2, 3, 0},
		{"recovers after giving up twice", 6, 1, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wh := newWebhook(t)
			wh.fails.Store(tc.fails)
			m := newTestMonitor(t, Options{Alerts: AlertOptions{Webhook: wh.srv.URL, Retries: tc.retries, RetryBase: time.Millisecond}})
			runMonitor(t, m)
			m.Reloaded("main", errors.New("broken"))
			waitFor(t, "delivery", func() bool { return m.deliveries("webhook", "ok") == 1 })
			if got := wh.count("reload/main", "firing"); got != 1 {
				t.Fatalf("delivered %d, want 1", got)
			}
			if got, want := int(wh.tries.Load()), int(tc.fails)+1; got != want {
				t.Fatalf("%d attempts, want %d", got, want)
			}
			if got := m.deliveries("webhook", "failed"); got != tc.failed {
				t.Fatalf("failed deliveries %d, want %d", got, tc.failed)
			}
			if got := m.deliveries("webhook", "retried") + m.deliveries("webhook", "failed"); got != int(tc.fails) {
				t.Fatalf("retried+failed %d, want %d", got, tc.fails)
			}
		})
	}
}

// A receiver that is down for a while: nothing is dropped and nothing is
// marked sent; everything goes out once when it is back. This is the
// case the old fixed queue lost alerts in.
func TestAlertBacklogDeliveredWhenReceiverReturns(t *testing.T) {
	const n = 300 // more than the old 256-slot queue and than one batch
	wh := newWebhook(t)
	wh.down.Store(true)
	m := newTestMonitor(t, Options{Alerts: AlertOptions{Webhook: wh.srv.URL, Retries: 1, RetryBase: time.Millisecond, MaxAlerts: 512}})
	runMonitor(t, m)
	for i := range n {
		m.Reloaded(fmt.Sprintf("cert%03d", i), errors.New("broken"))
	}
	waitFor(t, "failed attempts", func() bool { return m.deliveries("webhook", "failed") >= 3 })
	for _, a := range m.Status().Alerts {
		if a.Notified {
			t.Fatalf("%s marked notified while the receiver is down", a.Key)
		}
	}
	if wh.count("", "") != 0 {
		t.Fatal("receiver got something while down")
	}
	wh.down.Store(false)
	waitFor(t, "the backlog", func() bool { return wh.count("", "firing") == n })
	waitFor(t, "all marked notified", func() bool {
		for _, a := range m.Status().Alerts {
			if !a.Notified {
				return false
			}
		}
		return true
	})
	seen := map[string]int{}
	wh.mu.Lock()
	for _, x := range wh.got {
		seen[x.Key]++
	}
	wh.mu.Unlock()
	if len(seen) != n {
		t.Fatalf("%d distinct alerts delivered, want %d", len(seen), n)
	}
	for k, c := range seen {
		if c != 1 {
			t.Fatalf("%s delivered %d times", k, c)
		}
	}
	if got := m.deliveries("webhook", "ok"); got != n {
		t.Fatalf("ok deliveries %d, want %d", got, n)
	}
}

func TestAlertCap(t *testing.T) {
	wh := newWebhook(t)
	var logs logBuffer
	m := newTestMonitor(t, Options{Log: slog.New(slog.NewJSONHandler(&logs, nil)),
		Alerts: AlertOptions{Webhook: wh.srv.URL, MaxAlerts: 10, RetryBase: time.Millisecond}})
	runMonitor(t, m)
	for i := range 50 {
		m.Reloaded(fmt.Sprintf("cert%02d", i), errors.New("broken"))
	}
	firing := m.Status().Alerts
	if len(firing) != 11 {
		t.Fatalf("%d firing, want 10 and the overflow alert", len(firing))
	}
	var overflow *AlertState
	for i := range firing {
		if firing[i].Key == overflowKey {
			overflow = &firing[i]
		}
	}
	if overflow == nil || !strings.Contains(overflow.Summary, "40 were not tracked") {
		t.Fatalf("overflow alert = %+v", overflow)
	}
	if got := counterValue(m.met.untracked); got != 40 {
		t.Fatalf("untracked = %v, want 40", got)
	}
	if n := len(logs.records(t, "alert not tracked")); n != 10 {
		t.Fatalf("%d 'alert not tracked' lines, want the first 10", n)
	}
	waitFor(t, "11 notifications", func() bool { return wh.count("", "firing") == 11 })
}

// amReceiver is a loopback Alertmanager v2 API.
type amReceiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []amAlert
}

func newAMReceiver(t *testing.T) *amReceiver {
	r := &amReceiver{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v2/alerts", func(w http.ResponseWriter, req *http.Request) {
		var as []amAlert
		if err := json.NewDecoder(req.Body).Decode(&as); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.got = append(r.got, as...)
		r.mu.Unlock()
	})
	r.srv = httptest.NewServer(mux)
	t.Cleanup(r.srv.Close)
	return r
}

func (r *amReceiver) alerts() []amAlert {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]amAlert(nil), r.got...)
}

func TestAlertmanager(t *testing.T) {
	clk := newClock()
	am := newAMReceiver(t)
	m := newTestMonitor(t, Options{Now: clk.Now, Alerts: AlertOptions{Alertmanager: am.srv.URL + "/", RetryBase: time.Millisecond}})
	runMonitor(t, m)

	start := clk.Now()
	m.Reloaded("main", errors.New("key mismatch"))
	waitFor(t, "firing", func() bool { return len(am.alerts()) == 1 })
	waitNotified(t, m, "reload/main") // the interval counts from here
	// Still firing a minute later: re-posted, so that Alertmanager's
	// resolve_timeout (5m) never resolves it behind our back.
	clk.Add(time.Minute)
	waitFor(t, "the re-post", func() bool { return len(am.alerts()) == 2 })
	clk.Add(10 * time.Second)
	m.Reloaded("main", nil)
	waitFor(t, "resolved", func() bool { return len(am.alerts()) == 3 })

	got := am.alerts()
	for i, a := range got {
		if a.Labels["alertname"] != "TLSFrontCertificateReloadFailed" || a.Labels["severity"] != "critical" ||
			a.Labels["key"] != "reload/main" || a.Labels["certificate"] != "main" || a.Labels["instance"] == "" {
			t.Errorf("alert %d labels = %v", i, a.Labels)
		}
		if !a.StartsAt.Equal(start) || !strings.Contains(a.Annotations["summary"], "key mismatch") ||
			strings.HasPrefix(a.Annotations["summary"], "resolved") {
			t.Errorf("alert %d = %+v", i, a)
		}
	}
	if !got[0].EndsAt.IsZero() || !got[1].EndsAt.IsZero() {
		t.Errorf("firing alerts carry endsAt: %v, %v", got[0].EndsAt, got[1].EndsAt)
	}
	if want := start.Add(70 * time.Second); !got[2].EndsAt.Equal(want) {
		t.Errorf("resolved endsAt = %v, want %v", got[2].EndsAt, want)
	}
	if m.deliveries("alertmanager", "ok") != 3 {
		t.Errorf("ok deliveries = %d, want 3", m.deliveries("alertmanager", "ok"))
	}
}

// A scanner asking for 10,000 random names: every one refused before any
// CA contact. That is a metric and a few log lines, never an alert, and
// memory and /status stay small. Three real renewal failures during the
// scan make one alert that names all three.
func TestRefusedOnDemandNamesRaiseNoAlert(t *testing.T) {
	clk := newClock()
	wh := newWebhook(t)
	var logs logBuffer
	m := newTestMonitor(t, Options{Now: clk.Now, Log: slog.New(slog.NewJSONHandler(&logs, nil)),
		Alerts: AlertOptions{Webhook: wh.srv.URL, RetryBase: time.Millisecond}})
	runMonitor(t, m)

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	refused := errors.New("on-demand issuance not allowed for this name")
	bad := []string{"mqtt.example.com", "ws.example.com", "iot.example.com"}
	for i := range 10_000 {
		name := fmt.Sprintf("%016x.scan.example", rand.Uint64())
		m.ACMEEvent("on_demand_refused", []string{name}, refused)
		if i%1000 == 0 {
			clk.Add(10 * time.Second)
		}
		if i%3000 == 1500 {
			m.ACMEEvent(ACMEFailed, []string{bad[i/3000]}, errors.New("renewal: unusable key"))
		}
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)

	firing := m.Status().Alerts
	if len(firing) != 1 || firing[0].Key != acmeKey {
		t.Fatalf("firing %+v, want only %s", firing, acmeKey)
	}
	for _, n := range bad {
		if !strings.Contains(firing[0].Summary, n) {
			t.Errorf("acme alert summary lacks %s: %s", n, firing[0].Summary)
		}
	}
	if strings.Contains(firing[0].Summary, "scan.example") {
		t.Errorf("a refused name reached the alert: %s", firing[0].Summary)
	}
	// A name joining the alert is told again once the change delay (a
	// minute) has passed since the last notification; the clock moves a
	// minute at a time, as a delivery may have been on its way.
	waitForAdvancing(t, clk, time.Minute, "a notification naming all three", func() bool {
		wh.mu.Lock()
		defer wh.mu.Unlock()
		for _, n := range wh.got {
			if n.Key == acmeKey && strings.Contains(n.Summary, bad[0]) && strings.Contains(n.Summary, bad[1]) && strings.Contains(n.Summary, bad[2]) {
				return true
			}
		}
		return false
	})
	if n := wh.count("", ""); n < 1 || n > 3 {
		t.Errorf("%d notifications, want 1 to 3, all for %s", n, acmeKey)
	}
	if k := wh.count(acmeKey, ""); k != wh.count("", "") {
		t.Errorf("notifications for other keys than %s", acmeKey)
	}

	if got := counterValue(m.met.acme.WithLabelValues("refused")); got != 10_000 {
		t.Errorf("refused counted %v, want 10000", got)
	}
	if n := len(logs.records(t, "acme on-demand refused")); n < 1 || n > 20 {
		t.Errorf("%d refusal log lines, want a sample (1 per minute)", n)
	}
	rec := httptest.NewRecorder()
	m.StatusHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/status?format=json", nil))
	if size := rec.Body.Len(); size > 64<<10 {
		t.Errorf("/status is %d bytes, want under 64 KiB", size)
	}
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 4<<20 {
		t.Errorf("heap grew %d bytes over the scan, want under 4 MiB", grew)
	}
	t.Logf("/status %d bytes; heap %d -> %d bytes", rec.Body.Len(), before.HeapAlloc, after.HeapAlloc)

	// Each failing name recovering shrinks the alert; the last resolves it.
	for _, n := range bad {
		m.ACMEEvent(ACMERenewed, []string{n}, nil)
	}
	if len(m.Status().Alerts) != 0 {
		t.Fatalf("still firing after every name renewed: %+v", m.Status().Alerts)
	}
	waitFor(t, "the resolution", func() bool { return wh.count(acmeKey, "resolved") == 1 })
}

// waitNotified waits until every receiver has been told that key fires.
func waitNotified(t *testing.T, m *Monitor, key string) {
	t.Helper()
	waitFor(t, key+" marked notified", func() bool {
		for _, a := range m.alerts.firing() {
			if a.Key == key {
				return a.Notified
			}
		}
		return false
	})
}

// waitForAdvancing is waitFor that moves clk on by step every 200 ms of
// polling, at most 10 times.
func waitForAdvancing(t *testing.T, clk *clock, step time.Duration, what string, cond func() bool) {
	t.Helper()
	polls, steps := 0, 0
	waitFor(t, what, func() bool {
		if cond() {
			return true
		}
		if polls++; polls%40 == 1 && steps < 10 {
			clk.Add(step)
			steps++
		}
		return false
	})
}

func TestListNames(t *testing.T) {
	for _, tc := range []struct {
		name  string
		names []string
		k     int
		want  string
	}{
		{"few", []string{"b", "a"}, 3, "a, b"},
		{"more than k", []string{"d", "c", "b", "a"}, 2, "a, b and 2 more"},
		{"none", nil, 2, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := listNames(tc.names, tc.k); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}
