package main

// The load-balancer stamps. For an Istio ROUND_ROBIN cluster grpc-go's policy tree ends in
// round_robin (cds → priority → outlier_detection → cluster_impl → wrr_locality →
// weighted_target → round_robin → endpointsharding → pick_first). This file registers a
// wrapper under the name "round_robin" (balancer.Register: the last registration of a
// name wins; main's init runs after grpc's) that passes everything to the real policy
// and stamps:
//
//   - lb_add / lb_remove: an endpoint address appears in / disappears from the resolver
//     state round_robin is given (the EDS update after the xDS tree processed it);
//   - subconn_ready / subconn_shutdown: a SubConn for that address turns READY / is shut
//     down (StateListener);
//   - picker_ready: the first READY state round_robin publishes after an address's
//     SubConn became READY (the picker that can choose it; stamped once the parent
//     policies' UpdateState calls returned).
//
// Events carry the channel's dial target (`host:port`), which record maps to the armed
// target's name; addresses are reported without the port.

import (
	"net"
	"net/url"
	"sync"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/roundrobin"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/resolver"
)

func init() {
	balancer.Register(watchBuilder{real: balancer.Get(roundrobin.Name)})
}

type watchBuilder struct{ real balancer.Builder }

func (watchBuilder) Name() string { return roundrobin.Name }

func (b watchBuilder) Build(cc balancer.ClientConn, o balancer.BuildOptions) balancer.Balancer {
	hostPort := o.Target.Endpoint()
	if hostPort == "" {
		hostPort = targetEndpoint(cc.Target()) // deprecated; a fallback only
	}
	w := &watchCC{ClientConn: cc, hostPort: hostPort, known: map[string]bool{},
		pending: map[string]bool{}}
	return &watchLB{Balancer: b.real.Build(w, o), w: w}
}

// targetEndpoint is `host:port` of a dial target `xds:///host:port`.
func targetEndpoint(target string) string {
	if u, err := url.Parse(target); err == nil && len(u.Path) > 1 {
		return u.Path[1:]
	}
	return target
}

func ipOf(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

type watchLB struct {
	balancer.Balancer
	w *watchCC
}

func (l *watchLB) UpdateClientConnState(s balancer.ClientConnState) error {
	t := time.Now().UnixNano()
	now := map[string]bool{}
	for _, ep := range s.ResolverState.Endpoints {
		for _, a := range ep.Addresses {
			now[ipOf(a.Addr)] = true
		}
	}
	for _, a := range s.ResolverState.Addresses {
		now[ipOf(a.Addr)] = true
	}
	l.w.mu.Lock()
	for a := range now {
		if !l.w.known[a] {
			record(event{Ev: "lb_add", HostPort: l.w.hostPort, TNs: t, Addr: a})
		}
	}
	for a := range l.w.known {
		if !now[a] {
			record(event{Ev: "lb_remove", HostPort: l.w.hostPort, TNs: t, Addr: a})
		}
	}
	l.w.known = now
	l.w.mu.Unlock()
	return l.Balancer.UpdateClientConnState(s)
}

// watchCC sits between round_robin and its parent: it sees every SubConn round_robin's
// children create and every state round_robin publishes.
type watchCC struct {
	balancer.ClientConn
	hostPort string
	mu       sync.Mutex
	known    map[string]bool // IPs in the last resolver state
	pending  map[string]bool // IPs whose SubConn turned READY since the last READY picker
}

func (c *watchCC) NewSubConn(addrs []resolver.Address, o balancer.NewSubConnOptions) (balancer.SubConn, error) {
	addr := ""
	if len(addrs) > 0 {
		addr = ipOf(addrs[0].Addr)
	}
	inner := o.StateListener
	o.StateListener = func(s balancer.SubConnState) {
		t := time.Now().UnixNano()
		switch s.ConnectivityState {
		case connectivity.Ready:
			record(event{Ev: "subconn_ready", HostPort: c.hostPort, TNs: t, Addr: addr})
			c.mu.Lock()
			c.pending[addr] = true
			c.mu.Unlock()
		case connectivity.Shutdown:
			record(event{Ev: "subconn_shutdown", HostPort: c.hostPort, TNs: t, Addr: addr})
		}
		if inner != nil {
			inner(s)
		}
	}
	return c.ClientConn.NewSubConn(addrs, o) // the real SubConn: pickers keep its identity
}

func (c *watchCC) UpdateState(s balancer.State) {
	c.ClientConn.UpdateState(s)
	if s.ConnectivityState != connectivity.Ready {
		return
	}
	t := time.Now().UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	for a := range c.pending {
		record(event{Ev: "picker_ready", HostPort: c.hostPort, TNs: t, Addr: a})
	}
	clear(c.pending)
}
