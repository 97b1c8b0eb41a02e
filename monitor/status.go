package monitor

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Status is what GET /status reports. Its size is bounded whatever the
// number of names: probes are summarised in ProbeCoverage, alerts are
// capped (AlertOptions.MaxAlerts).
type Status struct {
	GeneratedAt  time.Time    `json:"generated_at"`
	Version      string       `json:"version,omitempty"`
	Listeners    []Listener   `json:"listeners"`
	Certificates []CertStatus `json:"certificates"`
	LastProbe    time.Time    `json:"last_probe,omitzero"`
	// ProbeCoverage says how many names are probed, how fast the
	// rotation covers them, and lists the failing ones.
	ProbeCoverage ProbeCoverage `json:"probe_coverage"`
	// Probes is every probe result while there are at most
	// maxProbesListed names, else only the failing ones (as listed in
	// ProbeCoverage).
	Probes     []ProbeResult `json:"probes"`
	Handshakes WindowSummary `json:"handshakes"`
	// PerMinute is handshakes and failures per minute over the last
	// hour, oldest first.
	PerMinute []MinutePoint   `json:"per_minute"`
	Limits    LimitStatus     `json:"limits"`
	Backends  []BackendStatus `json:"backends"`
	Alerts    []AlertState    `json:"alerts"`
	// AlertsUntracked counts alerts raised beyond the cap since start.
	AlertsUntracked uint64 `json:"alerts_untracked"`
}

// maxProbesListed is the most probe results /status lists one by one.
const maxProbesListed = 50

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
	// Probes are the last probe results for names this certificate
	// covers: all of them while there are few, else the failing ones.
	Probes []ProbeResult `json:"probes"`
}

// ChainElement is one certificate of a served chain.
type ChainElement struct {
	Position int `json:"position"`
	// Role is "leaf", "intermediate" or "root". A root is what clients
	// must trust; it is not sent to them (Served is false).
	Role     string    `json:"role"`
	Served   bool      `json:"served"`
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
	// Stats is Options.LimitStats's value with its field names in
	// snake_case.
	Stats any `json:"stats,omitempty"`
}

// Status assembles the current status.
func (m *Monitor) Status() Status {
	now := m.now()
	st := Status{GeneratedAt: now, Version: m.o.Version, Listeners: m.o.Listeners()}
	m.mu.Lock()
	win := m.win.summary(now, 5)
	st.PerMinute = m.hist.points(now)
	st.ProbeCoverage = m.unsyncedCoverage()
	var probes []ProbeResult
	if len(m.probes) <= maxProbesListed {
		probes = sortedProbes(m.probes)
	} else {
		probes = st.ProbeCoverage.FailingNames
	}
	st.LastProbe = m.probedAt
	reloads := make(map[string]ReloadStatus, len(m.reloads))
	for k, v := range m.reloads {
		reloads[k] = v
	}
	m.mu.Unlock()
	st.Probes, st.Handshakes = probes, win
	st.Limits.Refusals = win.Refusals
	if m.o.LimitStats != nil {
		st.Limits.Stats = snakeKeys(m.o.LimitStats())
	}
	st.Backends = m.backends()
	st.Alerts = m.alerts.firing()
	st.AlertsUntracked = m.alerts.untrackedCount()
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
			el := ChainElement{Position: i, Role: "intermediate", Served: true, Subject: e.Subject.String(), Issuer: e.Issuer.String(),
				Serial: fmt.Sprintf("%X", e.SerialNumber), NotAfter: e.NotAfter, DaysLeft: daysLeft(e.NotAfter, now)}
			switch {
			case i == 0:
				el.Role = "leaf"
			case i == len(c.Chain)-1 && isSelfSigned(e):
				el.Role, el.Served = "root", false
			}
			cs.Chain = append(cs.Chain, el)
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

// isSelfSigned reports whether c is a root: issued by itself.
func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

// snakeKeys returns v as plain JSON values with every object key turned
// from Go's CamelCase into snake_case, so that /status reads as one
// style whatever the limiter's struct tags. A value that does not
// encode is returned as its error text.
func snakeKeys(v any) any {
	if v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "cannot encode: " + err.Error()
	}
	var x any
	if err := json.Unmarshal(b, &x); err != nil {
		return "cannot encode: " + err.Error()
	}
	var walk func(any) any
	walk = func(x any) any {
		switch t := x.(type) {
		case map[string]any:
			out := make(map[string]any, len(t))
			for k, v := range t {
				out[snake(k)] = walk(v)
			}
			return out
		case []any:
			for i := range t {
				t[i] = walk(t[i])
			}
			return t
		}
		return x
	}
	return walk(x)
}

