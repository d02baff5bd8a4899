// Command meshclient is hopbench's proxyless gRPC mesh client (docs/plans/mesh.md §1, §3).
//
// The node agent starts it inside a node's network namespace. It keeps one xDS-resolved
// gRPC channel per armed Service, each with its own bootstrap (its own node id, so
// istiod's per-push log names the Service), probes the Services with
// grpc.health.v1.Health/Check and stamps what the client itself sees: the EDS update
// arriving (edslog.go), round_robin gaining or losing an endpoint and the picker that
// can use it (lbwatch.go), and the first and last answer per peer (probe.go).
//
// Protocol: JSON lines. One command per stdin line, exactly one reply line per command
// on stdout; nothing else is written to stdout (logs go to stderr). The process exits
// on stdin EOF (status 0) or after --max-lifetime seconds (status 3).
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"time"

	"google.golang.org/grpc/grpclog"
)

// options are the command-line flags.
type options struct {
	node, nodeIP, xds, namespace string
	maxLifetime                  float64
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("meshclient", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.StringVar(&o.node, "node", "", "node name (node id and NODE_NAME metadata)")
	fs.StringVar(&o.nodeIP, "node-ip", "", "the node's IP (node id and INSTANCE_IPS)")
	fs.StringVar(&o.xds, "xds", "", "xDS server HOST:PORT (istiod's plaintext gRPC port)")
	fs.StringVar(&o.namespace, "namespace", "", "namespace of the probed Services")
	fs.Float64Var(&o.maxLifetime, "max-lifetime", 3600, "exit after this many seconds")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case o.node == "" || o.nodeIP == "" || o.xds == "" || o.namespace == "":
		return o, fmt.Errorf("--node, --node-ip, --xds and --namespace are required")
	case net.ParseIP(o.nodeIP) == nil:
		return o, fmt.Errorf("--node-ip %q is not an IP address", o.nodeIP)
	case o.maxLifetime <= 0:
		return o, fmt.Errorf("--max-lifetime must be positive")
	}
	if _, _, err := net.SplitHostPort(o.xds); err != nil {
		return o, fmt.Errorf("--xds %q: %v", o.xds, err)
	}
	return o, nil
}

// command is every field any command carries; each command reads its own.
type command struct {
	Cmd            string       `json:"cmd"`
	Targets        []targetSpec `json:"targets"`
	IntervalMs     float64      `json:"interval_ms"`
	IdleIntervalMs float64      `json:"idle_interval_ms"`
	TimeoutMs      float64      `json:"timeout_ms"`
	MaxRequests    int64        `json:"max_requests"`
	MaxSeconds     float64      `json:"max_seconds"`
	Target         string       `json:"target"`
	Seconds        float64      `json:"seconds"`
	DelayS         float64      `json:"delay_s"`
	Addr           string       `json:"addr"`
}

type reply map[string]any

func fail(format string, args ...any) reply {
	return reply{"ok": false, "error": fmt.Sprintf(format, args...)}
}

// handle runs one command line and returns its reply.
func handle(p *prober, line []byte) reply {
	var c command
	if err := json.Unmarshal(line, &c); err != nil {
		return fail("bad command: %v", err)
	}
	switch c.Cmd {
	case "arm":
		armed, err := p.arm(c)
		if err != nil {
			return fail("%v", err)
		}
		return reply{"ok": true, "armed": armed}
	case "focus":
		t, err := p.focus(c.Target, c.Seconds, c.DelayS)
		if err != nil {
			return fail("%v", err)
		}
		return reply{"ok": true, "t_ns": t}
	case "forget":
		if err := p.forget(c.Target, c.Addr); err != nil {
			return fail("%v", err)
		}
		return reply{"ok": true}
	case "disarm":
		p.disarm()
		return reply{"ok": true}
	case "take":
		r := p.take()
		r["ok"] = true
		return r
	case "":
		return fail("no cmd")
	default:
		return fail("unknown cmd '%s'", c.Cmd)
	}
}

func main() {
	log.SetOutput(os.Stderr)
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	// before anything touches gRPC: the EDS stamps come from its V(2) log line
	grpclog.SetLoggerV2(newEDSLog(grpclog.NewLoggerV2(io.Discard, os.Stderr, os.Stderr)))

	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "meshclient:", err)
		os.Exit(2)
	}
	time.AfterFunc(time.Duration(o.maxLifetime*float64(time.Second)), func() {
		log.Printf("meshclient: max lifetime %.0fs reached, exiting", o.maxLifetime)
		os.Exit(3)
	})
	p := newProber(o)
	go p.loop()

	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64*1024), 16*1024*1024)
	out := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(out) // one line per Encode
	for in.Scan() {
		line := in.Bytes()
		if len(line) == 0 {
			continue
		}
		if err := enc.Encode(handle(p, line)); err != nil {
			log.Printf("meshclient: stdout: %v", err)
			os.Exit(1)
		}
		if err := out.Flush(); err != nil {
			log.Printf("meshclient: stdout: %v", err)
			os.Exit(1)
		}
	}
	if err := in.Err(); err != nil {
		log.Printf("meshclient: stdin: %v", err)
	}
	p.disarm()
}
