package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

func clientTLS(caFile string) (*tls.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

func connect(url string, cfg *tls.Config, id string) (paho.Client, error) {
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(id).SetTLSConfig(cfg).
		SetConnectTimeout(5 * time.Second).SetAutoReconnect(false))
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, fmt.Errorf("connect %s: timed out", url)
	}
	if tok.Error() != nil {
		return nil, fmt.Errorf("connect %s: %w", url, tok.Error())
	}
	return c, nil
}

// selfCheck subscribes on one transport and publishes on the other, both
// ways, through tlsfront, trusting only the demo root.
func selfCheck(ctx context.Context, caFile, mqtts, wss string) error {
	cfg, err := clientTLS(caFile)
	if err != nil {
		return err
	}
	for _, path := range [][2]string{{mqtts, wss}, {wss, mqtts}} {
		sub, err := connect(path[0], cfg, "demo-check-sub")
		if err != nil {
			return err
		}
		got := make(chan struct{}, 1)
		tok := sub.Subscribe("demo/self-check", 1, func(paho.Client, paho.Message) {
			select {
			case got <- struct{}{}:
			default:
			}
		})
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			sub.Disconnect(0)
			return fmt.Errorf("subscribe over %s: %v", path[0], tok.Error())
		}
		pub, err := connect(path[1], cfg, "demo-check-pub")
		if err != nil {
			sub.Disconnect(0)
			return err
		}
		pub.Publish("demo/self-check", 1, false, "ok").WaitTimeout(5 * time.Second)
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			err = fmt.Errorf("message published over %s never arrived over %s", path[1], path[0])
		case <-ctx.Done():
			err = ctx.Err()
		}
		pub.Disconnect(100)
		sub.Disconnect(100)
		if err != nil {
			return err
		}
	}
	return nil
}

// runClient publishes one message, or with -sub waits for one.
func runClient(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("tlsfront-demo client", flag.ContinueOnError)
	url := fs.String("url", "wss://localhost:8084/mqtt", "broker URL: ssl://host:port or wss://host:port/path")
	ca := fs.String("cafile", "state/demo/ca.pem", "PEM `file` of the root to trust")
	topic := fs.String("t", "demo/hello", "topic")
	msg := fs.String("m", "hello", "message to publish")
	sub := fs.Bool("sub", false, "wait for one message on the topic instead of publishing")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := clientTLS(*ca)
	if err != nil {
		return err
	}
	c, err := connect(*url, cfg, fmt.Sprintf("demo-client-%d", os.Getpid()))
	if err != nil {
		return err
	}
	defer c.Disconnect(100)
	if *sub {
		got := make(chan paho.Message, 1)
		c.Subscribe(*topic, 1, func(_ paho.Client, m paho.Message) { got <- m }).WaitTimeout(5 * time.Second)
		select {
		case m := <-got:
			fmt.Fprintf(stdout, "%s %s\n", m.Topic(), m.Payload())
			return nil
		case <-ctx.Done():
			return errors.New("interrupted")
		}
	}
	if tok := c.Publish(*topic, 1, false, *msg); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		return fmt.Errorf("publish: %v", tok.Error())
	}
	fmt.Fprintf(stdout, "published %q to %s over %s\n", *msg, *topic, *url)
	return nil
}
