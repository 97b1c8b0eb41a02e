package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestListenerOptionKeys: the per-listener keys for MQTT and client
// identity are read from the file, checked with errors naming the key,
// and reach the listener.
func TestListenerOptionKeys(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string
		check   func(t *testing.T, lc listenerConfig)
	}{
		{name: "mqtt_max_connect_size", yaml: "mqtt_max_connect_size: 1048576",
			check: func(t *testing.T, lc listenerConfig) {
				if lc.MQTTMaxConnectSize != 1<<20 {
					t.Fatalf("mqtt_max_connect_size = %d", lc.MQTTMaxConnectSize)
				}
			}},
		{name: "mqtt_max_connect_size too small", yaml: "mqtt_max_connect_size: 10", wantErr: "listeners[0].mqtt_max_connect_size: 10 is not between 128"},
		{name: "mqtt_max_connect_size over MQTT's", yaml: "mqtt_max_connect_size: 300000000", wantErr: "listeners[0].mqtt_max_connect_size"},
		{name: "mqtt_max_connect_size on raw", yaml: "protocol: raw\n    mqtt_max_connect_size: 1024", wantErr: "only a tcp listener with protocol mqtt"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "tlsfront.yaml")
			cfgText := "certificates: [{cert: c.pem, key: k.pem}]\nlisteners:\n  - listen: 127.0.0.1:0\n    backend: 127.0.0.1:1\n    " + tc.yaml + "\n"
			if err := os.WriteFile(file, []byte(cfgText), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := parseConfig("tlsfront", []string{"--config", file, "--state-dir", dir}, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, cfg.Listeners[0])
		})
	}
}
