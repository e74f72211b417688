package control

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/client"
)

// dialFrom connects from a loopback source address of our choosing (all of 127/8 is local).
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// healthFrom asks /health from src on a fresh connection and returns the status.
func (h *harness) healthFrom(src string) (int, error) {
	tlsCfg, err := client.Trust{CAPin: h.pin}.TLSConfig()
	if err != nil {
		return 0, err
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, TLSClientConfig: tlsCfg, DisableKeepAlives: true}}
	resp, err := hc.Get(h.url + "/health")
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// One source cannot take every connection slot of the API, neither with idle keep-alive
// connections nor with TLS connections that never send a ClientHello: /health still answers
// others at once. (Before, one address held all 4,096 slots and everyone's requests timed out.)
func TestOneSourceCannotTakeAPISlots(t *testing.T) {
	h := sqliteHarness(t, func(c *Config) { c.Limits.MaxConnections = 64; c.Limits.MaxConnectionsPerSource = 16 })
	addr := strings.TrimPrefix(h.url, "https://")
	tlsCfg, err := client.Trust{CAPin: h.pin}.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg.NextProtos = []string{"http/1.1", api.MeshCAProtocol} // HTTP/1.1, and the mesh CA's chain

	t.Run("idle keep-alives", func(t *testing.T) {
		// Each new connection is served, making room by closing the source's oldest idle one.
		for i := range 100 {
			c := tls.Client(dialFrom(t, "127.0.0.1", addr), tlsCfg.Clone())
			fmt.Fprintf(c, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("keep-alive connection %d not served: %v", i, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if st, err := h.healthFrom("127.0.0.2"); err != nil || st != 200 {
			t.Fatalf("/health from another source: %d %v", st, err)
		}
		if open := h.srv.apiListener.Load().Stats().Open; open > 16+1 {
			t.Fatalf("%d connections open; one source may hold 16", open)
		}
	})
	t.Run("silent TLS", func(t *testing.T) {
		for range 200 {
			dialFrom(t, "127.0.0.1", addr) // never sends a ClientHello
		}
		if st, err := h.healthFrom("127.0.0.3"); err != nil || st != 200 {
			t.Fatalf("/health from another source: %d %v", st, err)
		}
		if open := h.srv.apiListener.Load().Stats().Open; open > 16+1 {
			t.Fatalf("%d connections open; one source may hold 16", open)
		}
	})
}

// Idle connections to the metrics listener do not block Prometheus, even from the same address.
// (Before, 64 idle connections held every slot for 120 s.)
func TestIdleConnectionsDoNotBlockScrapes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	maddr := ln.Addr().String()
	ln.Close() // free the port for the server; nothing else binds ports on loopback in this test
	sqliteHarness(t, func(c *Config) { c.Metrics.Listen = maddr })
	var conn net.Conn
	deadline := time.Now().Add(30 * time.Second)
	for conn == nil {
		if conn, err = net.Dial("tcp", maddr); err != nil {
			if time.Now().After(deadline) {
				t.Fatalf("metrics listener never came up: %v", err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	conn.Close()
	for range 64 {
		c := dialFrom(t, "127.0.0.1", maddr)
		fmt.Fprintf(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := hc.Get("http://" + maddr + "/metrics")
	if err != nil {
		t.Fatalf("scrape after 64 idle connections: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("scrape: %s", resp.Status)
	}
}
