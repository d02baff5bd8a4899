package main

// The probing state machine, the gRPC twin of bench/agent/prober.py. Each armed target
// has its own xDS channel and is probed with grpc.health.v1.Health/Check at the idle
// interval, or at the fine interval while it is focused. RPCs overlap (one goroutine
// each, not wait-for-ready, a deadline of timeout_ms), so a stalled one does not stall
// the schedule. The state kept is the prober's: per (target, peer IP) the first and last
// answer and a count, and runs of consecutive failures, each end with the gap to the
// RPC before (after) it on the same target: their real resolution. take() drains it.

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"
)

const (
	maxInflight = 1024   // RPCs in flight over all targets; beyond it, due RPCs wait
	maxEvents   = 100000 // undrained events kept; beyond it they are counted, not kept
)

// --- events (lbwatch.go and edslog.go record them) -----------------------------------

type event struct {
	Ev        string
	HostPort  string // the channel's dial target `host:port`; record maps it to the name
	TNs       int64
	Addr      string
	Addrs     []string
	Unhealthy []string
	Cluster   string
}

func (e event) report(target string) map[string]any {
	r := map[string]any{"ev": e.Ev, "target": target, "t_ns": e.TNs}
	if e.Ev == "eds" {
		r["addrs"] = e.Addrs
		r["unhealthy"] = e.Unhealthy
		r["cluster"] = e.Cluster
	} else {
		r["addr"] = e.Addr
	}
	return r
}

var evlog = struct {
	sync.Mutex
	names   map[string]string // host:port → target name, armed targets only
	events  []map[string]any
	dropped int
}{names: map[string]string{}}

// record keeps an event of an armed target; events of other channels are dropped.
func record(e event) {
	evlog.Lock()
	defer evlog.Unlock()
	name, ok := evlog.names[e.HostPort]
	if !ok {
		return
	}
	if len(evlog.events) >= maxEvents {
		evlog.dropped++
		return
	}
	evlog.events = append(evlog.events, e.report(name))
}

func drainEvents() ([]map[string]any, int) {
	evlog.Lock()
	defer evlog.Unlock()
	evs, dropped := evlog.events, evlog.dropped
	evlog.events, evlog.dropped = nil, 0
	if evs == nil {
		evs = []map[string]any{}
	}
	return evs, dropped
}

// --- targets and their channels --------------------------------------------------------

type targetSpec struct {
	Name string `json:"name"`
	Host string `json:"host"`
	Port int    `json:"port"`
}

func (s targetSpec) hostPort() string { return fmt.Sprintf("%s:%d", s.Host, s.Port) }

// bootstrap is the target's own xDS bootstrap: a node id per (node, Service), so that
// istiod's per-push log lines name the Service (plan §1).
func bootstrap(o options, s targetSpec) ([]byte, error) {
	return json.Marshal(map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri":      o.xds,
			"channel_creds":   []any{map[string]any{"type": "insecure"}},
			"server_features": []string{"xds_v3"},
		}},
		"node": map[string]any{
			"id": fmt.Sprintf("sidecar~%s~hbmesh-%s-%s.%s~%s.svc.cluster.local",
				o.nodeIP, o.node, s.Name, o.namespace, o.namespace),
			"metadata": map[string]any{
				"GENERATOR":    "grpc",
				"NAMESPACE":    o.namespace,
				"CLUSTER_ID":   "Kubernetes",
				"INSTANCE_IPS": o.nodeIP,
				"NODE_NAME":    o.node,
			},
		},
	})
}

type target struct {
	spec                  targetSpec
	cc                    *grpc.ClientConn
	client                healthpb.HealthClient
	closed                bool
	nextAt                time.Time
	focusFrom, focusUntil time.Time
	last                  *rpc
}

func dial(o options, s targetSpec) (*target, error) {
	cfg, err := bootstrap(o, s)
	if err != nil {
		return nil, err
	}
	rb, err := xds.NewXDSResolverWithConfigForTesting(cfg)
	if err != nil {
		return nil, fmt.Errorf("target '%s': xds resolver: %v", s.Name, err)
	}
	cc, err := grpc.NewClient("xds:///"+s.hostPort(),
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(rb))
	if err != nil {
		return nil, fmt.Errorf("target '%s': %v", s.Name, err)
	}
	cc.Connect() // resolve (xDS) now, not at the first RPC
	return &target{spec: s, cc: cc, client: healthpb.NewHealthClient(cc)}, nil
}

