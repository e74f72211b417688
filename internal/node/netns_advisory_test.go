package node

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The control plane's detector against a low-rate grey hole, on real kernels and processes: a ring
// of five namespaces whose nodes enrol with a control plane (the real command line, as in the NAT
// lab's join test) in a sixth namespace, reachable from each node over a management link of its own
// that carries no mesh traffic. A UDP flow runs from n1 to n3 through relay n2; then n2 drops 15 %
// of the datagrams of 200 to 600 bytes it sends on its ring links (nftables in its namespace). That
// is the data it relays and nothing else. A relayed packet is 100 bytes longer than the IPv6 packet
// inside (batch.go, e2eOverhead) plus the UDP header: the flow's 64-byte datagrams make 220-byte UDP
// datagrams, both ways; link probes and keepalives (under 60), the self-healing echo probes through
// it and its own echo replies (176) are smaller, and link-state records larger. A grey hole that spares probes
// is what the probe rule cannot see by design; n2 itself counts nothing dropped (the kernel drops
// after it), so only its neighbours' per-link counters show the deficit.
//
// Three phases in one run, with the same fault: first the probe rule alone (the control plane runs
// without advisories), then the control plane restarted with ai.advisories enabled (its defaults:
// the model and the flow-conservation judgement, whose threshold was chosen on simulated validation
// runs, never on this test), then an operator's advisory. In each, MTTD is the time from the fault to
// the first decision about n2 by n1 or n3. The test fails unless the detector's advisory (not the
// probe rule, not an operator) moves n1's route off n2 within advisoryWatch, before the probe rule
// alone decided anything, and unless no node acts against any node but n2.
//
// In the detector's phase the fault then stays for advisoryKeep more. Its advisory must stay in force
// all that time, though the traffic has left n2 and n2 has nothing left to lose, and be released
// once the fault has ended, at the end of its hold. Before the advisor held advisories on absence of
// evidence, they cycled: withdrawn as the deficit faded, the flow back on the grey hole, named again.

const (
	advisoryWatch   = 60 * time.Second // how long each phase waits for the mesh to leave n2
	advisoryGreyPct = 15
	advisoryKeep    = 60 * time.Second // the detector's phase keeps the fault this long after its decision
	advisoryHold    = 2 * time.Minute  // the control plane's ai.advisories.damping.hold (its default)
)

// advisoryLab is the ring with its control plane.
type advisoryLab struct {
	*natLab
	names   []string
	url     func(i int) string // node i's control plane URL, over its management link
	control *natProc
	env     []string // ctl commands inside the control namespace
	config  func(advise bool) string
}

