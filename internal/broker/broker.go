package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/tlsfront/tlsfront/internal/freeport"
)

// Broker is a running MQTT broker on loopback with a plain MQTT listener
// and a WebSocket listener.
type Broker struct {
	// Kind is "mosquitto" or "embedded".
	Kind string
	// MQTT and WS are host:port addresses of the listeners.
	MQTT, WS string
	stop     func() error
}

// Close stops the broker and waits for it.
func (b *Broker) Close() error { return b.stop() }

// Start runs Mosquitto if it is on PATH (or in /usr/sbin), else the
// embedded broker. dir holds Mosquitto's configuration and log.
func Start(dir string, log io.Writer) (*Broker, error) {
	if path := MosquittoPath(); path != "" {
		return StartMosquitto(path, dir, log)
	}
	return StartEmbedded()
}

// MosquittoPath returns the mosquitto binary, or "".
func MosquittoPath() string {
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/mosquitto"); err == nil {
		return "/usr/sbin/mosquitto"
	}
	return ""
}

// StartMosquitto runs the mosquitto binary at path with an MQTT and a
// WebSocket listener on free loopback ports, and waits until both accept.
func StartMosquitto(path, dir string, log io.Writer) (*Broker, error) {
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		b, err := tryMosquitto(path, dir, log)
		if err == nil {
			return b, nil
		}
		lastErr = err // most likely a port taken between FreePort and bind
	}
	return nil, lastErr
}

func tryMosquitto(path, dir string, log io.Writer) (*Broker, error) {
	ports, err := freeport.Take(2)
	if err != nil {
		return nil, err
	}
	mp, wp := ports[0], ports[1]
	conf := fmt.Sprintf("per_listener_settings false\nallow_anonymous true\nlistener %d 127.0.0.1\nlistener %d 127.0.0.1\nprotocol websockets\n", mp, wp)
	cf := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	cmd := exec.Command(path, "-c", cf)
	cmd.Stdout, cmd.Stderr = io.MultiWriter(&out, log), io.MultiWriter(&out, log)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start mosquitto: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	b := &Broker{Kind: "mosquitto", MQTT: fmt.Sprintf("127.0.0.1:%d", mp), WS: fmt.Sprintf("127.0.0.1:%d", wp)}
	b.stop = func() error {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		return nil
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if reachable(b.MQTT) && reachable(b.WS) {
			return b, nil
		}
		select {
		case err := <-exited:
			return nil, fmt.Errorf("mosquitto exited (%v): %s", err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.stop()
			return nil, errors.New("mosquitto did not start listening within 10s")
		}
	}
}

func reachable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// StartEmbedded runs an in-process broker.
func StartEmbedded() (*Broker, error) {
	s := mqtt.New(&mqtt.Options{InlineClient: false, Logger: slog.New(slog.DiscardHandler)})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	if err := s.AddListener(listeners.NewNet("mqtt", ln)); err != nil {
		return nil, err
	}
	wp, err := freeport.One()
	if err != nil {
		return nil, err
	}
	ws := fmt.Sprintf("127.0.0.1:%d", wp)
	if err := s.AddListener(listeners.NewWebsocket(listeners.Config{ID: "ws", Address: ws})); err != nil {
		return nil, err
	}
	if err := s.Serve(); err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for !reachable(ws) {
		select {
		case <-ctx.Done():
			s.Close()
			return nil, errors.New("embedded broker's websocket listener did not start")
		case <-time.After(10 * time.Millisecond):
		}
	}
	return &Broker{Kind: "embedded", MQTT: ln.Addr().String(), WS: ws, stop: s.Close}, nil
}
