package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the netns tests re-execute this test binary inside a network namespace as a node or as
// a TCP endpoint, so they need nothing but the binary and iproute2.
func TestMain(m *testing.M) {
	switch {
	case os.Getenv("X0TTA6BL4_TEST_NODE") != "":
		os.Exit(helperNode(os.Getenv("X0TTA6BL4_TEST_NODE")))
	case os.Getenv("X0TTA6BL4_TEST_TCP_SERVER") != "":
		os.Exit(helperTCPServer(os.Getenv("X0TTA6BL4_TEST_TCP_SERVER")))
	case os.Getenv("X0TTA6BL4_TEST_TCP_CLIENT") != "":
		os.Exit(helperTCPClient(os.Getenv("X0TTA6BL4_TEST_TCP_CLIENT"), os.Getenv("X0TTA6BL4_TEST_TCP_BYTES")))
	}
	os.Exit(m.Run())
}

func helperNode(config string) int { return runHelperNode(config, nil, nil) }

// runHelperNode runs a node from config until SIGTERM; tweak, if set, adjusts its options and
// started, if set, sees the node before it runs.
func runHelperNode(config string, tweak func(*Options), started func(*Node)) int {
	opts, err := LoadConfig(config)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if tweak != nil {
		tweak(&opts)
	}
	n, err := New(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if started != nil {
		started(n)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := n.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// helperTCPServer echoes every connection back until killed.
func helperTCPServer(addr string) int {
	ln, err := net.Listen("tcp6", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return 1
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(60 * time.Second))
			io.Copy(c, c)
		}()
	}
}

// helperTCPClient sends size pseudo-random bytes to an echo server and checks every byte comes back.
func helperTCPClient(addr, sizeText string) int {
	size, err := strconv.Atoi(sizeText)
	if err != nil || size <= 0 {
		fmt.Fprintln(os.Stderr, "bad size", sizeText)
		return 2
	}
	c, err := net.DialTimeout("tcp6", addr, 5*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	data := make([]byte, size)
	r := rand.NewChaCha8([32]byte{1})
	r.Read(data)
	start := time.Now()
	go func() {
		c.Write(data)
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(io.LimitReader(c, int64(size)+1))
	if err != nil {
		fmt.Fprintln(os.Stderr, "read:", err)
		return 1
	}
	if !bytes.Equal(got, data) {
		fmt.Fprintf(os.Stderr, "echo differs: got %d bytes, sha256 %x, want %x\n", len(got), sha256.Sum256(got), sha256.Sum256(data))
		return 1
	}
	fmt.Printf("ok %d bytes echoed intact in %s\n", size, time.Since(start).Round(time.Millisecond))
	return 0
}