// snake turns CamelCase into snake_case, keeping initialisms together
// ("TrackedClientIDs" is "tracked_client_ids"). Keys already in
// snake_case are unchanged.
func snake(s string) string {
	r := []rune(s)
	var b strings.Builder
	for i, c := range r {
		if unicode.IsUpper(c) {
			prevLower := i > 0 && (unicode.IsLower(r[i-1]) || unicode.IsDigit(r[i-1]))
			// The last capital of an initialism followed by a word
			// ("IDsFoo" no, "HTTPServer" yes) starts a new word, except
			// a plural "s" ("IDs").
			nextLower := i > 0 && unicode.IsUpper(r[i-1]) && i+1 < len(r) && unicode.IsLower(r[i+1]) &&
				!(r[i+1] == 's' && (i+2 == len(r) || unicode.IsUpper(r[i+2])))
			if prevLower || nextLower {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(c))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// kvRow is one row of a key and value table on the HTML page.
type kvRow struct{ Key, Value string }

// rows flattens a JSON object for the HTML page: scalars as they are,
// objects as "key: value" lists, lists of objects one item per line.
func rows(v any) []kvRow {
	obj, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []kvRow
	for _, k := range keys {
		out = append(out, kvRow{k, flat(obj[k])})
	}
	return out
}

func flat(v any) string {
	switch t := v.(type) {
	case map[string]any:
		var parts []string
		for _, r := range rows(t) {
			parts = append(parts, r.Key+": "+r.Value)
		}
		return strings.Join(parts, ", ")
	case []any:
		var parts []string
		for _, x := range t {
			parts = append(parts, flat(x))
		}
		return strings.Join(parts, "; ")
	case nil:
		return "none"
	case string:
		if t == "" {
			return `""`
		}
		return t
	}
	return fmt.Sprint(v)
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
	"rows":    rows,
	"spark":   sparkline,
	"pct":     func(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) },
	"join":    strings.Join,
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
<p><small>{{if .Version}}version {{.Version}} &middot; {{end}}generated {{ts .GeneratedAt}} &middot; <a href="?format=json">JSON</a> &middot; <a href="/metrics">metrics</a></small></p>

<h2>Alerts</h2>
{{if .Alerts}}<table><tr><th>key</th><th>severity</th><th>since</th><th>notified</th><th>summary</th></tr>
{{range .Alerts}}<tr><td><code>{{.Key}}</code></td><td class="{{if eq .Severity "critical"}}bad{{else}}warn{{end}}">{{.Severity}}</td><td>{{ts .Since}}</td><td>{{if .Notified}}yes{{else}}<span class="warn">not yet</span>{{end}}</td><td>{{.Summary}}</td></tr>
{{end}}</table>{{else}}<p class="ok">none firing</p>{{end}}
{{if .AlertsUntracked}}<p class="bad">{{.AlertsUntracked}} alerts were raised beyond the cap and not tracked; see the log.</p>{{end}}

<h2>Handshakes per minute, last hour</h2>
{{spark .PerMinute}}
<p><small>grey: handshakes; red: failed</small></p>

<h2>Listeners</h2>
<table><tr><th>name</th><th>kind</th><th>address</th><th>TLS profile</th></tr>
{{range .Listeners}}<tr><td>{{.Name}}</td><td>{{.Kind}}</td><td><code>{{.Address}}</code></td><td>{{if .BelowDefault}}<span class="bad">{{.TLSProfile}} (below the default, on purpose)</span>{{else}}{{.TLSProfile}}{{end}}</td></tr>
{{end}}</table>

<h2>Backends</h2>
{{if .Backends}}<table><tr><th>backend</th><th>state</th><th>breaker</th><th>waiting</th><th>dials</th><th>dial errors</th><th>resets before first byte</th><th>last error</th></tr>
{{range .Backends}}<tr><td><code>{{if .Backend}}{{.Backend}}{{else}}default{{end}}</code></td><td>{{if .Up}}<span class="ok">up</span>{{else}}<span class="bad">down</span>{{end}}</td><td>{{.Breaker}}{{if not .BreakerSince.IsZero}} <small>since {{ts .BreakerSince}}</small>{{end}}</td><td>{{.Waiting}}</td><td>{{.Dials}}</td><td>{{.DialErrors}}</td><td>{{.Resets}}</td><td>{{if .LastError}}{{ts .LastErrorAt}}: {{.LastError}}{{end}}</td></tr>
{{end}}</table>{{else}}<p><small>no backend seen yet</small></p>{{end}}

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
<table><tr><th>#</th><th>role</th><th>subject</th><th>issuer</th><th>serial</th><th>not after</th><th>days left</th></tr>
{{range .Chain}}<tr><td>{{.Position}}</td><td>{{.Role}}{{if not .Served}} <small>(trusted, not served)</small>{{end}}</td><td>{{.Subject}}</td><td>{{.Issuer}}</td><td><code>{{.Serial}}</code></td><td>{{ts .NotAfter}}</td><td class="{{urgency .DaysLeft}}">{{.DaysLeft}}</td></tr>
{{end}}</table>
{{if .Probes}}<table><tr><th>probe</th><th>result</th><th>latency</th><th>serial seen</th><th>at</th></tr>
{{range .Probes}}<tr><td>{{.Listener}} / {{.Name}} via <code>{{.Address}}</code></td><td>{{if .OK}}<span class="ok">ok</span>{{else}}<span class="bad">{{.Error}}</span>{{end}}</td><td>{{ms .Latency}}</td><td><code>{{.Serial}}</code></td><td>{{ts .At}}</td></tr>
{{end}}</table>{{end}}
{{else}}<p>no certificates loaded</p>{{end}}

<h2>Self-probes</h2>
{{with .ProbeCoverage}}
<p>{{.Names}} names; at most {{.PerRound}} per round every {{.Interval}}: a full pass takes {{.RoundsPerPass}} round(s), at most {{.WorstRoundsPerPass}} while names fail.
{{.Rounds}} rounds so far. <span class="ok">{{.Passing}} passing</span>{{if .Failing}}, <span class="bad">{{.Failing}} failing</span>{{end}}{{if .Unchecked}}, {{.Unchecked}} not checked yet{{end}}.
{{if .Passing}}Latency of passing probes {{.LatencyMS.Min}} / {{.LatencyMS.Median}} / {{.LatencyMS.Max}} ms (min / median / max).{{end}}
{{if not .OldestCheck.IsZero}}Oldest check {{ts .OldestCheck}}.{{end}}</p>
{{if .Listeners}}<table><tr><th>listener</th><th>passing</th><th>failing</th></tr>
{{range .Listeners}}<tr><td>{{.Listener}}</td><td>{{.Passing}}</td><td>{{if .Failing}}<span class="bad">{{.Failing}}</span>{{else}}0{{end}}</td></tr>
{{end}}</table>{{end}}
{{if .FailingNames}}<h3>Failing</h3><table><tr><th>listener</th><th>name</th><th>address</th><th>cause</th><th>error</th><th>failing since</th><th>last check</th></tr>
{{range .FailingNames}}<tr><td>{{.Listener}}</td><td>{{.Name}}</td><td><code>{{.Address}}</code></td><td>{{.Cause}}</td><td class="bad">{{.Error}}</td><td>{{ts .FailingSince}}</td><td>{{ts .At}}</td></tr>
{{end}}</table>{{if .FailingOmitted}}<p>and {{.FailingOmitted}} more failing names (see the alerts and <code>tlsfront_probe_success</code>)</p>{{end}}{{end}}
{{end}}
<p><small>last round {{ts .LastProbe}}</small></p>

<h2>Handshakes, last {{.Handshakes.Seconds}} s</h2>
<p>{{.Handshakes.Handshakes}} handshakes</p>
{{if .Handshakes.Failures}}<table><tr><th>reason</th><th>failures</th><th>share</th><th>top fingerprints (JA4)</th></tr>
{{range .Handshakes.Failures}}<tr><td>{{.Reason}}</td><td>{{.Count}}</td><td>{{pct .Ratio}}</td><td>{{range .TopFingerprints}}<code>{{.Key}}</code> ({{.Count}})<br>{{end}}</td></tr>
{{end}}</table>{{else}}<p class="ok">no failures</p>{{end}}

<h2>Limits</h2>
{{if .Limits.Refusals}}<table><tr><th>limit</th><th>refusals, last 5 min</th></tr>
{{range .Limits.Refusals}}<tr><td>{{.Limit}}</td><td>{{.Count}}</td></tr>
{{end}}</table>{{else}}<p class="ok">no refusals in the last 5 min</p>{{end}}
{{with rows .Limits.Stats}}<table><tr><th>state</th><th>value</th></tr>
{{range .}}<tr><td>{{.Key}}</td><td>{{.Value}}</td></tr>
{{end}}</table>{{end}}
</body></html>
`
