package main

// The EDS arrival stamp. grpc-go has no public hook for "an EDS update arrived", but its
// xDS dependency manager logs each one at verbosity 2 (grpc v1.85.0,
// internal/xds/xdsdepmgr/xds_dependency_manager.go → onEndpointUpdate):
//
//	m.logger.Infof("Received update for Endpoint resource %q: %+v", resourceName, update)
//
// The quoted name is the cluster (`outbound|<port>||<host>` from istiod), and `%+v` of the
// EndpointsUpdate prints every endpoint's address through resolver.Address.String:
// `{ResolverEndpoint:{Addresses:[{Addr: "<ip>:<port>", ServerName: "", }] Attributes:{}}
// HealthStatus:1 Weight:1 ...}` (v1.85.0, as seen against istiod). A grpclog.LoggerV2 set
// before any gRPC call sees that line one serializer hop after the ADS response was
// decoded; it stamps it and drops every other info line. Warnings and errors pass on to
// stderr.

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/grpclog"
)

const edsMarker = "Received update for Endpoint resource "

var (
	edsRe    = regexp.MustCompile(`Received update for Endpoint resource "([^"]*)"`)
	addrRe   = regexp.MustCompile(`Addr: ?"?(\d+\.\d+\.\d+\.\d+:\d+)`)
	healthRe = regexp.MustCompile(`\} HealthStatus:(\d+) `)
)

// edsLog forwards warnings and errors to the wrapped logger, keeps verbosity 2 on (the
// level of the EDS line) and turns the EDS lines into "eds" events.
type edsLog struct {
	grpclog.LoggerV2
}

func newEDSLog(inner grpclog.LoggerV2) edsLog { return edsLog{inner} }

func (edsLog) V(l int) bool { return l <= 2 }

func (edsLog) hook(args []any) {
	t := time.Now().UnixNano()
	msg := fmt.Sprint(args...)
	if !strings.Contains(msg, edsMarker) {
		return
	}
	if ev, ok := parseEDS(msg, t); ok {
		record(ev)
	}
}

// parseEDS turns one dependency-manager line into an "eds" event (the target is filled
// in from the cluster name by record). `addrs` are the endpoints the client will use;
// those istiod marks UNHEALTHY, DRAINING or TIMEOUT (which grpc-go's cds balancer drops,
// internal/xds/balancer/cdsbalancer/configbuilder.go) are in `unhealthy`.
func parseEDS(msg string, t int64) (event, bool) {
	m := edsRe.FindStringSubmatch(msg)
	if m == nil {
		return event{}, false
	}
	addrs, unhealthy := []string{}, []string{}
	seen := map[string]bool{}
	for _, ep := range strings.Split(msg, "{ResolverEndpoint:")[1:] {
		usable := true
		if h := healthRe.FindStringSubmatch(ep); h != nil && h[1] != "0" && h[1] != "1" {
			usable = false // 0 UNKNOWN, 1 HEALTHY
		}
		for _, a := range addrRe.FindAllStringSubmatch(ep, -1) {
			if seen[a[1]] {
				continue
			}
			seen[a[1]] = true
			if usable {
				addrs = append(addrs, a[1])
			} else {
				unhealthy = append(unhealthy, a[1])
			}
		}
	}
	return event{Ev: "eds", HostPort: clusterHostPort(m[1]), TNs: t, Cluster: m[1],
		Addrs: addrs, Unhealthy: unhealthy}, true
}

// clusterHostPort maps istiod's cluster name `outbound|<port>|<subset>|<host>` to the
// dial target's `<host>:<port>`; any other name is returned as it is.
func clusterHostPort(cluster string) string {
	parts := strings.Split(cluster, "|")
	if len(parts) != 4 || parts[0] != "outbound" {
		return cluster
	}
	if _, err := strconv.Atoi(parts[1]); err != nil {
		return cluster
	}
	return parts[3] + ":" + parts[1]
}

func (l edsLog) Info(args ...any)                { l.hook(args) }
func (l edsLog) Infoln(args ...any)              { l.hook(args) }
func (l edsLog) Infof(f string, args ...any)     { l.hook([]any{fmt.Sprintf(f, args...)}) }
func (l edsLog) InfoDepth(_ int, args ...any)    { l.hook(args) }
func (l edsLog) WarningDepth(_ int, args ...any) { l.LoggerV2.Warningln(args...) }
func (l edsLog) ErrorDepth(_ int, args ...any)   { l.LoggerV2.Errorln(args...) }
func (l edsLog) FatalDepth(_ int, args ...any)   { l.LoggerV2.Fatalln(args...) }
