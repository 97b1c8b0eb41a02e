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
	Webhook string
	// Slack receives the same as a Slack-compatible {"text": ...} POST.
	Slack string
	// Cooldown is the least time between two notifications for one key:
	// a condition still present is repeated after it, a flapping one is
	// not re-sent within it. Default one hour.
	Cooldown time.Duration
	// Retries is how many times a failed delivery is retried, with
	// exponential backoff from RetryBase (default 1 s) up to 1 minute.
	// Default 5.
	Retries   int
	RetryBase time.Duration
	// Timeout bounds one delivery attempt; default 10 s.
	Timeout time.Duration
	// Client makes the requests; default a plain http.Client. A test seam.
	Client *http.Client
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
}

// AlertState is a firing alert, as /status shows it.
type AlertState struct {
	Key      string    `json:"key"`
	Severity string    `json:"severity"`
	Summary  string    `json:"summary"`
	Since    time.Time `json:"since"`
	Notified bool      `json:"notified"`
}

type alertState struct {
	alert    Alert
	firing   bool
	since    time.Time
	lastSent time.Time // last firing notification for this key, any episode
	notified bool      // a firing notification went out this episode
}

// alerter deduplicates alerts and delivers them from its own goroutine, so
// that whoever raises one never waits on the network.
type alerter struct {
	o     AlertOptions
	log   *slog.Logger
	now   func() time.Time
	host  string
	met   *metrics
	sinks []sink
	queue chan Notification

	mu    sync.Mutex
	state map[string]*alertState
}

type sink struct {
	url   string
	slack bool
}

const alertQueue = 256

// newAlerter takes o with Cooldown and Retries already defaulted by New.
func newAlerter(o AlertOptions, log *slog.Logger, now func() time.Time) (*alerter, error) {
	setZero(&o.RetryBase, time.Second)
	setZero(&o.Timeout, 10*time.Second)
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	a := &alerter{o: o, log: log, now: now, queue: make(chan Notification, alertQueue), state: map[string]*alertState{}}
	a.host, _ = os.Hostname()
	for _, s := range []sink{{o.Webhook, false}, {o.Slack, true}} {
		if s.url == "" {
			continue
		}
		u, err := url.Parse(s.url)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("alert webhook %q is not an http(s) URL", s.url)
		}
		a.sinks = append(a.sinks, s)
	}
	return a, nil
}

// raise reports that al's condition holds now.
func (a *alerter) raise(al Alert) {
	now := a.now()
	a.mu.Lock()
	st := a.state[al.Key]
	if st == nil {
		st = &alertState{}
		a.state[al.Key] = st
	}
	st.alert = al
	newEpisode := !st.firing
	if newEpisode {
		st.firing, st.since, st.notified = true, now, false
	}
	send := st.lastSent.IsZero() || now.Sub(st.lastSent) >= a.o.Cooldown
	if send {
		st.lastSent, st.notified = now, true
	}
	since := st.since
	a.mu.Unlock()

	if newEpisode {
		a.log.Warn("alert firing", "key", al.Key, "severity", al.Severity, "summary", al.Summary, "notify", send)
	}
	if send {
		a.enqueue(Notification{Status: "firing", Key: al.Key, Severity: al.Severity, Summary: al.Summary, Labels: al.Labels, Host: a.host, Since: since, At: now})
	}
}

// resolve reports that key's condition no longer holds. A resolution is
// sent only for an episode whose alert was sent.
func (a *alerter) resolve(key string) {
	now := a.now()
	a.mu.Lock()
	st := a.state[key]
	if st == nil || !st.firing {
		a.mu.Unlock()
		return
	}
	st.firing = false
	notified, al, since := st.notified, st.alert, st.since
	a.mu.Unlock()

	a.log.Info("alert resolved", "key", key, "after", now.Sub(since).Round(time.Second))
	if notified {
		a.enqueue(Notification{Status: "resolved", Key: key, Severity: al.Severity,
			Summary: "resolved: " + al.Summary, Labels: al.Labels, Host: a.host, Since: since, At: now})
	}
}

// sync raises every alert in active whose key starts with prefix and
// resolves the firing ones with that prefix that are not in it.
func (a *alerter) sync(prefix string, active map[string]Alert) {
	for k, al := range active {
		if strings.HasPrefix(k, prefix) {
			a.raise(al)
		}
	}
	a.mu.Lock()
	var gone []string
	for k, st := range a.state {
		if _, ok := active[k]; !ok && st.firing && strings.HasPrefix(k, prefix) {
			gone = append(gone, k)
		}
	}
	a.mu.Unlock()
	for _, k := range gone {
		a.resolve(k)
	}
}

func (a *alerter) firing() []AlertState {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []AlertState
	for k, st := range a.state {
		if st.firing {
			out = append(out, AlertState{Key: k, Severity: st.alert.Severity, Summary: st.alert.Summary, Since: st.since, Notified: st.notified})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

func (a *alerter) enqueue(n Notification) {
	if a.met != nil {
		a.met.alerts.WithLabelValues(n.Status).Inc()
	}
	if len(a.sinks) == 0 {
		return
	}
	select {
	case a.queue <- n:
	default:
		// Delivery is stuck (the webhook is down); the log line above
		// already told, and the queue must not grow without bound.
		a.log.Error("alert dropped: delivery queue full", "key", n.Key, "status", n.Status)
		if a.met != nil {
			a.met.deliveries.WithLabelValues("dropped").Inc()
		}
	}
}

// run delivers queued notifications until ctx ends.
func (a *alerter) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case n := <-a.queue:
			for _, s := range a.sinks {
				err := a.deliver(ctx, s, n)
				result := "ok"
				if err != nil {
					result = "failed"
					if ctx.Err() == nil {
						a.log.Error("alert delivery failed", "key", n.Key, "status", n.Status, "url", redactURL(s.url), "err", err)
					}
				}
				if a.met != nil {
					a.met.deliveries.WithLabelValues(result).Inc()
				}
			}
		}
	}
}

// deliver POSTs n to s, retrying with exponential backoff.
func (a *alerter) deliver(ctx context.Context, s sink, n Notification) error {
	var body []byte
	var err error
	if s.slack {
		icon := ":red_circle:"
		if n.Status == "resolved" {
			icon = ":white_check_mark:"
		}
		body, err = json.Marshal(map[string]string{"text": fmt.Sprintf("%s tlsfront on %s: [%s] %s", icon, n.Host, n.Key, n.Summary)})
	} else {
		body, err = json.Marshal(n)
	}
	if err != nil {
		return fmt.Errorf("encode alert: %w", err)
	}
	backoff := a.o.RetryBase
	for attempt := 0; ; attempt++ {
		err = a.post(ctx, s.url, body)
		if err == nil || attempt >= a.o.Retries || errors.Is(err, errPermanent) {
			return err
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("gave up after %d attempts: %w", attempt+1, err)
		case <-t.C:
		}
		backoff = min(2*backoff, time.Minute)
	}
}

// errPermanent marks an answer that retrying will not change (4xx).
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
		return fmt.Errorf("%w: webhook answered %s", errPermanent, resp.Status)
	}
	return fmt.Errorf("webhook answered %s", resp.Status)
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