// --- state ------------------------------------------------------------------------------

// rpc is one Check. prevNs/nextNs: send times of its neighbours on the same target (0
// while unknown).
type rpc struct {
	t                   *target
	tNs, prevNs, nextNs int64
}

func (r *rpc) gapBefore() int64 {
	if r.prevNs == 0 {
		return 0
	}
	return r.tNs - r.prevNs
}

func gapAfter(r *rpc) int64 {
	if r == nil || r.nextNs == 0 {
		return 0
	}
	return r.nextNs - r.tNs
}

type podSeen struct {
	firstNs, lastNs, count, firstGap int64
	last                             *rpc // the last answer's RPC, for the gap after it
}

type failRun struct {
	firstNs, lastNs, count, firstGap int64
	reasons                          map[string]int
	last                             *rpc
}

func (f *failRun) report() map[string]any {
	return map[string]any{"first_ns": f.firstNs, "last_ns": f.lastNs, "count": f.count,
		"reasons": f.reasons, "first_gap_ns": f.firstGap, "last_gap_ns": gapAfter(f.last)}
}

type podKey struct{ target, ip string }

type prober struct {
	o    options
	mu   sync.Mutex
	wake chan struct{}

	targets map[string]*target
	order   []*target // armed, in arm order

	interval, idle, timeout time.Duration
	budgetRequests          int64
	budgetUntil             time.Time
	inflight                int

	pods     map[string]map[string]*podSeen
	dirty    map[podKey]bool // changed since the last take
	gapOpen  map[podKey]bool // last answer's next RPC not known at the last take
	failRuns map[string][]*failRun
	openFail map[string]*failRun
	requests int64

	focusedS   float64
	lastPass   time.Time
	wasFocused bool
}

func newProber(o options) *prober {
	return &prober{o: o, wake: make(chan struct{}, 1), targets: map[string]*target{},
		interval: 5 * time.Millisecond, idle: 100 * time.Millisecond, timeout: time.Second,
		pods: map[string]map[string]*podSeen{}, dirty: map[podKey]bool{},
		gapOpen: map[podKey]bool{}, failRuns: map[string][]*failRun{},
		openFail: map[string]*failRun{}}
}

func (p *prober) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func ms(v, dflt float64) time.Duration {
	if v <= 0 {
		v = dflt
	}
	return time.Duration(v * float64(time.Millisecond))
}

// arm probes exactly `c.Targets` from now on (idle until focused), within a fresh budget.
// A target armed already with the same name, host and port keeps its channel.
func (p *prober) arm(c command) ([]string, error) {
	seenName, seenHP := map[string]bool{}, map[string]bool{}
	for _, s := range c.Targets {
		switch {
		case s.Name == "" || s.Host == "":
			return nil, fmt.Errorf("a target needs a name and a host")
		case s.Port <= 0 || s.Port > 65535:
			return nil, fmt.Errorf("target '%s': port %d out of range", s.Name, s.Port)
		case seenName[s.Name]:
			return nil, fmt.Errorf("target '%s' is listed twice", s.Name)
		case seenHP[s.hostPort()]:
			return nil, fmt.Errorf("target '%s': %s is listed twice", s.Name, s.hostPort())
		}
		seenName[s.Name], seenHP[s.hostPort()] = true, true
	}
	maxReq := c.MaxRequests
	if maxReq <= 0 {
		maxReq = 200000
	}
	maxSec := c.MaxSeconds
	if maxSec <= 0 {
		maxSec = 600
	}

	p.mu.Lock()
	keep := map[string]*target{}
	for _, s := range c.Targets {
		if t, ok := p.targets[s.Name]; ok && t.spec == s {
			keep[s.Name] = t
		}
	}
	p.mu.Unlock()
	evlog.Lock() // before the dial: a new channel's first events must find their name
	for _, s := range c.Targets {
		evlog.names[s.hostPort()] = s.Name
	}
	evlog.Unlock()

	order := make([]*target, 0, len(c.Targets))
	names := make([]string, 0, len(c.Targets))
	for _, s := range c.Targets {
		t := keep[s.Name]
		if t == nil {
			var err error
			if t, err = dial(p.o, s); err != nil {
				for _, made := range order {
					if keep[made.spec.Name] == nil {
						_ = made.cc.Close()
					}
				}
				return nil, err
			}
		}
		order = append(order, t)
		names = append(names, s.Name)
	}

	p.mu.Lock()
	var closing []*target
	for name, t := range p.targets {
		if keep[name] != t {
			t.closed = true
			closing = append(closing, t)
		}
	}
	p.targets = map[string]*target{}
	for _, t := range order {
		p.targets[t.spec.Name] = t
		if p.pods[t.spec.Name] == nil {
			p.pods[t.spec.Name] = map[string]*podSeen{}
		}
	}
	p.order = order
	p.interval = ms(c.IntervalMs, 5)
	p.idle = ms(c.IdleIntervalMs, 100)
	p.timeout = ms(c.TimeoutMs, 1000)
	p.budgetRequests = maxReq
	p.budgetUntil = time.Now().Add(time.Duration(maxSec * float64(time.Second)))
	p.mu.Unlock()
	evlog.Lock()
	for _, t := range closing {
		if evlog.names[t.spec.hostPort()] == t.spec.Name && !seenHP[t.spec.hostPort()] {
			delete(evlog.names, t.spec.hostPort())
		}
	}
	evlog.Unlock()
	for _, t := range closing {
		_ = t.cc.Close()
	}
	p.poke()
	return names, nil
}

