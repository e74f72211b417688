package netguard

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

func listen(t *testing.T, cfg Config) *Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl, err := Wrap(ln, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gl.Close() })
	return gl
}

// dialFrom connects to addr from the loopback address src (all of 127/8 is local on Linux), so one
// test can play several sources.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// serveHTTP serves a tiny API on gl with the state hook, as the project's servers do.
func serveHTTP(t *testing.T, gl *Listener, tlsCfg *tls.Config) {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	srv := &http.Server{Handler: mux, ConnState: gl.HTTPConnState, ReadHeaderTimeout: time.Minute}
	var ln net.Listener = gl
	if tlsCfg != nil {
		ln = tls.NewListener(gl, tlsCfg)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// keepAlive sends one request on c and reads the answer, leaving c idle and open.
func keepAlive(t *testing.T, c net.Conn) {
	t.Helper()
	fmt.Fprintf(c, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("keep-alive request: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.SetReadDeadline(time.Time{})
}

// waitIdle waits until n of gl's connections are Idle. The server marks a connection idle after
// writing its response, which the client may have read first: under load the next connection could
// otherwise go idle before this one.
func waitIdle(t *testing.T, gl *Listener, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		gl.mu.Lock()
		idle := 0
		for c := range gl.conns {
			if c.state == Idle {
				idle++
			}
		}
		gl.mu.Unlock()
		if idle >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections idle after 10 s, want %d", idle, n)
		}
	}
}

// closedByServer waits until the server closes c (reads EOF or a reset).
func closedByServer(c net.Conn, within time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(within))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func get(addr, src string, tlsCfg *tls.Config) error {
	tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}).DialContext,
		TLSClientConfig: tlsCfg, DisableKeepAlives: true}
	scheme := "http"
	if tlsCfg != nil {
		scheme = "https"
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(scheme + "://" + addr + "/health")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// One source holding idle keep-alives cannot take the slots others need: at its cap its own
// oldest idle connection is evicted, and another source is served.
func TestOneSourceCannotTakeAllSlots(t *testing.T) {
	gl := listen(t, Config{MaxConns: 16, MaxConnsPerSource: 4, IdleTimeout: time.Hour, HandshakeTimeout: time.Hour})
	serveHTTP(t, gl, nil)
	var conns []net.Conn
	for range 40 {
		c := dialFrom(t, "127.0.0.1", gl.Addr().String())
		keepAlive(t, c)
		conns = append(conns, c)
	}
	if st := gl.Stats(); st.Open > 4 {
		t.Fatalf("one source holds %d connections, cap 4 (%+v)", st.Open, st)
	}
	// The first connections were evicted to make room for the later ones.
	if !closedByServer(conns[0], 5*time.Second) {
		t.Fatal("the oldest idle connection of the capped source is still open")
	}
	if err := get(gl.Addr().String(), "127.0.0.2", nil); err != nil {
		t.Fatalf("another source is not served: %v", err)
	}
}

// When every slot is taken by idle connections of many sources, a newcomer evicts the oldest.
func TestFullListenerEvictsOldestIdle(t *testing.T) {
	gl := listen(t, Config{MaxConns: 4, MaxConnsPerSource: 1, IdleTimeout: time.Hour, HandshakeTimeout: time.Hour})
	serveHTTP(t, gl, nil)
	var first net.Conn
	for i := range 4 {
		c := dialFrom(t, fmt.Sprintf("127.0.0.%d", 10+i), gl.Addr().String())
		keepAlive(t, c)
		waitIdle(t, gl, i+1) // the order they went idle in is the order under test
		if i == 0 {
			first = c
		}
	}
	if err := get(gl.Addr().String(), "127.0.0.20", nil); err != nil {
		t.Fatalf("newcomer to a listener full of idle connections: %v", err)
	}
	if !closedByServer(first, 5*time.Second) {
		t.Fatal("the oldest idle connection was not the one evicted")
	}
	if st := gl.Stats(); st.Evicted < 1 || st.Open > 4 {
		t.Fatalf("stats %+v", st)
	}
}

// Connections serving a request are never evicted: a full listener of active ones refuses.
func TestActiveConnectionsAreNotEvicted(t *testing.T) {
	gl := listen(t, Config{MaxConns: 2, MaxConnsPerSource: 2})
	release := make(chan struct{})
	entered := make(chan struct{}, 2)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) { entered <- struct{}{}; <-release })
	srv := &http.Server{Handler: mux, ConnState: gl.HTTPConnState}
	go srv.Serve(gl)
	t.Cleanup(func() { srv.Close() })
	defer close(release)
	var busy []net.Conn
	for range 2 {
		c := dialFrom(t, "127.0.0.1", gl.Addr().String())
		fmt.Fprintf(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
		<-entered
		busy = append(busy, c)
	}
	c := dialFrom(t, "127.0.0.3", gl.Addr().String())
	if !closedByServer(c, 5*time.Second) {
		t.Fatal("a third connection was kept while two requests were in flight")
	}
	for _, b := range busy {
		if closedByServer(b, 50*time.Millisecond) {
			t.Fatal("a connection serving a request was closed")
		}
	}
	if st := gl.Stats(); st.Refused != 1 || st.Evicted != 0 {
		t.Fatalf("stats %+v, want one refusal and no eviction", st)
	}
}

