package node

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Idle keep-alive connections to the metrics listener are bounded: a client that opens
// connection after connection, each kept alive after one request, holds at most the per-source
// cap, its older connections are closed, and another source still scrapes. (Unbounded, 20k such
// connections took a node from 32 MB to 396 MB.)
func TestMetricsIdleKeepAlivesBounded(t *testing.T) {
	_, nodes, _ := memChain(t, 2)
	m, err := nodes[0].serveMetrics("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	addr := m.ln.Addr().String()
	const conns = 2000
	var closed atomic.Int64
	allClosed := make(chan struct{})
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		fmt.Fprintf(c, "GET /keep-alive HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			// Evicted before its answer: the cap at work, not an error.
			if closed.Add(1) == conns-metricsMaxConnsPerSource {
				close(allClosed)
			}
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		go func() {
			io.Copy(io.Discard, br) // returns when the server closes the connection
			if closed.Add(1) == conns-metricsMaxConnsPerSource {
				close(allClosed)
			}
		}()
	}
	select {
	case <-allClosed:
	case <-time.After(60 * time.Second):
		t.Fatalf("the node still holds %d of %d idle keep-alive connections from one source (cap %d)",
			conns-closed.Load(), conns, metricsMaxConnsPerSource)
	}
	if open := m.ln.Stats().Open; open > metricsMaxConnsPerSource {
		t.Fatalf("%d connections open, cap %d", open, metricsMaxConnsPerSource)
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	client := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape from another source: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("scrape: %s", resp.Status)
	}
}

// Running out of file descriptors while a client connects does not end the admin socket: the
// accept loop backs off and retries, and status answers once descriptors are free again.
func TestAdminSocketSurvivesEMFILE(t *testing.T) {
	_, nodes, _ := memChain(t, 2)
	path := filepath.Join(t.TempDir(), "admin.sock")
	s, err := nodes[0].serveAdmin(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()

	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	// Use up every descriptor but one under a lowered limit, connect with that last one, and the
	// server's accept has none left: EMFILE.
	low := orig
	low.Cur = uint64(countFDs(t) + 32)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig)
		}
	}
	defer restore()
	var filler []*os.File
	defer func() {
		for _, f := range filler {
			f.Close()
		}
	}()
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			if !errors.Is(err, syscall.EMFILE) {
				t.Fatal(err)
			}
			break
		}
		filler = append(filler, f)
	}
	filler[len(filler)-1].Close()
	filler = filler[:len(filler)-1]
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial with the last descriptor: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for s.ln.Stats().AcceptRetries == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the admin socket's accept never met EMFILE")
		}
		time.Sleep(time.Millisecond)
	}
	c.Close()
	for _, f := range filler {
		f.Close()
	}
	filler = nil
	restore()

	c, err = net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintln(c, `{"op":"status"}`)
	var resp AdminResponse
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		t.Fatalf("status after EMFILE: %v (the accept loop is gone)", err)
	}
	if !resp.OK {
		t.Fatalf("status after EMFILE: %s", resp.Error)
	}
}

func countFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
