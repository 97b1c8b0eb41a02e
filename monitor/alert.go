package monitor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// AlertOptions say where alerts are delivered besides the log, which
// always gets a line.
type AlertOptions struct {
	// Webhook receives each alert and resolution as a JSON POST (see
	// Notification).
	Webhook string `yaml:"alert_webhook"`
	// Slack receives the same as a Slack-compatible {"text": ...} POST.
	Slack string `yaml:"alert_slack"`
	// Alertmanager is the base URL of an Alertmanager (e.g.
	// http://alertmanager:9093); alerts are POSTed to its /api/v2/alerts
	// while firing, every AlertmanagerInterval, and once with endsAt set
	// when resolved.
	Alertmanager string `yaml:"alertmanager"`
	// AlertmanagerInterval is how often a firing alert is re-posted to
	// Alertmanager. It must stay below Alertmanager's resolve_timeout
	// (default 5m), or Alertmanager resolves the alert by itself; default
	// one minute.
	AlertmanagerInterval time.Duration `yaml:"alertmanager_interval"`
	// Cooldown spaces out repeat notifications (webhook, Slack) of an
	// alert that keeps firing: it is re-sent once per Cooldown. An alert
	// that fires again after it resolved is sent at once. Default one
	// hour.
	Cooldown time.Duration `yaml:"alert_cooldown"`
	// Retries is how many times a failed delivery is retried at once,
	// with exponential backoff from RetryBase (default 1 s) up to one
	// minute; after that the receiver is left alone for a while and the
	// notification is tried again later, until it is delivered or no
	// longer needed. Default 5.
	Retries   int           `yaml:"alert_retries"`
	RetryBase time.Duration `yaml:"-"`
	// Timeout bounds one delivery attempt; default 10 s.
	Timeout time.Duration `yaml:"alert_timeout"`
	// MaxAlerts bounds the alerts tracked at once (firing, or resolved
	// with the resolution not yet delivered). An alert raised beyond it
	// is counted in tlsfront_alerts_untracked_total and summed up in one
	// "alerts/overflow" alert. Default 256.
	MaxAlerts int `yaml:"max_alerts"`
	// Client makes the requests; default a plain http.Client. A test seam.
	Client *http.Client `yaml:"-"`
}

// Alert is a condition worth a person's attention. Key identifies it for
// deduplication, e.g. "probe/mqtt/broker.example.com".
type Alert struct {
	Key      string
	Severity string // "warning" or "critical"
	Summary  string
	Labels   map[string]string
}

// Notification is the JSON body POSTed to AlertOptions.Webhook.
type Notification struct {
	// Status is "firing" or "resolved".
	Status   string            `json:"status"`
	Key      string            `json:"key"`
	Severity string            `json:"severity,omitempty"`
	Summary  string            `json:"summary"`
	Labels   map[string]string `json:"labels,omitempty"`
	Host     string            `json:"host"`
	// Since is when the condition was first seen in this episode.
	Since time.Time `json:"since"`
	At    time.Time `json:"at"`

	version uint64 // the alert's version this was made from
}

// AlertState is a firing alert, as /status shows it.
type AlertState struct {
	Key      string    `json:"key"`
	Severity string    `json:"severity"`
	Summary  string    `json:"summary"`
	Since    time.Time `json:"since"`
	// Notified is true once every configured receiver has been told of
	// this episode (always true without receivers: the log was told).
	Notified bool `json:"notified"`
}

// sent is what one receiver was last told about one alert.
type sent struct {
	status  string    // "", "firing" or "resolved"
	at      time.Time // when the last firing notification was delivered
	changed bool      // the alert grew (e.g. more names) since then
	// owed is set when an episode starts and cleared when its firing
	// notification is delivered: an episode shorter than a delivery is
	// still told, then resolved.
	owed bool
}

type alertState struct {
	alert Alert
	// version counts changes that need telling (a grown group), so that
	// a notification made before one does not count as telling it.
	version uint64
	firing  bool
	since   time.Time
	ended   time.Time
	sent    []sent // by sink index
}

