package monitor

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Status is what GET /status reports.
type Status struct {
	GeneratedAt  time.Time     `json:"generated_at"`
	Listeners    []Listener    `json:"listeners"`
	Certificates []CertStatus  `json:"certificates"`
	LastProbe    time.Time     `json:"last_probe,omitzero"`
	Probes       []ProbeResult `json:"probes"`
	Handshakes   WindowSummary `json:"handshakes"`
	Limits       LimitStatus   `json:"limits"`
	Alerts       []AlertState  `json:"alerts"`
}

// CertStatus is one served certificate.
type CertStatus struct {
	ID       string         `json:"id"`
	Subject  string         `json:"subject"`
	Names    []string       `json:"names"`
	Chain    []ChainElement `json:"chain"`
	NotAfter time.Time      `json:"not_after"`
	DaysLeft int            `json:"days_left"`
	CertFile string         `json:"cert_file,omitempty"`
	KeyFile  string         `json:"key_file,omitempty"`
	// LastReload is the last reload result; before any, the start load.
	LastReload ReloadStatus `json:"last_reload"`
	OCSP       string       `json:"ocsp"`
	// Probes are the last probe results for names this certificate covers.
	Probes []ProbeResult `json:"probes"`
}

// ChainElement is one certificate of a served chain.
type ChainElement struct {
	Position int       `json:"position"`
	Subject  string    `json:"subject"`
	Issuer   string    `json:"issuer"`
	Serial   string    `json:"serial"`
	NotAfter time.Time `json:"not_after"`
	DaysLeft int       `json:"days_left"`
}

// LimitStatus is what the limits did recently and, when the limiter
// reports it, their state.
type LimitStatus struct {
	Refusals []LimitSummary `json:"refusals_window"`
	Stats    any            `json:"stats,omitempty"`
}

// Status assembles the current status.
func (m *Monitor) Status() Status {
	now := m.now()
	st := Status{GeneratedAt: now, Listeners: m.o.Listeners()}
	m.mu.Lock()
	win := m.win.summary(now, 5)
	probes := sortedProbes(m.probes)
	st.LastProbe = m.probedAt
	reloads := make(map[string]ReloadStatus, len(m.reloads))
	for k, v := range m.reloads {
		reloads[k] = v
	}
	m.mu.Unlock()
	st.Probes, st.Handshakes = probes, win
	st.Limits.Refusals = win.Refusals
	if m.o.LimitStats != nil {
		st.Limits.Stats = m.o.LimitStats()
	}
	st.Alerts = m.alerts.firing()
	for _, c := range m.o.Certificates() {
		if len(c.Chain) == 0 {
			continue
		}
		leaf := c.Chain[0]
		cs := CertStatus{ID: c.ID, Subject: leaf.Subject.String(), Names: certNames(leaf), NotAfter: leaf.NotAfter,
			DaysLeft: daysLeft(leaf.NotAfter, now), CertFile: c.CertFile, KeyFile: c.KeyFile, OCSP: c.OCSP}
		if cs.OCSP == "" {
			cs.OCSP = "n/a"
		}
		for i, e := range c.Chain {
			cs.Chain = append(cs.Chain, ChainElement{Position: i, Subject: e.Subject.String(), Issuer: e.Issuer.String(),
				Serial: fmt.Sprintf("%X", e.SerialNumber), NotAfter: e.NotAfter, DaysLeft: daysLeft(e.NotAfter, now)})
		}
		if r, ok := reloads[c.ID]; ok {
			cs.LastReload = r
		} else {
			cs.LastReload = ReloadStatus{At: c.LoadedAt, OK: true}
		}
		for _, p := range probes {
			if covers(leaf, p.Name) {
				cs.Probes = append(cs.Probes, p)
			}
		}
		st.Certificates = append(st.Certificates, cs)
	}
	return st
}

func covers(leaf *x509.Certificate, name string) bool { return leaf.VerifyHostname(name) == nil }

func daysLeft(t, now time.Time) int { return int(math.Floor(t.Sub(now).Hours() / 24)) }

// MetricsHandler serves the Prometheus metrics (GET /metrics).
func (m *Monitor) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// StatusHandler serves GET /status: JSON for Accept: application/json or
// ?format=json, else a self-contained HTML page.
func (m *Monitor) StatusHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := m.Status()
		w.Header().Set("Cache-Control", "no-store")
		if r.URL.Query().Get("format") == "json" || strings.Contains(r.Header.Get("Accept"), "application/json") {
			w.Header().Set("Content-Type", "application/json")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			enc.Encode(st)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := statusPage.Execute(w, st); err != nil {
			m.log.Warn("status page failed", "err", err)
		}
	})
}

var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"ts": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"ms":      func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) },
	"pct":     func(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) },
	"join":    strings.Join,
	"json":    func(v any) string { b, _ := json.MarshalIndent(v, "", "  "); return string(b) },
	"urgency": urgency,
}).Parse(statusHTML))

func urgency(days int) string {
	switch {
	case days < 7:
		return "bad"
	case days < 21:
		return "warn"
	}
	return "ok"
}

const statusHTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tlsfront status</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;margin:.4em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}.ok{color:#176f2c}.warn{color:#9a6700}.bad{color:#b3261e;font-weight:bold}
code,pre{font-family:ui-monospace,monospace;font-size:12px}small{color:#666}
</style></head><body>
<h1>tlsfront status</h1>
<p><small>generated {{ts .GeneratedAt}} &middot; <a href="?format=json">JSON</a> &middot; <a href="/metrics">metrics</a></small></p>

<h2>Alerts</h2>
{{if .Alerts}}<table><tr><th>key</th><th>severity</th><th>since</th><th>summary</th></tr>
{{range .Alerts}}<tr><td><code>{{.Key}}</code></td><td class="{{if eq .Severity "critical"}}bad{{else}}warn{{end}}">{{.Severity}}</td><td>{{ts .Since}}</td><td>{{.Summary}}</td></tr>
{{end}}</table>{{else}}<p class="ok">none firing</p>{{end}}

<h2>Listeners</h2>
<table><tr><th>name</th><th>kind</th><th>address</th></tr>
{{range .Listeners}}<tr><td>{{.Name}}</td><td>{{.Kind}}</td><td><code>{{.Address}}</code></td></tr>
{{end}}</table>

<h2>Certificates</h2>
{{range .Certificates}}
<h3>{{.ID}} <small class="{{urgency .DaysLeft}}">{{.DaysLeft}} days left</small></h3>
<table>
<tr><th>subject</th><td>{{.Subject}}</td></tr>
<tr><th>names</th><td>{{join .Names ", "}}</td></tr>
<tr><th>not after</th><td>{{ts .NotAfter}}</td></tr>
<tr><th>files</th><td><code>{{.CertFile}}</code>{{if .KeyFile}}, <code>{{.KeyFile}}</code>{{end}}</td></tr>
<tr><th>last reload</th><td>{{ts .LastReload.At}} {{if .LastReload.OK}}<span class="ok">ok</span>{{else}}<span class="bad">failed: {{.LastReload.Error}}</span>{{end}}</td></tr>
<tr><th>OCSP</th><td>{{.OCSP}}</td></tr>
</table>
<table><tr><th>#</th><th>subject</th><th>issuer</th><th>serial</th><th>not after</th><th>days left</th></tr>
{{range .Chain}}<tr><td>{{.Position}}</td><td>{{.Subject}}</td><td>{{.Issuer}}</td><td><code>{{.Serial}}</code></td><td>{{ts .NotAfter}}</td><td class="{{urgency .DaysLeft}}">{{.DaysLeft}}</td></tr>
{{end}}</table>
{{if .Probes}}<table><tr><th>probe</th><th>result</th><th>latency</th><th>serial seen</th><th>at</th></tr>
{{range .Probes}}<tr><td>{{.Listener}} / {{.Name}} via <code>{{.Address}}</code></td><td>{{if .OK}}<span class="ok">ok</span>{{else}}<span class="bad">{{.Error}}</span>{{end}}</td><td>{{ms .Latency}}</td><td><code>{{.Serial}}</code></td><td>{{ts .At}}</td></tr>
{{end}}</table>{{else}}<p><small>no probe result yet</small></p>{{end}}
{{else}}<p>no certificates loaded</p>{{end}}

<h2>Self-probes</h2>
<p><small>last round {{ts .LastProbe}}</small></p>
{{if .Probes}}<table><tr><th>listener</th><th>name</th><th>address</th><th>result</th><th>latency</th><th>serial</th></tr>
{{range .Probes}}<tr><td>{{.Listener}}</td><td>{{.Name}}</td><td><code>{{.Address}}</code></td><td>{{if .OK}}<span class="ok">ok</span>{{else}}<span class="bad">{{.Error}}</span>{{end}}</td><td>{{ms .Latency}}</td><td><code>{{.Serial}}</code></td></tr>
{{end}}</table>{{end}}

<h2>Handshakes, last {{.Handshakes.Seconds}} s</h2>
<p>{{.Handshakes.Handshakes}} handshakes</p>
{{if .Handshakes.Failures}}<table><tr><th>reason</th><th>failures</th><th>share</th><th>top fingerprints (JA4)</th></tr>
{{range .Handshakes.Failures}}<tr><td>{{.Reason}}</td><td>{{.Count}}</td><td>{{pct .Ratio}}</td><td>{{range .TopFingerprints}}<code>{{.Key}}</code> ({{.Count}})<br>{{end}}</td></tr>
{{end}}</table>{{else}}<p class="ok">no failures</p>{{end}}

<h2>Limits</h2>
{{if .Limits.Refusals}}<table><tr><th>limit</th><th>refusals, last 5 min</th></tr>
{{range .Limits.Refusals}}<tr><td>{{.Limit}}</td><td>{{.Count}}</td></tr>
{{end}}</table>{{else}}<p class="ok">no refusals</p>{{end}}
{{if .Limits.Stats}}<pre>{{json .Limits.Stats}}</pre>{{end}}
</body></html>
`
