package node

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"x0tta6bl4/internal/netguard"
)

// The admin socket speaks one JSON object per line: a request {"op": "status"|"peers"|"routes"|"graph"|
// "heal"|"flows"|"memory"|"heap_profile"|"ping", "target": "...", "count": N} and a response {"ok": bool, "error": "...", "result": ...}. It
// is a unix socket with mode 0600, so only the node's user (and root) can use it.

// AdminRequest is a request on the admin socket.
type AdminRequest struct {
	Op     string `json:"op"`
	Target string `json:"target,omitempty"`
	Count  int    `json:"count,omitempty"`
}

// AdminResponse is the answer.
type AdminResponse struct {
	OK     bool            `json:"ok"`
	Error  string          `json:"error,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
}

// PingResult is one echo of a ping.
type PingResult struct {
	Seq   int           `json:"seq"`
	RTT   time.Duration `json:"rtt_ns"`
	Error string        `json:"error,omitempty"`
}

const (
	maxAdminRequest = 4096
	maxPingCount    = 100
	pingTimeout     = 2 * time.Second
	adminTimeout    = 5 * time.Minute
	// Only the node's user reaches the socket (mode 0600), so the bounds are against a stuck or
	// runaway local client, not strangers: a few dozen operators' commands at once, and a request
	// line that must arrive promptly.
	adminMaxConns       = 32
	adminRequestTimeout = 10 * time.Second
)

type adminServer struct {
	ln   *netguard.Listener
	path string
	wg   sync.WaitGroup
}

func (n *Node) serveAdmin(path string) (*adminServer, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		// A socket left by a previous run; refuse if a live node still answers on it.
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("admin socket %s is in use by a running node", path)
		}
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	// The guard keeps accepting through EMFILE and the like, backing off, so one moment without
	// file descriptors does not end the socket for the life of the process.
	gl, err := netguard.Wrap(ln, netguard.Config{Name: "admin socket", MaxConns: adminMaxConns, MaxConnsPerSource: adminMaxConns,
		HandshakeTimeout: adminRequestTimeout, Logger: n.log})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	s := &adminServer{ln: gl, path: path}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := gl.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					n.log.Error("admin socket: accept failed; the socket is closed", "err", err)
				}
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				n.serveAdminConn(c, gl)
			}()
		}
	}()
	return s, nil
}

func (s *adminServer) close() {
	s.ln.Close()
	s.wg.Wait()
	os.Remove(s.path)
}

func (n *Node) serveAdminConn(c net.Conn, gl *netguard.Listener) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(adminRequestTimeout))
	r := bufio.NewReader(&limitedReader{r: c, n: maxAdminRequest})
	line, err := r.ReadBytes('\n')
	if err != nil {
		json.NewEncoder(c).Encode(AdminResponse{Error: "request must be one JSON line of at most 4096 bytes"})
		return
	}
	gl.SetState(c, netguard.Active) // a ping or a heap profile may take a while
	c.SetDeadline(time.Now().Add(adminTimeout))
	var req AdminRequest
	resp := AdminResponse{}
	if err := json.Unmarshal(line, &req); err != nil {
		resp.Error = "bad request: " + err.Error()
	} else if result, err := n.admin(req); err != nil {
		resp.Error = err.Error()
	} else if resp.Result, err = json.Marshal(result); err == nil {
		resp.OK = true
	}
	json.NewEncoder(c).Encode(resp)
}

type limitedReader struct {
	r net.Conn
	n int
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errors.New("request too long")
	}
	p = p[:min(len(p), l.n)]
	k, err := l.r.Read(p)
	l.n -= k
	return k, err
}

func (n *Node) admin(req AdminRequest) (any, error) {
	switch req.Op {
	case "status":
		return n.Status(), nil
	case "peers":
		return n.PeerPaths(), nil
	case "routes":
		return n.Routes(), nil
	case "graph":
		return n.Graph(), nil
	case "heal":
		return n.Heal(), nil
	case "flows":
		return n.Flows(req.Count)
	case "memory":
		return Memory(false)
	case "heap_profile":
		return Memory(true)
	case "ping":
		dst, ok := n.Resolve(req.Target)
		if !ok {
			return nil, fmt.Errorf("unknown node %q (give a name from 'routes' or an overlay address)", req.Target)
		}
		count := max(1, min(req.Count, maxPingCount))
		out := make([]PingResult, 0, count)
		for i := range count {
			if i > 0 {
				time.Sleep(200 * time.Millisecond)
			}
			ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
			rtt, err := n.Ping(ctx, dst)
			cancel()
			pr := PingResult{Seq: i + 1, RTT: rtt}
			if err != nil {
				pr.Error = err.Error()
			}
			out = append(out, pr)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown op %q: use status, peers, routes, graph, heal, flows, memory, heap_profile or ping", req.Op)
}

// AdminCall sends one request to a node's admin socket and decodes the result into out.
func AdminCall(ctx context.Context, socket string, req AdminRequest, out any) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return fmt.Errorf("node admin socket %s: %w (is the node running?)", socket, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return err
	}
	var resp AdminResponse
	if err := json.NewDecoder(bufio.NewReader(c)).Decode(&resp); err != nil {
		return fmt.Errorf("node admin socket: %w", err)
	}
	if !resp.OK {
		return errors.New(resp.Error)
	}
	return json.Unmarshal(resp.Result, out)
}