// alerter deduplicates alerts and delivers them, one goroutine per
// receiver, so that whoever raises one never waits on the network.
//
// Nothing is queued: each tracked alert remembers what each receiver was
// last told, and a receiver's goroutine sends whatever differs from what
// the alert is now. A delivery that fails is retried until it succeeds or
// is no longer needed, and is never counted as sent.
type alerter struct {
	o     AlertOptions
	log   *slog.Logger
	now   func() time.Time
	host  string
	met   *metrics
	sinks []*sink

	mu            sync.Mutex
	state         map[string]*alertState
	untracked     uint64
	lastUntracked time.Time
}

type sinkKind int

const (
	sinkWebhook sinkKind = iota
	sinkSlack
	sinkAlertmanager
)

func (k sinkKind) String() string {
	return [...]string{"webhook", "slack", "alertmanager"}[k]
}

// sink is one receiver. Its fields are owned by its delivery goroutine,
// except kick.
type sink struct {
	kind sinkKind
	url  string
	kick chan struct{}
}

const (
	// overflowKey is the one alert raised beyond MaxAlerts.
	overflowKey = "alerts/overflow"
	// deliveryBatch bounds the notifications one receiver is sent per
	// pass (and the alerts in one Alertmanager POST).
	deliveryBatch = 64
)

// newAlerter takes o with Cooldown and Retries already defaulted by New.
func newAlerter(o AlertOptions, log *slog.Logger, now func() time.Time) (*alerter, error) {
	setZero(&o.RetryBase, time.Second)
	setZero(&o.Timeout, 10*time.Second)
	setZero(&o.AlertmanagerInterval, time.Minute)
	setZero(&o.MaxAlerts, 256)
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	a := &alerter{o: o, log: log, now: now, state: map[string]*alertState{}}
	a.host, _ = os.Hostname()
	var errs []error
	for _, s := range []sink{{kind: sinkWebhook, url: o.Webhook}, {kind: sinkSlack, url: o.Slack}, {kind: sinkAlertmanager, url: o.Alertmanager}} {
		if s.url == "" {
			continue
		}
		u, err := url.Parse(s.url)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("alert %s %q is not an http(s) URL", s.kind, s.url))
			continue
		}
		if s.kind == sinkAlertmanager {
			s.url = strings.TrimSuffix(s.url, "/") + "/api/v2/alerts"
		}
		s.kick = make(chan struct{}, 1)
		a.sinks = append(a.sinks, &s)
	}
	if o.AlertmanagerInterval < 0 || o.MaxAlerts < 0 {
		errs = append(errs, errors.New("alertmanager interval and max alerts must not be negative"))
	}
	return a, errors.Join(errs...)
}

// raise reports that al's condition holds now.
func (a *alerter) raise(al Alert) { a.set(al, false) }

// update is raise for a grouped alert whose group grew (a name joined):
// receivers are told again, at most once a minute (or Cooldown, if
// shorter), without waiting for the cooldown.
func (a *alerter) update(al Alert) { a.set(al, true) }

func (a *alerter) set(al Alert, grew bool) {
	now := a.now()
	a.mu.Lock()
	st := a.state[al.Key]
	if st == nil {
		if al.Key != overflowKey && len(a.state) >= a.o.MaxAlerts {
			a.untracked++
			a.lastUntracked = now
			n := a.untracked
			a.mu.Unlock()
			if a.met != nil {
				a.met.untracked.Inc()
			}
			if n <= 10 || n%1000 == 0 { // a flood of them must not flood the log
				a.log.Warn("alert not tracked", "key", al.Key, "severity", al.Severity, "summary", al.Summary, "untracked", n)
			}
			a.set(Alert{Key: overflowKey, Severity: "critical",
				Summary: fmt.Sprintf("more than %d alerts at once: %d were not tracked (the last: %s); see the log and /status", a.o.MaxAlerts, n, al.Key)}, false)
			return
		}
		st = &alertState{sent: make([]sent, len(a.sinks))}
		a.state[al.Key] = st
	}
	st.alert = al
	newEpisode := !st.firing
	if newEpisode {
		st.firing, st.since = true, now
		for i := range st.sent {
			// A receiver that still believes the last episode fires
			// (its resolution was not delivered) needs no new one.
			st.sent[i].owed = st.sent[i].status != "firing"
		}
	} else if grew {
		st.version++
		for i := range st.sent {
			st.sent[i].changed = true
		}
	}
	a.mu.Unlock()

	if newEpisode {
		a.log.Warn("alert firing", "key", al.Key, "severity", al.Severity, "summary", al.Summary)
		if a.met != nil {
			a.met.alerts.WithLabelValues("firing").Inc()
		}
	} else if grew {
		a.log.Warn("alert changed", "key", al.Key, "severity", al.Severity, "summary", al.Summary)
	}
	if newEpisode || grew {
		a.kick()
	}
}