func TestNetnsHealAdvisoryGreyhole(t *testing.T) {
	requireNATLab(t)
	l := &advisoryLab{natLab: &natLab{tb: t, dir: t.TempDir(), tag: fmt.Sprintf("x6g%d", os.Getpid()%100000), nodes: map[string]*natNode{}}}
	t.Cleanup(l.cleanup)
	l.build(5)
	a := l.startAdvisoryControl()
	t.Cleanup(l.logAdvisor) // before the lab's cleanup removes the control plane's log

	// n1 first, then each node with the lower-numbered ends of its ring links as peers.
	ring := [][2]int{{0, 1}, {1, 2}, {2, 3}, {3, 4}, {0, 4}}
	for i, name := range l.names {
		var peers []PeerFile
		for k, e := range ring {
			if e[1] == i {
				peers = append(peers, PeerFile{Address: fmt.Sprintf("10.99.%d.1:7946", k), Cert: filepath.Join(l.dir, l.names[e[0]]+"-state", "node.crt")})
			}
		}
		l.joinRing(a, i, peers)
		cert := filepath.Join(l.dir, name+"-state", "node.crt")
		l.waitFor(name+" enrolled", 30*time.Second, func() bool { _, err := os.Stat(cert); return err == nil })
	}
	l.waitFor("every ring link up", 60*time.Second, func() bool {
		for _, e := range ring {
			if p, ok := l.peer(l.names[e[1]], l.names[e[0]]); !ok || !p.Up {
				return false
			}
		}
		return true
	})
	l.waitFor("n1 routes to n3 through n2", 30*time.Second, func() bool {
		r, ok := l.route("n1", "n3")
		return ok && r.Hops == 2 && r.NextHop == "n2"
	})
	n3 := l.status("n3").Overlay
	echo := fmt.Sprintf("[%s]:5002", n3)
	l.spawn("echo", l.tag+"n3", []string{"X0TTA6BL4_TEST_UDP_ECHO=" + echo})
	time.Sleep(200 * time.Millisecond)
	l.spawn("flow", l.tag+"n1", []string{"X0TTA6BL4_TEST_UDP_FLOW=" + echo, "X0TTA6BL4_TEST_UDP_SECONDS=290"})
	l.waitOutOfGrace("n1", "n3")

	probe := l.greyPhase("probe rule alone", nil, 0)
	l.settle()
	l.restartControl(true)
	detected := l.greyPhase("probe rule and the detector's advisories", nil, advisoryKeep)
	l.settle()
	var set time.Time
	operator := l.greyPhase("probe rule and an operator's advisory", func() {
		set = time.Now()
		if out, err := l.cliErr("ctl", l.env, "ctl", "advisory", "set", "--reason", "grey hole test", "--multiplier", "8", "--ttl", "10m", "n2"); err != nil {
			t.Fatalf("ctl advisory set: %v\n%s", err, out)
		}
	}, 0)
	t.Logf("grey hole n2 (drops %d %% of the data it relays, each way; a round trip of the flow through it loses about %d %%):\n  probe rule alone:                %s\n  with the detector's advisories:  %s\n  with an operator's advisory:     %s",
		advisoryGreyPct, 100-(100-advisoryGreyPct)*(100-advisoryGreyPct)/100, probe, detected, operator)

	// An advisory reaches the nodes within a report interval (1 s here) and moves the traffic.
	if !operator.found || operator.decision.Action != "advise" || operator.decision.Time.Sub(set) > 5*time.Second || operator.reroute < 0 {
		t.Errorf("operator advisory: want n1 or n3 to apply it within 5 s of 'ctl advisory set' and n1's route to leave n2: %s", operator)
	}
	if out, err := l.cliErr("ctl", l.env, "ctl", "advisory", "list"); err == nil {
		t.Logf("advisories at the end:\n%s", out)
	}
	// The detector's advisory (its class, not "operator") is what moved the mesh, within the bound.
	if !detected.found || detected.decision.Action != "advise" || detected.decision.Class == "operator" || detected.reroute < 0 {
		t.Errorf("the control plane's detector: want its advisory applied by n1 or n3 within %s of the fault and n1's route off n2: %s", advisoryWatch, detected)
	}
	// It stayed in force for the whole fault, and was released after it, at the end of its hold: the
	// naming came at most a report interval and an advisor interval (1 s each) before the decision.
	if len(detected.lifted) > 0 {
		t.Errorf("the detector's advisory was lifted while n2 was still a grey hole: %v", detected.lifted)
	}
	if held := advisoryKeep + detected.released; detected.found && (detected.released < 0 || held < advisoryHold-5*time.Second || held > advisoryHold+10*time.Second) {
		t.Errorf("the detector's advisory: want it released at the end of its hold (%s after the naming) once the fault ended: %s", advisoryHold, detected)
	}
	// ... and it led the probe rule, which alone either never decided or decided later.
	if probe.found && probe.mttd <= detected.mttd {
		t.Errorf("the probe rule alone decided about n2 %s after the fault, no later than the detector's advisory (%s)", probe.mttd, detected.mttd)
	}
	if fa := l.falseActions(); len(fa) > 0 {
		t.Errorf("decisions against healthy nodes: %v", fa)
	}
}

