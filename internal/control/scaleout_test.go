package control

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/client"
	"x0tta6bl4/internal/control/store"
	"x0tta6bl4/internal/control/store/storetest"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/meshca"
	"x0tta6bl4/internal/policy"
)

const (
	scaleChildEnv     = "X0TTA6BL4_CONTROL_SCALE_CHILD"
	scaleChildAddrEnv = "X0TTA6BL4_CONTROL_SCALE_ADDR"
)

// TestScaleOutChild is one control-plane instance of TestScaleOut; on its own it does nothing. Its
// backstop poll is ten minutes, so every list it serves within the test came by notification.
func TestScaleOutChild(t *testing.T) {
	cfgPath := os.Getenv(scaleChildEnv)
	if cfgPath == "" {
		t.Skip("helper process of TestScaleOut")
	}
	serveChild(t, cfgPath, os.Getenv(scaleChildAddrEnv), Options{Version: "scale-child", CRLPoll: 10 * time.Minute})
}

// postgresOnly returns a fresh PostgreSQL database for the test, or skips it without one.
func postgresOnly(t *testing.T) store.Config {
	if os.Getenv(storetest.EnvPostgres) == "" {
		t.Skipf("needs PostgreSQL: %s is not set (eval \"$(bash .ci/postgres.sh)\")", storetest.EnvPostgres)
	}
	for _, b := range storetest.Backends(t) {
		if b.Name == "postgres" {
			return b.Config(t)
		}
	}
	panic("unreachable: " + storetest.EnvPostgres + " is set but no postgres backend")
}

type instance struct {
	cmd *exec.Cmd
	url string
	out *bytes.Buffer
}