// resolve reports that key's condition no longer holds. A resolution is
// sent to each receiver that was told the alert fired.
func (a *alerter) resolve(key string) {
	now := a.now()
	a.mu.Lock()
	st := a.state[key]
	if st == nil || !st.firing {
		a.mu.Unlock()
		return
	}
	st.firing, st.ended = false, now
	since := st.since
	a.unsyncedForget(key, st)
	a.mu.Unlock()

	a.log.Info("alert resolved", "key", key, "after", now.Sub(since).Round(time.Second).String())
	if a.met != nil {
		a.met.alerts.WithLabelValues("resolved").Inc()
	}
	a.kick()
}

// unsyncedForget drops a resolved alert no receiver needs to hear about
// any more. The caller holds a.mu.
func (a *alerter) unsyncedForget(key string, st *alertState) {
	if st.firing {
		return
	}
	for _, s := range st.sent {
		if s.status == "firing" || s.owed {
			return
		}
	}
	delete(a.state, key)
}

// sync raises every alert in active whose key starts with prefix and
// resolves the firing ones with that prefix that are not in it.
func (a *alerter) sync(prefix string, active map[string]Alert) {
	for k, al := range active {
		if strings.HasPrefix(k, prefix) {
			a.raise(al)
		}
	}
	a.resolveAllBut(prefix, active)
}

// resolveAllBut resolves the firing alerts whose key starts with prefix
// and is not in keep.
func (a *alerter) resolveAllBut(prefix string, keep map[string]Alert) {
	a.mu.Lock()
	var gone []string
	for k, st := range a.state {
		if _, ok := keep[k]; !ok && st.firing && strings.HasPrefix(k, prefix) {
			gone = append(gone, k)
		}
	}
	a.mu.Unlock()
	for _, k := range gone {
		a.resolve(k)
	}
}

// housekeep resolves the overflow alert once no alert has been left
// untracked for a window.
func (a *alerter) housekeep(now time.Time) {
	a.mu.Lock()
	st := a.state[overflowKey]
	quiet := st != nil && st.firing && now.Sub(a.lastUntracked) >= windowSpan
	a.mu.Unlock()
	if quiet {
		a.resolve(overflowKey)
	}
}