// build makes the namespaces: n1..n<count> in a ring of veths (10.99.k.0/30, the lower-numbered
// node .1), and "ctl" with a management veth to each node (10.98.i.0/30, ctl .1).
func (l *advisoryLab) build(count int) {
	for i := range count {
		l.names = append(l.names, fmt.Sprintf("n%d", i+1))
	}
	for _, name := range append(l.names, "ctl") {
		ns := l.tag + name
		l.ip("netns", "add", ns)
		l.spaces = append(l.spaces, ns)
		l.ip("-n", ns, "link", "set", "lo", "up")
	}
	veth := func(k int, a, b, devA, devB, addrA, addrB string) {
		va, vb := fmt.Sprintf("%sa%d", l.tag, k), fmt.Sprintf("%sb%d", l.tag, k)
		l.ip("link", "add", va, "type", "veth", "peer", "name", vb)
		l.ip("link", "set", va, "netns", l.tag+a, "name", devA)
		l.ip("link", "set", vb, "netns", l.tag+b, "name", devB)
		l.ip("-n", l.tag+a, "addr", "add", addrA, "dev", devA)
		l.ip("-n", l.tag+b, "addr", "add", addrB, "dev", devB)
		l.ip("-n", l.tag+a, "link", "set", devA, "up")
		l.ip("-n", l.tag+b, "link", "set", devB, "up")
	}
	ring := [][2]int{{0, 1}, {1, 2}, {2, 3}, {3, 4}, {0, 4}}
	for k, e := range ring {
		dev := fmt.Sprintf("e%d", k)
		veth(k, l.names[e[0]], l.names[e[1]], dev, dev, fmt.Sprintf("10.99.%d.1/30", k), fmt.Sprintf("10.99.%d.2/30", k))
	}
	for i, name := range l.names {
		veth(10+i, "ctl", name, fmt.Sprintf("m%d", i), "mg", fmt.Sprintf("10.98.%d.1/30", i), fmt.Sprintf("10.98.%d.2/30", i))
	}
	l.url = func(i int) string { return fmt.Sprintf("https://10.98.%d.1:8443", i) }
}

// startAdvisoryControl initialises the control plane and starts it without advisories.
func (l *advisoryLab) startAdvisoryControl() natControl {
	l.tb.Helper()
	configs := map[bool]string{}
	for _, advise := range []bool{false, true} {
		configs[advise] = l.write(fmt.Sprintf("control-%v.yaml", advise), fmt.Appendf(nil, `listen: "0.0.0.0:8443"
data_dir: %s
auth: {argon2: {time: 1, memory_kib: 64, threads: 1}}
ai:
  advisories: {enabled: %v, interval: 1s}
`, filepath.Join(l.dir, "control"), advise), 0o600)
	}
	l.config = func(advise bool) string { return configs[advise] }
	c := parseControlInit(l.tb, l.cli("", "control", "init", "--config", l.config(false), "--trust-domain", "advisory.test", "--admin", "admin"))
	c.url = "https://127.0.0.1:8443"
	l.env = c.env()
	l.restartControl(false)
	return c
}

// restartControl (re)starts the control plane in its namespace, with or without advisories, and
// waits until it answers.
func (l *advisoryLab) restartControl(advise bool) {
	l.tb.Helper()
	if p := l.control; p != nil {
		p.cmd.Process.Signal(os.Interrupt)
		<-p.exited
	}
	l.control = l.spawn("control", l.tag+"ctl", natCLIEnv("control", "--config", l.config(advise)))
	l.waitFor("control plane answers", 30*time.Second, func() bool {
		_, err := l.cliErr("ctl", l.env, "ctl", "nodes")
		return err == nil
	})
}

