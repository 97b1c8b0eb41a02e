package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:0", "`address` to listen on")
	bufSize := flag.Int("buf", 32<<10, "read buffer `bytes` per connection")
	flag.Parse()
	if err := run(*addr, *bufSize); err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
}

func run(addr string, bufSize int) error {
	// 9,000 idle connections need 9,000 descriptors here.
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && rl.Cur < rl.Max {
		rl.Cur = rl.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	fmt.Printf("listening %s\n", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				fmt.Fprintln(os.Stderr, "echo: out of descriptors:", err)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		go serve(c.(*net.TCPConn), bufSize)
	}
}

// serve echoes with a plain read/write loop. io.Copy would splice, and
// Go's splice holds a pipe (two more descriptors) per blocked connection,
// which 9,000 idle connections cannot afford under a 20,000 limit.
func serve(c *net.TCPConn, bufSize int) {
	defer c.Close()
	buf := make([]byte, bufSize)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				c.CloseWrite()
			}
			return
		}
	}
}