func (a *alerter) firing() []AlertState {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []AlertState
	for k, st := range a.state {
		if !st.firing {
			continue
		}
		notified := true
		for _, s := range st.sent {
			notified = notified && s.status == "firing"
		}
		out = append(out, AlertState{Key: k, Severity: st.alert.Severity, Summary: st.alert.Summary, Since: st.since, Notified: notified})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// untrackedCount is how many alerts were raised beyond MaxAlerts.
func (a *alerter) untrackedCount() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.untracked
}

// kick wakes every receiver's goroutine; it never blocks.
func (a *alerter) kick() {
	for _, s := range a.sinks {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// run delivers to every receiver until ctx ends.
func (a *alerter) run(ctx context.Context) {
	var wg sync.WaitGroup
	for i, s := range a.sinks {
		wg.Go(func() { a.runSink(ctx, i, s) })
	}
	wg.Wait()
}

// runSink sends receiver i what it has not been told, when kicked and on
// a short tick (for repeats and retries), until ctx ends.
func (a *alerter) runSink(ctx context.Context, i int, s *sink) {
	tick := time.NewTicker(min(max(a.o.RetryBase, 10*time.Millisecond), time.Second))
	defer tick.Stop()
	var pauseUntil time.Time // real time: backoff is about the network, not the clock seam
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		case <-tick.C:
		}
		if time.Now().Before(pauseUntil) {
			continue
		}
		for range 1024 { // bounded: at most 1024 batches per wake-up
			ns, more := a.due(i, s.kind)
			if len(ns) == 0 {
				break
			}
			delivered := a.deliverBatch(ctx, i, s, ns)
			if ctx.Err() != nil {
				return
			}
			if delivered < len(ns) {
				failures++
				// Leave a receiver that is down alone for a while; what it
				// missed stays due and goes out when it is back.
				pauseUntil = time.Now().Add(min(a.o.RetryBase<<min(failures+a.o.Retries, 20), time.Minute))
				break
			}
			failures = 0
			if !more {
				break
			}
		}
	}
}

// due returns up to deliveryBatch notifications receiver i has not been
// sent, oldest episode first, and whether more are due.
func (a *alerter) due(i int, kind sinkKind) ([]Notification, bool) {
	now := a.now()
	repeat := a.o.Cooldown
	if kind == sinkAlertmanager {
		repeat = a.o.AlertmanagerInterval
	}
	changeDelay := min(a.o.Cooldown, time.Minute)
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []Notification
	for k, st := range a.state {
		s := st.sent[i]
		n := Notification{Key: k, Severity: st.alert.Severity, Summary: st.alert.Summary, Labels: st.alert.Labels, Host: a.host, Since: st.since, At: now,
			version: st.version}
		switch {
		case s.owed || st.firing && (s.status != "firing" || now.Sub(s.at) >= repeat || s.changed && now.Sub(s.at) >= changeDelay):
			n.Status = "firing"
		case !st.firing && s.status == "firing":
			n.Status, n.Summary, n.At = "resolved", "resolved: "+n.Summary, st.ended
		default:
			continue
		}
		out = append(out, n)
	}
	sort.Slice(out, func(x, y int) bool {
		if !out[x].Since.Equal(out[y].Since) {
			return out[x].Since.Before(out[y].Since)
		}
		return out[x].Key < out[y].Key
	})
	if len(out) > deliveryBatch {
		return out[:deliveryBatch], true
	}
	return out, false
}

// deliverBatch sends ns to receiver i and returns how many went through;
// it stops at the first failure.
func (a *alerter) deliverBatch(ctx context.Context, i int, s *sink, ns []Notification) int {
	if s.kind == sinkAlertmanager {
		if !a.deliver(ctx, s, ns) {
			return 0
		}
		a.markSent(i, ns)
		return len(ns)
	}
	for j := range ns {
		if !a.deliver(ctx, s, ns[j:j+1]) {
			return j
		}
		a.markSent(i, ns[j:j+1])
	}
	return len(ns)
}

// markSent records that receiver i got ns.
func (a *alerter) markSent(i int, ns []Notification) {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, n := range ns {
		st := a.state[n.Key]
		if st == nil {
			continue
		}
		st.sent[i].status = n.Status
		switch {
		case n.Status == "firing":
			st.sent[i].at, st.sent[i].owed = now, false
			if n.version == st.version {
				st.sent[i].changed = false
			}
		case st.firing:
			// It fired again while its resolution was on the way: the
			// new episode is owed to this receiver.
			st.sent[i].owed = true
		}
		a.unsyncedForget(n.Key, st)
	}
}

// deliver POSTs ns to s, retrying with exponential backoff, and counts
// the outcome. It reports whether the receiver took them.
func (a *alerter) deliver(ctx context.Context, s *sink, ns []Notification) bool {
	body, err := a.encode(s.kind, ns)
	if err != nil {
		a.log.Error("alert delivery failed", "sink", s.kind.String(), "err", err)
		a.count(s, "failed", len(ns))
		return false
	}
	backoff := a.o.RetryBase
	for attempt := 0; ; attempt++ {
		err = a.post(ctx, s.url, body)
		if err == nil {
			a.count(s, "ok", len(ns))
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		if attempt >= a.o.Retries || errors.Is(err, errPermanent) {
			outcome := "failed"
			if errors.Is(err, errPermanent) {
				outcome = "rejected"
			}
			a.count(s, outcome, len(ns))
			a.log.Error("alert delivery failed", "sink", s.kind.String(), "key", ns[0].Key, "status", ns[0].Status,
				"alerts", len(ns), "url", redactURL(s.url), "attempts", attempt+1, "err", err,
				"detail", "kept and retried later")
			return false
		}
		a.count(s, "retried", len(ns))
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		backoff = min(2*backoff, time.Minute)
	}
}

func (a *alerter) count(s *sink, outcome string, n int) {
	if a.met != nil {
		a.met.deliveries.WithLabelValues(s.kind.String(), outcome).Add(float64(n))
	}
}

// amAlert is one alert in Alertmanager's v2 API (POST /api/v2/alerts).
type amAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	EndsAt      time.Time         `json:"endsAt,omitzero"`
}

func (a *alerter) encode(kind sinkKind, ns []Notification) ([]byte, error) {
	var v any
	switch kind {
	case sinkSlack:
		n := ns[0]
		icon := ":red_circle:"
		if n.Status == "resolved" {
			icon = ":white_check_mark:"
		}
		v = map[string]string{"text": fmt.Sprintf("%s tlsfront on %s: [%s] %s", icon, n.Host, n.Key, n.Summary)}
	case sinkAlertmanager:
		var out []amAlert
		for _, n := range ns {
			l := map[string]string{}
			for k, x := range n.Labels {
				l[k] = x
			}
			l["alertname"] = alertName(n.Key)
			l["severity"] = n.Severity
			l["key"] = n.Key
			l["instance"] = n.Host
			al := amAlert{Labels: l, Annotations: map[string]string{"summary": strings.TrimPrefix(n.Summary, "resolved: ")}, StartsAt: n.Since}
			if n.Status == "resolved" {
				al.EndsAt = n.At
			}
			out = append(out, al)
		}
		v = out
	default:
		v = ns[0]
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode alert: %w", err)
	}
	return b, nil
}

// alertName is the Alertmanager alertname for a key's kind, matching the
// names in examples/prometheus/alerts.yml where there is one.
func alertName(key string) string {
	kind, _, _ := strings.Cut(key, "/")
	switch kind {
	case "expiry":
		return "TLSFrontCertificateExpiresSoon"
	case "reload":
		return "TLSFrontCertificateReloadFailed"
	case "probe":
		return "TLSFrontProbeFailing"
	case "acme":
		return "TLSFrontACMEFailing"
	case "handshake_failures":
		return "TLSFrontHandshakeFailureRatio"
	case "refusals":
		return "TLSFrontLimitRefusalsRising"
	case "backend":
		return "TLSFrontBackendBreakerOpen"
	case "alerts":
		return "TLSFrontAlertOverflow"
	}
	return "TLSFrontAlert"
}

// errPermanent marks an answer that retrying at once will not change (4xx).
var errPermanent = errors.New("rejected")

func (a *alerter) post(ctx context.Context, u string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, a.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "tlsfront-monitor")
	resp, err := a.o.Client.Do(req)
	if err != nil {
		return fmt.Errorf("post alert: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode < 300:
		return nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusRequestTimeout:
		return fmt.Errorf("%w: receiver answered %s", errPermanent, resp.Status)
	}
	return fmt.Errorf("receiver answered %s", resp.Status)
}

// redactURL keeps the scheme and host: webhook paths often hold secrets
// (Slack's do).
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(invalid URL)"
	}
	return u.Scheme + "://" + u.Host + "/..."
}

// listNames is names for a summary: the first k, sorted, then "and N
// more".
func listNames(names []string, k int) string {
	s := append([]string(nil), names...)
	sort.Strings(s)
	if len(s) <= k {
		return strings.Join(s, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(s[:k], ", "), len(s)-k)
}