// joinRing starts node i with `node --join` over its management link, reporting every second.
func (l *advisoryLab) joinRing(c natControl, i int, peers []PeerFile) {
	l.tb.Helper()
	name := l.names[i]
	out, err := l.cliErr("ctl", l.env, "ctl", "token", "create", "--groups", "lab", "--node-name", name)
	if err != nil {
		l.tb.Fatalf("token create: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	tok := strings.TrimSpace(lines[len(lines)-1])
	f := File{Listen: "0.0.0.0:7946", AdminSocket: filepath.Join(l.dir, name+".sock"), Device: DeviceFile{Mode: "tun", Name: "x6"},
		LogLevel: "debug", Peers: peers,
		Control: ControlFile{State: filepath.Join(l.dir, name+"-state"), ReportInterval: time.Second}}
	data, err := yaml.Marshal(f)
	if err != nil {
		l.tb.Fatal(err)
	}
	config := l.write(name+".yaml", append(data, labFirewall...), 0o644)
	n := &natNode{name: name, ns: l.tag + name, socket: f.AdminSocket, started: time.Now()}
	l.nodes[name] = n
	n.proc = l.spawn(name, n.ns, append(natCLIEnv("node", "--config", config, "--join", l.url(i), "--name", name), "X0TTA6BL4_JOIN_TOKEN="+tok))
}

func (l *advisoryLab) heal(name string) HealStatus {
	var h HealStatus
	if err := l.admin(name, AdminRequest{Op: "heal"}, &h); err != nil {
		l.tb.Fatalf("heal status of %s: %v", name, err)
	}
	return h
}

// waitOutOfGrace waits until the named nodes judge every neighbour (none in its grace period).
func (l *advisoryLab) waitOutOfGrace(names ...string) {
	l.tb.Helper()
	l.waitFor("probes judged", 60*time.Second, func() bool {
		for _, name := range names {
			h := l.heal(name)
			if len(h.Peers) != 2 || h.ProbesOK < 20 {
				return false
			}
			for _, p := range h.Peers {
				if p.Class == "" || p.Class == classGrace {
					return false
				}
			}
		}
		return true
	})
}

// greyResult is one phase's outcome.
type greyResult struct {
	found    bool
	mttd     time.Duration // fault → the first decision about n2 by n1 or n3
	reroute  time.Duration // that decision → n1's route to n3 off n2 (-1: it did not move)
	decision HealDecision
	who      string
	flaps    []string // n1's route to n3 leaving n2 with no decision yet, and when
	verdicts []string // the control plane's judgement of n2 while the phase ran
	// With the fault kept after the decision: n1's and n3's advisories about n2 lifted while the
	// fault lasted, and the time from the fault's end to neither advising n2 any more (-1: not
	// within advisoryHold + advisoryWatch).
	kept     time.Duration
	lifted   []string
	released time.Duration
}

func (r greyResult) String() string {
	v := strings.Join(r.verdicts, "; ")
	f := ""
	if len(r.flaps) > 0 {
		f = fmt.Sprintf("; route left n2 with no decision yet at %s", strings.Join(r.flaps, ", "))
	}
	if !r.found {
		return fmt.Sprintf("no decision about n2 within %s%s (control plane's judgements of n2: %s)", advisoryWatch, f, v)
	}
	k := ""
	if r.kept > 0 {
		k = fmt.Sprintf("; fault kept %s after the decision, advisory lifted during it: %d times %v; released %s after the fault ended (%s after the decision)",
			r.kept, len(r.lifted), r.lifted, r.released.Round(time.Millisecond), (r.kept + r.released).Round(time.Millisecond))
	}
	return fmt.Sprintf("MTTD %s: %s %s (%s p=%.4f: %s), n1's route off n2 %s later%s%s (control plane's judgements of n2: %s)",
		r.mttd.Round(time.Millisecond), r.who, r.decision.Action, r.decision.Class, r.decision.Confidence, r.decision.Rule,
		r.reroute.Round(time.Millisecond), f, k, v)
}

// greyPhase turns n2 into a grey hole, calls act (if any), and waits up to advisoryWatch for the
// first decision about n2 by n1 or n3 (a penalty or an applied advisory), then for n1's route to
// n3 to leave n2. With keep, it keeps the fault that long after the decision, notes any advisory
// about n2 that n1 or n3 lifted meanwhile, clears the fault, and waits until neither advises n2.
// Otherwise it clears the fault at once.
func (l *advisoryLab) greyPhase(what string, act func(), keep time.Duration) greyResult {
	l.tb.Helper()
	l.waitFor("n1 routes to n3 through n2", 60*time.Second, func() bool {
		r, ok := l.route("n1", "n3")
		return ok && r.NextHop == "n2"
	})
	l.waitNoDeficit()
	l.sh(l.tag+"n2", fmt.Sprintf(`nft -f - <<'EOF'
table inet x6grey {
	chain out {
		type filter hook output priority 0; policy accept;
		oifname { "e0", "e1" } udp length 200-600 numgen random mod 100 < %d drop
	}
}
EOF`, advisoryGreyPct))
	fault := time.Now()
	if act != nil {
		act()
	}
	res := greyResult{reroute: -1, released: -1}
	first := func() (HealDecision, string, bool) {
		var best HealDecision
		who := ""
		for _, n := range []string{"n1", "n3"} {
			for _, d := range l.heal(n).Decisions {
				if d.Peer == "n2" && d.Time.After(fault) && (d.Action == "penalise" || d.Action == "advise") &&
					(who == "" || d.Time.Before(best.Time)) {
					best, who = d, n
				}
			}
		}
		return best, who, who != ""
	}
	lastVerdict, offN2 := time.Time{}, false
	for time.Since(fault) < advisoryWatch && !res.found {
		l.checkAlive()
		if time.Since(lastVerdict) >= 3*time.Second {
			lastVerdict = time.Now()
			res.verdicts = append(res.verdicts, fmt.Sprintf("+%ds %s", int(time.Since(fault).Seconds()), l.verdict("n2")))
		}
		if r, ok := l.route("n1", "n3"); ok && (r.NextHop != "n2") != offN2 {
			offN2 = !offN2
			if offN2 {
				res.flaps = append(res.flaps, fmt.Sprintf("+%s (via %s, cost %d)", time.Since(fault).Round(time.Millisecond), r.NextHop, r.Cost))
			}
		}
		res.decision, res.who, res.found = first()
		time.Sleep(50 * time.Millisecond)
	}
	if res.found {
		res.mttd = res.decision.Time.Sub(fault)
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if r, ok := l.route("n1", "n3"); ok && r.NextHop != "n2" {
				res.reroute = max(0, time.Since(res.decision.Time))
				break
			}
		}
	}
	if res.found && keep > 0 {
		res.kept = keep
		for end := res.decision.Time.Add(keep); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
			l.checkAlive()
		}
		for _, n := range []string{"n1", "n3"} {
			for _, d := range l.heal(n).Decisions {
				if d.Peer == "n2" && d.Action == "unadvise" && d.Time.After(res.decision.Time) {
					res.lifted = append(res.lifted, fmt.Sprintf("%s at +%s: %s", n, d.Time.Sub(fault).Round(time.Millisecond), d.Rule))
				}
			}
		}
		l.sh(l.tag+"n2", "nft delete table inet x6grey")
		ended := time.Now()
		for time.Since(ended) < advisoryHold+advisoryWatch {
			l.checkAlive()
			if !l.advised("n1", "n2") && !l.advised("n3", "n2") {
				res.released = time.Since(ended)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for _, who := range l.names {
		for _, d := range l.heal(who).Decisions {
			if d.Time.After(fault) {
				l.tb.Logf("%s: %s at +%s: %s %s (%s p=%.4f) %s %v", what, who, d.Time.Sub(fault).Round(time.Millisecond), d.Action, d.Peer,
					d.Class, d.Confidence, d.Rule, d.Evidence)
			}
		}
	}
	l.tb.Logf("%s: %s", what, res)
	if res.kept == 0 {
		l.sh(l.tag+"n2", "nft delete table inet x6grey")
	}
	return res
}

// advised reports whether who applies an advisory to its link to peer now, by its journal: its
// last advise or unadvise entry about peer.
func (l *advisoryLab) advised(who, peer string) bool {
	on := false
	for _, d := range l.heal(who).Decisions {
		if d.Peer == peer && (d.Action == "advise" || d.Action == "unadvise") {
			on = d.Action == "advise"
		}
	}
	return on
}

// logAdvisor logs what the control plane's advisor decided (its naming and withdrawal lines).
func (l *advisoryLab) logAdvisor() {
	if l.control == nil {
		return
	}
	data, err := os.ReadFile(l.control.log)
	if err != nil {
		l.tb.Logf("control plane log: %v", err)
		return
	}
	var lines []string
	for line := range strings.Lines(string(data)) {
		if strings.Contains(line, "cost advisor") {
			lines = append(lines, strings.TrimSpace(line))
		}
	}
	l.tb.Logf("the control plane's advisor:\n%s", strings.Join(lines, "\n"))
}

// settle waits until n2 is no longer avoided by n1 or n3 and n1 routes to n3 through it again.
func (l *advisoryLab) settle() {
	l.tb.Helper()
	l.waitFor("n2 no longer avoided", 3*time.Minute, func() bool {
		for _, who := range []string{"n1", "n3"} {
			for _, p := range l.heal(who).Peers {
				if p.Name == "n2" && (p.Penalised || p.Advised > 0) {
					return false
				}
			}
		}
		r, ok := l.route("n1", "n3")
		return ok && r.NextHop == "n2"
	})
}

// falseActions lists decisions by nodes other than n2 against nodes other than n2. (n2's own
// probes cross its own fault, so what it decides about its neighbours is not judged here.)
func (l *advisoryLab) falseActions() []string {
	var out []string
	for _, who := range l.names {
		if who == "n2" {
			continue
		}
		for _, d := range l.heal(who).Decisions {
			if d.Peer != "n2" {
				out = append(out, fmt.Sprintf("%s %s %s (%s)", who, d.Action, d.Peer, d.Rule))
			}
		}
	}
	return out
}

// judgement is what the control plane's detector says about a node (ctl predict --json).
type judgement struct {
	Score         float64            `json:"score"`
	Threshold     float64            `json:"threshold"`
	Class         string             `json:"class"`
	Probabilities map[string]float64 `json:"probabilities"`
	Inputs        map[string]float64 `json:"inputs"`
}

// judge asks the control plane about node name.
func (l *advisoryLab) judge(name string) (judgement, error) {
	var p judgement
	out, err := l.cliErr("ctl", l.env, "ctl", "predict", "--json", name)
	if err != nil {
		return p, fmt.Errorf("predict failed: %s", strings.TrimSpace(out))
	}
	if i := strings.IndexByte(out, '{'); i >= 0 {
		out = out[i:]
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		return p, fmt.Errorf("unreadable: %w", err)
	}
	return p, nil
}

// verdict is the control plane's detector's judgement of node name, in a few words.
func (l *advisoryLab) verdict(name string) string {
	p, err := l.judge(name)
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("score %.4f/%.3f %s (greyhole %.4f; deficit %.3f, deficit_w %.3f, nbr_loss_mean %.3f)", p.Score, p.Threshold, p.Class,
		p.Probabilities["greyhole"], p.Inputs["deficit"], p.Inputs["deficit_w"], p.Inputs["nbr_loss_mean"])
}

// waitNoDeficit waits until the control plane's view of n2 holds no trace of an earlier fault:
// its interval and windowed deficits both under 0.03, from the reports that followed the fault's
// removal. Without it a phase could start on the last phase's window and its MTTD would be short.
func (l *advisoryLab) waitNoDeficit() {
	l.tb.Helper()
	l.waitFor("no deficit at n2 in the control plane's view", 60*time.Second, func() bool {
		p, err := l.judge("n2")
		return err == nil && p.Inputs != nil && math.Abs(p.Inputs["deficit"]) < 0.03 && math.Abs(p.Inputs["deficit_w"]) < 0.03
	})
}
