package certs

import (
	"fmt"
	"io"
	"time"
)

// ReloadReport is the outcome of one reload as the admin listener's POST
// /reload answers it (JSON) and `tlsfront reload` prints it (WriteText).
type ReloadReport struct {
	// OK is true when every certificate reloaded or was unchanged.
	OK           bool     `json:"ok"`
	Certificates []Result `json:"certificates"`
}

// NewReloadReport reports results: OK unless one of them failed.
func NewReloadReport(results []Result) ReloadReport {
	r := ReloadReport{OK: true, Certificates: results}
	for _, res := range results {
		if res.Result == Failed {
			r.OK = false
		}
	}
	return r
}

// WriteText writes a line a certificate: its ID, result, serial and
// expiry, and under a refused one the reason.
func (r ReloadReport) WriteText(w io.Writer) {
	for _, c := range r.Certificates {
		line := fmt.Sprintf("%-24s %s", c.ID, c.Result)
		if c.Serial != "" {
			line += " serial " + c.Serial
		}
		if c.NotAfter != nil {
			line += " until " + c.NotAfter.Format(time.RFC3339)
		}
		if c.Error != "" {
			line += "\n  " + c.Error
		}
		fmt.Fprintln(w, line)
	}
}