// TestScaleOut runs three control-plane processes on one PostgreSQL database. Enrolments and
// revocations go to all three at once; after each acknowledged revocation every live instance
// serves a list at least that new, pushed by notification; CRL numbers are never reused; one
// instance is SIGKILLed in the middle, and no acknowledged enrolment or revocation is lost.
func TestScaleOut(t *testing.T) {
	if testing.Short() {
		t.Skip("starts subprocesses")
	}
	db := postgresOnly(t)
	dir := t.TempDir()
	cfg := testConfig(t, db)
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.InsecureDev = true
	res, err := Init(t.Context(), cfg, InitOptions{TrustDomain: testTD, Admin: testAdmin}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf(`data_dir: %q
listen: "127.0.0.1:0"
insecure_dev: true
database: {driver: postgres, dsn: %q, max_open_conns: 4}
auth: {argon2: {time: 1, memory_kib: 64, threads: 1}}
rate_limits: {per_ip: {rate: 100000, burst: 100000}, per_key: {rate: 100000, burst: 100000}, auth: {rate: 100000, burst: 100000}}
`, cfg.DataDir, cfg.Database.DSN)
	cfgPath := filepath.Join(dir, "control.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	start := func(i int) *instance {
		addrFile := filepath.Join(dir, fmt.Sprintf("addr-%d", i))
		os.Remove(addrFile)
		cmd := exec.Command(os.Args[0], "-test.run=^TestScaleOutChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), scaleChildEnv+"="+cfgPath, scaleChildAddrEnv+"="+addrFile)
		out := &bytes.Buffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		deadline := time.Now().Add(60 * time.Second)
		for {
			if a, err := os.ReadFile(addrFile); err == nil && len(a) > 0 {
				return &instance{cmd: cmd, url: "http://" + string(a), out: out}
			}
			if time.Now().After(deadline) {
				t.Fatalf("instance %d did not start:\n%s", i, out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	inst := []*instance{start(0), start(1), start(2)}
	trust := client.Trust{AllowHTTP: true}
	admin := func(i *instance) *client.API {
		a, err := client.NewAPI(i.url, res.AdminAPIKey, trust)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(a.Close)
		return a
	}

	// Enrol 12 nodes at once: each token is made on one instance and used on the next.
	const nodes = 12
	var wg sync.WaitGroup
	errs := make(chan error, nodes)
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, err := admin(inst[i%3]).CreateJoinToken(t.Context(), api.CreateJoinTokenRequest{Description: "scale"})
			if err != nil {
				errs <- err
				return
			}
			key, err := identity.GenerateNodeKey()
			if err != nil {
				errs <- err
				return
			}
			if _, err := client.Enroll(t.Context(), inst[(i+1)%3].url, tok.Token, key, fmt.Sprintf("n%02d", i), client.EnrollOptions{Trust: trust}); err != nil {
				errs <- fmt.Errorf("enrol n%02d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// Revoke ten of them from three workers, each revocation on the next instance in turn;
	// instance 2 is SIGKILLed after the fourth acknowledgement, with revocations in flight.
	var (
		mu         sync.Mutex
		acked      []api.RevokeResponse
		killed     bool
		propagated []time.Duration
	)
	live := func() []*instance {
		mu.Lock()
		defer mu.Unlock()
		if killed {
			return inst[:2]
		}
		return slices.Clone(inst)
	}
	next := make(chan int, 10)
	for i := range 10 {
		next <- i
	}
	close(next)
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				name := fmt.Sprintf("n%02d", i)
				var r *api.RevokeResponse
				for attempt := 0; r == nil; attempt++ {
					ls := live()
					target := ls[(i+w+attempt)%len(ls)]
					got, err := admin(target).Revoke(t.Context(), name)
					if err == nil {
						r = got
					} else if isStatus(err, 409) {
						break // an earlier attempt landed on the instance we killed before it answered
					} else if attempt > 10 {
						t.Errorf("revoke %s: %v", name, err)
						return
					}
				}
				if r == nil {
					continue
				}
				mu.Lock()
				acked = append(acked, *r)
				kill := len(acked) == 4 && !killed
				if kill {
					killed = true
				}
				mu.Unlock()
				if kill {
					inst[2].cmd.Process.Kill()
				}
				// Every live instance serves a list at least this new: wait for it (a long poll
				// that returns when the instance has it) and record how long that took.
				for _, in := range live() {
					d, err := waitForCRL(in.url, r.CRLNumber)
					if err != nil {
						mu.Lock()
						dead := killed && in == inst[2]
						mu.Unlock()
						if !dead {
							t.Errorf("instance %s never served list %d: %v", in.url, r.CRLNumber, err)
						}
						continue
					}
					mu.Lock()
					propagated = append(propagated, d)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		for i, in := range inst {
			t.Logf("instance %d output:\n%s", i, in.out.String())
		}
		t.FailNow()
	}

	// CRL numbers are unique across the acknowledgements.
	numbers := map[uint64]string{}
	for _, r := range acked {
		if other, dup := numbers[r.CRLNumber]; dup {
			t.Errorf("list %d acknowledged for both %s and %s", r.CRLNumber, other, r.Node)
		}
		numbers[r.CRLNumber] = r.Node
	}
	// Restart the killed instance: it, like the others, serves a list holding every acknowledged
	// revocation, and lists every enrolled node.
	inst[2] = start(2)
	var newest uint64
	for _, in := range inst {
		l := fetchCRL(t, in.url)
		newest = max(newest, l.Number)
		for _, r := range acked {
			kid, err := parseKeyID(r.RevokedKeyID)
			if err != nil {
				t.Fatal(err)
			}
			if !l.RevokesKey(kid) {
				t.Errorf("instance %s: list %d lacks acknowledged revocation of %s (list %d)", in.url, l.Number, r.Node, r.CRLNumber)
			}
		}
		list, err := admin(in).Nodes(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Nodes) != nodes {
			t.Errorf("instance %s lists %d nodes, want %d", in.url, len(list.Nodes), nodes)
		}
	}
	// An access policy set on one instance is served by the others, pushed by notification.
	set, err := admin(inst[0]).SetPolicy(t.Context(), &policy.Source{Grants: []policy.GrantSource{{Src: []string{"*"}, Dst: []string{"*"}, Ports: []string{"*"}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range inst[1:] {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", in.url+"/api/v1/policy?after="+strconv.FormatUint(set.Version-1, 10)+"&wait=10", nil)
		req.Header.Set("Authorization", "Bearer "+res.AdminAPIKey)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var got api.Policy
		err = json.NewDecoder(r.Body).Decode(&got)
		r.Body.Close()
		if err != nil || got.Version != set.Version {
			t.Errorf("instance %s serves policy %d (%v), want %d", in.url, got.Version, err, set.Version)
		}
	}
	// The database holds lists 1..newest, each number once (the primary key), with no gaps.
	st := storetest.Open(t, db)
	if n, err := st.LatestRevocationListNumber(t.Context()); err != nil || n != newest {
		t.Errorf("database's newest list %d (%v), instances serve %d", n, err, newest)
	}
	slices.Sort(propagated)
	t.Logf("%d revocations acknowledged by 3 instances (one SIGKILLed after 4), lists up to %d, numbers unique; propagation to every live instance: median %v, max %v over %d waits",
		len(acked), newest, propagated[len(propagated)/2], propagated[len(propagated)-1], len(propagated))
	if worst := propagated[len(propagated)-1]; worst > time.Second {
		t.Errorf("an instance took %v to serve a new list, want within 1 s", worst)
	}
}

// waitForCRL long-polls url's revocation list until it serves number n or newer and returns how
// long that took.
func waitForCRL(url string, n uint64) (time.Duration, error) {
	start := time.Now()
	hc := &http.Client{Timeout: 15 * time.Second}
	for time.Since(start) < 15*time.Second {
		r, err := hc.Get(url + "/api/v1/crl?after=" + strconv.FormatUint(n-1, 10) + "&wait=10")
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
		got, _ := strconv.ParseUint(r.Header.Get("X-CRL-Number"), 10, 64)
		if got >= n {
			return time.Since(start), nil
		}
	}
	return 0, fmt.Errorf("still not list %d after 15 s", n)
}

func fetchCRL(t *testing.T, url string) *meshca.RevocationList {
	t.Helper()
	r, err := http.Get(url + "/api/v1/crl")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	l, err := meshca.DecodeRevocationListPEM(b)
	if err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	return l
}
