package monitor_test

import (
	"errors"
	"fmt"
	"strings"

	"github.com/tlsfront/tlsfront/monitor"
)

// The wiring hands the monitor what it reads lazily (here the backends'
// breaker states, as the limiter reports them) and feeds it events.
// ACME failures of several names share one alert; on-demand refusals are
// only counted.
func Example() {
	m, err := monitor.New(monitor.Options{
		Version: "1.4.0",
		Backends: func() []monitor.BackendState {
			return []monitor.BackendState{{Backend: "10.0.0.5:1883", Breaker: "closed"}}
		},
		Alerts: monitor.AlertOptions{Alertmanager: "http://alertmanager.example:9093"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	m.ACMEEvent(monitor.ACMERefused, []string{"random1.example"}, errors.New("not allowed"))
	m.ACMEEvent(monitor.ACMEFailed, []string{"mqtt.example.com"}, errors.New("rate limited"))
	m.ACMEEvent(monitor.ACMEFailed, []string{"ws.example.com"}, errors.New("rate limited"))
	m.BackendDial("mqtt", "10.0.0.5:1883", 0, nil)

	st := m.Status()
	for _, a := range st.Alerts {
		fmt.Println(a.Key, strings.Contains(a.Summary, "mqtt.example.com, ws.example.com"))
	}
	for _, b := range st.Backends {
		fmt.Println(b.Backend, b.Up, b.Breaker)
	}
	// Output:
	// acme/failed true
	// 10.0.0.5:1883 true closed
}