// focus probes `name` at the fine interval for `seconds` from now+delay_s (0 seconds:
// end its focus). It returns the focus start, wall clock, in ns.
func (p *prober) focus(name string, seconds, delay float64) (int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.targets[name]
	if !ok {
		return 0, fmt.Errorf("target '%s' is not armed", name)
	}
	now := time.Now()
	start := now.Add(time.Duration(math.Max(0, delay) * float64(time.Second)))
	if seconds <= 0 {
		t.focusFrom, t.focusUntil = time.Time{}, time.Time{}
		return now.UnixNano(), nil
	}
	t.focusFrom = start
	t.focusUntil = start.Add(time.Duration(seconds * float64(time.Second)))
	if start.Before(t.nextAt) {
		t.nextAt = start
	}
	p.poke()
	return start.UnixNano(), nil
}

// forget starts a peer's record afresh: its next answer is a new first answer.
func (p *prober) forget(name, ip string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.targets[name]; !ok {
		return fmt.Errorf("target '%s' is not armed", name)
	}
	delete(p.pods[name], ip)
	k := podKey{name, ip}
	delete(p.dirty, k)
	delete(p.gapOpen, k)
	return nil
}

// disarm stops all RPCs and closes the channels; the records stay for take.
func (p *prober) disarm() {
	p.mu.Lock()
	closing := p.order
	for _, t := range closing {
		t.closed = true
	}
	p.targets, p.order = map[string]*target{}, nil
	p.budgetRequests = 0
	p.mu.Unlock()
	evlog.Lock()
	for _, t := range closing {
		delete(evlog.names, t.spec.hostPort())
	}
	evlog.Unlock()
	for _, t := range closing {
		_ = t.cc.Close()
	}
}