// TLS connections that never send a ClientHello are closed after the handshake timeout, and
// sooner when their source holds half its slots or more.
func TestSilentTLSClosedAndPressureTightens(t *testing.T) {
	gl := listen(t, Config{MaxConns: 64, MaxConnsPerSource: 8, HandshakeTimeout: time.Hour, PressureHandshakeTimeout: 100 * time.Millisecond,
		IdleTimeout: time.Hour})
	serveHTTP(t, gl, &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return nil, errors.New("unused") }})
	// Three silent connections: below half the source's cap, the hour-long timeout applies.
	var silent []net.Conn
	for range 3 {
		silent = append(silent, dialFrom(t, "127.0.0.1", gl.Addr().String()))
	}
	if closedByServer(silent[0], 300*time.Millisecond) {
		t.Fatal("silent connection closed before any pressure")
	}
	// A fourth puts the source at half its cap: the three older ones are closed within the
	// pressure timeout (after which the source is no longer pressed, and the fourth may stay).
	dialFrom(t, "127.0.0.1", gl.Addr().String())
	for i, c := range silent {
		if !closedByServer(c, 10*time.Second) {
			t.Fatalf("silent connection %d not closed under pressure", i)
		}
	}
	if st := gl.Stats(); st.TimedOut < 3 {
		t.Fatalf("stats %+v", st)
	}
}

// An idle keep-alive is closed after IdleTimeout.
func TestIdleTimeout(t *testing.T) {
	gl := listen(t, Config{MaxConns: 64, MaxConnsPerSource: 64, IdleTimeout: 100 * time.Millisecond, HandshakeTimeout: time.Hour})
	serveHTTP(t, gl, nil)
	c := dialFrom(t, "127.0.0.1", gl.Addr().String())
	keepAlive(t, c)
	if !closedByServer(c, 10*time.Second) {
		t.Fatal("idle connection not closed")
	}
}

// errListener fails Accept with err n times, then hands out conns from the real listener.
type errListener struct {
	net.Listener
	mu  sync.Mutex
	n   int
	err error
}

func (e *errListener) Accept() (net.Conn, error) {
	e.mu.Lock()
	if e.n > 0 {
		e.n--
		e.mu.Unlock()
		return nil, e.err
	}
	e.mu.Unlock()
	return e.Listener.Accept()
}

func TestAcceptSurvivesTemporaryErrors(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ECONNABORTED} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		opErr := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}
		gl, _ := Wrap(&errListener{Listener: ln, n: 5, err: opErr}, Config{MaxConns: 4})
		go func() {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err == nil {
				defer c.Close()
				io.Copy(io.Discard, c)
			}
		}()
		c, err := gl.Accept()
		if err != nil {
			t.Fatalf("%v: Accept returned %v", errno, err)
		}
		c.Close()
		if st := gl.Stats(); st.AcceptRetries != 5 {
			t.Fatalf("%v: %d retries, want 5", errno, st.AcceptRetries)
		}
		gl.Close()
		if _, err := gl.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v", err)
		}
	}
}

func TestConfig(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	for _, c := range []Config{{}, {MaxConns: 4, MaxConnsPerSource: 5}, {MaxConns: 4, IdleTimeout: -1}} {
		if _, err := Wrap(ln, c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