func (p *prober) take() reply {
	p.mu.Lock()
	pods := map[string]map[string]any{}
	stillOpen := map[podKey]bool{}
	keys := make([]podKey, 0, len(p.dirty)+len(p.gapOpen))
	for k := range p.dirty {
		keys = append(keys, k)
	}
	for k := range p.gapOpen {
		if !p.dirty[k] {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		s := p.pods[k.target][k.ip]
		if s == nil {
			continue
		}
		gap := gapAfter(s.last)
		if gap == 0 {
			stillOpen[k] = true
		}
		if pods[k.target] == nil {
			pods[k.target] = map[string]any{}
		}
		pods[k.target][k.ip] = map[string]any{"first_ns": s.firstNs, "last_ns": s.lastNs,
			"count": s.count, "first_gap_ns": s.firstGap, "last_gap_ns": gap}
	}
	p.dirty, p.gapOpen = map[podKey]bool{}, stillOpen
	runs := map[string]any{}
	for name, rs := range p.failRuns {
		if len(rs) == 0 {
			continue
		}
		out := make([]any, len(rs))
		for i, r := range rs {
			out[i] = r.report()
		}
		runs[name] = out
		p.failRuns[name] = nil
	}
	open := map[string]any{}
	for name, r := range p.openFail {
		if r != nil {
			open[name] = r.report()
		}
	}
	requests, focused := p.requests, math.Round(p.focusedS*1000)/1000
	p.mu.Unlock()
	events, dropped := drainEvents()
	sort.SliceStable(events, func(i, j int) bool {
		return events[i]["t_ns"].(int64) < events[j]["t_ns"].(int64)
	})
	return reply{"pods": pods, "fail_runs": runs, "open_fail": open, "events": events,
		"events_dropped": dropped, "requests": requests, "focused_s": focused}
}

// --- recording (under p.mu) -----------------------------------------------------------

func (p *prober) answer(r *rpc, ip string) {
	name := r.t.spec.Name
	seen := p.pods[name]
	if seen == nil {
		seen = map[string]*podSeen{}
		p.pods[name] = seen
	}
	if s := seen[ip]; s == nil {
		seen[ip] = &podSeen{firstNs: r.tNs, lastNs: r.tNs, count: 1, firstGap: r.gapBefore(),
			last: r}
	} else {
		if r.tNs < s.firstNs { // overlapping RPCs can answer out of order
			s.firstNs, s.firstGap = r.tNs, r.gapBefore()
		}
		if r.tNs >= s.lastNs {
			s.lastNs, s.last = r.tNs, r
		}
		s.count++
	}
	p.dirty[podKey{name, ip}] = true
	if run := p.openFail[name]; run != nil {
		p.failRuns[name] = append(p.failRuns[name], run)
		p.openFail[name] = nil
	}
}

func (p *prober) failure(r *rpc, reason string) {
	name := r.t.spec.Name
	run := p.openFail[name]
	if run == nil {
		run = &failRun{firstNs: r.tNs, lastNs: r.tNs, firstGap: r.gapBefore(), last: r,
			reasons: map[string]int{}}
		p.openFail[name] = run
	}
	if r.tNs < run.firstNs {
		run.firstNs, run.firstGap = r.tNs, r.gapBefore()
	}
	if r.tNs >= run.lastNs {
		run.lastNs, run.last = r.tNs, r
	}
	run.count++
	run.reasons[reason]++
}

// --- the loop -----------------------------------------------------------------------------

// send is one RPC, in its own goroutine. Its send time is stamped just before the call.
func (p *prober) send(t *target, timeout time.Duration) {
	p.mu.Lock()
	if t.closed {
		p.inflight--
		p.mu.Unlock()
		return
	}
	r := &rpc{t: t, tNs: time.Now().UnixNano()}
	if t.last != nil {
		r.prevNs = t.last.tNs
		t.last.nextNs = r.tNs
	}
	t.last = r
	p.requests++
	p.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	var pr peer.Peer
	_, err := t.client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&pr))
	cancel()

	p.mu.Lock()
	defer p.mu.Unlock()
	p.inflight--
	if t.closed { // disarmed or re-armed under it: the channel closed, not the peer failed
		return
	}
	switch {
	case err != nil:
		p.failure(r, status.Code(err).String())
	case pr.Addr == nil:
		p.failure(r, "NoPeer")
	default:
		p.answer(r, ipOf(pr.Addr.String()))
	}
}

// loop starts the RPCs that are due and sleeps until the next one is (or a command
// changes the schedule).
func (p *prober) loop() {
	timer := time.NewTimer(time.Hour)
	for {
		p.mu.Lock()
		now := time.Now()
		if p.wasFocused {
			p.focusedS += now.Sub(p.lastPass).Seconds()
		}
		focused := false
		wait := 500 * time.Millisecond
		if len(p.order) > 0 && p.budgetRequests > 0 && now.Before(p.budgetUntil) {
			for _, t := range p.order {
				fine := !now.Before(t.focusFrom) && now.Before(t.focusUntil)
				focused = focused || fine
				if !now.Before(t.nextAt) && p.inflight < maxInflight && p.budgetRequests > 0 {
					p.inflight++
					p.budgetRequests--
					go p.send(t, p.timeout)
					step := p.idle
					if fine {
						step = p.interval
					}
					next := t.nextAt.Add(step)
					if next.Before(now) { // fell behind: no burst to catch up
						next = now.Add(step)
					}
					if now.Before(t.focusFrom) && t.focusFrom.Before(next) {
						next = t.focusFrom
					}
					t.nextAt = next
				}
				if d := t.nextAt.Sub(now); d < wait {
					wait = d
				}
			}
		}
		if wait < time.Millisecond && p.inflight >= maxInflight {
			wait = time.Millisecond // full: look again soon
		}
		p.lastPass, p.wasFocused = now, focused
		p.mu.Unlock()
		timer.Reset(max(wait, 0)) // go >= 1.23 timers: no drain needed
		select {
		case <-timer.C:
		case <-p.wake:
			timer.Stop()
		}
	}
}
