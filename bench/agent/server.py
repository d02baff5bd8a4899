"""The agent process: HTTP control surface over the prober, rule watcher and sync poller.

    python -m bench.agent --node NAME [--listen 127.0.0.1:10299] [--token T]

Endpoints (JSON): GET /healthz, GET /clock (offset estimation: this clock and the kernel's
boot id, which tells the harness whether it shares this kernel), POST /arm
{targets:[{name,ip,port}], interval_ms, idle_interval_ms, max_requests, max_seconds},
POST /focus {target, seconds, after_sync} (probe that target at the fine interval for
up to `seconds`; 0 ends the focus; with after_sync the fine probing starts only when
kube-proxy may next change the rules: its last sync's end plus its --min-sync-period,
which kube-proxy's runner waits between the end of one sync and the start of the
next), POST /disarm,
POST /forget {target, pod} (a restarted pod's next answer counts as a first one),
GET /collect (state changes since the last collect, plus self-measured CPU: this
process and the rule dumps it runs),
GET /kube-proxy-metrics (raw text, for the SLI cross-check and kube-proxy's stats),
GET /connect (the prober's TCP connect times per target, log buckets, totals since the
agent started: bench/agent/connhist.py), GET /rules-summary?ns=NS (Services of NS the
rules route, and the rule count: bench.agent.summary). The agent stops by
itself after --max-lifetime seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.agent import summary
from bench.agent.kpmetrics import SyncPoller
from bench.agent.meshclient import MeshClient, MeshClientError
from bench.agent.prober import Prober, Target
from bench.agent.rules import GEN_POLL_S, RuleWatcher

try:  # one kernel, one boot id: the harness compares it with its own (shared clock)
    with open("/proc/sys/kernel/random/boot_id") as _f:
        BOOT_ID = _f.read().strip()
except OSError:
    BOOT_ID = ""
SYNC_MARGIN_S = 0.05  # focus this much before kube-proxy's earliest next sync


class Agent:
    def __init__(self, node: str, probe_interval_s: float, rules_poll_s: float,
                 metrics_port: int, idle_interval_s: float = 0.1,
                 mesh: MeshClient | None = None) -> None:
        self.node = node
        self.mesh = mesh  # the mesh's gRPC client, when the agent was given one
        self.lock = threading.Lock()
        self.rule_changes: list[dict[str, Any]] = []
        self.syncs: list[dict[str, Any]] = []
        self.rules = RuleWatcher(self._on_rule, poll_interval_s=rules_poll_s)
        # while a trial is watched closely (a focus on, or waiting to begin: rule changes
        # then need their fine stamp), the prober's passes ask the ruleset generation
        self.prober = Prober(interval_s=probe_interval_s, idle_interval_s=idle_interval_s,
                             tick=self.rules.check, tick_s=GEN_POLL_S)
        self.poller = SyncPoller(self._on_sync, port=metrics_port, fast=self.prober.focused)
        self.started_cpu = self.cpu_seconds()
        self.min_sync_s: float | None = None  # kube-proxy's, from its /configz
        self.early_rule_changes = 0  # rules changed while a focus waited for the next sync
        self.started_wall = time.monotonic()

    def start(self) -> None:
        self.rules.start()
        self.poller.start()

    def _on_rule(self, t_ns: int, key: str, ip: str, present: bool) -> None:
        with self.lock:
            self.rule_changes.append({"t_ns": t_ns, "service": key, "ip": ip,
                                      "present": present})
        self.poller.wake(0.04)  # the sync that made this change is stamped just after it
        if self.prober.waiting():  # the after_sync prediction was wrong: count it
            with self.lock:
                self.early_rule_changes += 1

    def _on_sync(self, t_ns: int, seen_ns: int, syncs: int) -> None:
        with self.lock:
            self.syncs.append({"t_ns": t_ns, "seen_ns": seen_ns, "syncs": syncs})

    def arm(self, body: dict[str, Any]) -> dict[str, Any]:
        targets = [Target(t["name"], t["ip"], int(t["port"]), t.get("path", "/hostname"))
                   for t in body.get("targets", [])]
        if "interval_ms" in body:
            self.prober.interval_s = float(body["interval_ms"]) / 1000
        if "idle_interval_ms" in body:
            self.prober.idle_interval_s = float(body["idle_interval_ms"]) / 1000
        self.prober.arm(targets, int(body.get("max_requests", 200_000)),
                        float(body.get("max_seconds", 600)))
        # rule dumps from now on list only these Services' chains (whole table meanwhile)
        chains = self.rules.watch([(t.ip, t.port) for t in targets])
        self.min_sync_s = self.poller.min_sync_period()  # per arming: kube-proxy restarts
        self.poller.active.set()
        mesh = [{"name": t["name"], **t["mesh"]} for t in body.get("targets", [])
                if t.get("mesh")]
        armed_mesh: list[str] = []
        if mesh:
            if self.mesh is None:
                raise MeshClientError("targets name a mesh, but this agent was started "
                                      "without --mesh-client")
            armed_mesh = self.mesh.arm(
                str(body.get("mesh_namespace") or "default"), mesh,
                self.prober.interval_s * 1e3, self.prober.idle_interval_s * 1e3,
                int(body.get("max_requests", 200_000)), float(body.get("max_seconds", 600)))
        return {"armed": [t.name for t in targets], "rule_chains": chains,
                "mesh_armed": armed_mesh}

    def focus(self, body: dict[str, Any]) -> dict[str, Any]:
        seconds = float(body.get("seconds", 0))
        target = str(body["target"])
        delay = 0.0
        if seconds <= 0:
            self.prober.unfocus(target)
            if self.mesh is not None:
                self.mesh.focus(target, 0)
        else:
            if body.get("after_sync") and self.min_sync_s and self.poller.last_sync():
                # an older view of the last sync only makes the focus start earlier
                earliest = self.poller.last_sync() + self.min_sync_s - SYNC_MARGIN_S
                delay = max(0.0, earliest - time.time())
            self.prober.focus(target, min(seconds, 600.0), delay_s=delay)
            if self.mesh is not None:  # xDS does not wait for kube-proxy's next sync
                self.mesh.focus(target, min(seconds, 600.0))
            self.rules.hurry()  # rule changes matter from now: ask at the fast rate
            self.poller.wake(delay)  # syncs matter from then: poll at the fast rate
        return {"target": target, "t_ns": time.time_ns(), "delay_s": round(delay, 4),
                "focused": seconds > 0}

    def cpu_seconds(self) -> float:
        """User + system CPU of this process and of the children it ran: finished rule
        dumps (reaped, so in the children times); the change trigger is a netlink socket
        read by this process, no child."""
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def disarm(self) -> dict[str, Any]:
        self.prober.disarm()
        if self.mesh is not None:
            self.mesh.disarm()
        self.rules.watch([])
        self.poller.active.clear()
        return {"armed": []}

    def collect(self) -> dict[str, Any]:
        with self.lock:
            rules, self.rule_changes = self.rule_changes, []
            syncs, self.syncs = self.syncs, []
        return {
            "node": self.node, "t_ns": time.time_ns(),
            "rule_changes": rules, "syncs": syncs, "probe": self.prober.take(),
            "cpu_s": self.cpu_seconds() - self.started_cpu,
            "wall_s": time.monotonic() - self.started_wall,
            "rule_mode": self.rules.mode, "rule_method": self.rules.method,
            "rule_resolution_ns": self.rules.resolution_ns,
            "probe_interval_ns": int(self.prober.interval_s * 1e9),
            "probe_idle_interval_ns": int(self.prober.idle_interval_s * 1e9),
            "kube_proxy_min_sync_s": self.min_sync_s,
            "early_rule_changes": self.early_rule_changes,
            "sync_poll_interval_ns": int(self.poller.interval_s * 1e9),
            "routes": {k: sorted(v) for k, v in self.rules.routes().items()},
            "rule_dumps": dict(self.rules.dumps),
            **({"mesh": m} if self.mesh is not None and (m := self.mesh.take()) else {}),
        }


Reply = tuple[int, Any, str]  # status, payload (JSON-able or text), content type
JSON = "application/json"


def _metrics(agent: Agent) -> Reply:
    try:
        return 200, agent.poller.raw(), "text/plain"
    except OSError as exc:
        return 502, {"error": str(exc)}, JSON


def _focus(agent: Agent, body: dict[str, Any]) -> Reply:
    try:
        return 200, agent.focus(body), JSON
    except KeyError:
        return 404, {"error": f"target {body.get('target')!r} is not armed"}, JSON


def _arm(agent: Agent, body: dict[str, Any]) -> Reply:
    try:
        return 200, agent.arm(body), JSON
    except MeshClientError as exc:
        return 502, {"error": f"mesh client: {exc}"}, JSON


def _forget(agent: Agent, body: dict[str, Any]) -> Reply:
    agent.prober.forget_pod(str(body["target"]), str(body["pod"]))
    if agent.mesh is not None and body.get("ip"):  # the mesh client knows pods by IP
        agent.mesh.forget(str(body["target"]), str(body["ip"]))
    return 200, {"forgot": body["pod"]}, JSON


def routes(agent: Agent) -> tuple[dict[str, Callable[[], Reply]],
                                   dict[str, Callable[[], Reply]],
                                   dict[str, Callable[[dict[str, Any]], Reply]]]:
    """The control surface: open GETs (health, clock), GETs and POSTs behind the token."""
    open_get: dict[str, Callable[[], Reply]] = {
        "/healthz": lambda: (200, {"ok": True, "node": agent.node}, JSON),
        "/clock": lambda: (200, {"t_ns": time.time_ns(), "boot_id": BOOT_ID}, JSON),
    }
    get: dict[str, Callable[[], Reply]] = {
        "/collect": lambda: (200, agent.collect(), JSON),
        "/kube-proxy-metrics": lambda: _metrics(agent),
        "/connect": lambda: (200, agent.prober.connect.snapshot(), JSON),
    }
    post: dict[str, Callable[[dict[str, Any]], Reply]] = {
        "/arm": lambda body: _arm(agent, body),
        "/focus": lambda body: _focus(agent, body),
        "/disarm": lambda body: (200, agent.disarm(), JSON),
        "/forget": lambda body: _forget(agent, body),
    }
    return open_get, get, post


def _rules_summary(agent: Agent, query: str) -> Reply:
    ns = urllib.parse.parse_qs(query).get("ns", [""])[0]
    if not ns:
        return 400, {"error": "rules-summary needs ?ns=NAMESPACE"}, JSON
    return 200, summary.summary(summary.current_mode(agent.rules.mode), ns), JSON


NOT_FOUND: Reply = (404, {"error": "no such endpoint"}, JSON)


def make_handler(agent: Agent, token: str) -> type[BaseHTTPRequestHandler]:
    open_get, get, post = routes(agent)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            pass

        def _reply(self, reply: Reply) -> None:
            code, payload, ctype = reply
            data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            if token and self.headers.get("X-Hopbench-Token") != token:
                self._reply((403, {"error": "bad token"}, JSON))
                return False
            return True

        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            if path == "/rules-summary":
                if self._authorized():
                    self._reply(_rules_summary(agent, query))
            elif self.path in open_get:
                self._reply(open_get[self.path]())
            elif self._authorized():
                self._reply(get[self.path]() if self.path in get else NOT_FOUND)

        def do_POST(self) -> None:
            if not self._authorized():
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            self._reply(post[self.path](body) if self.path in post else NOT_FOUND)

    return Handler


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="hopbench-agent")
    ap.add_argument("--node", default=os.environ.get("NODE_NAME", os.uname().nodename))
    ap.add_argument("--listen", default="127.0.0.1:10299")
    ap.add_argument("--token", default=os.environ.get("HOPBENCH_TOKEN", ""))
    ap.add_argument("--probe-interval-ms", type=float, default=5.0)
    ap.add_argument("--idle-interval-ms", type=float, default=100.0,
                    help="probe interval of a target that is not focused")
    ap.add_argument("--rules-poll-ms", type=float, default=20.0)
    ap.add_argument("--metrics-port", type=int, default=10249)
    ap.add_argument("--max-lifetime", type=float, default=6 * 3600,
                    help="exit after this many seconds, whatever happens")
    ap.add_argument("--mesh-client", default="",
                    help="the mesh's gRPC client binary (meshclient/), run on demand")
    ap.add_argument("--mesh-xds", default="", help="HOST:PORT of the mesh's xDS server")
    ap.add_argument("--node-ip", default=os.environ.get("NODE_IP", ""),
                    help="this node's address, for the mesh client's node id")
    args = ap.parse_args(argv)
    sys.setswitchinterval(0.0005)  # the rule watcher's thread gets the GIL back quickly
    mesh = (MeshClient(args.mesh_client, args.mesh_xds, args.node, args.node_ip,
                       args.max_lifetime) if args.mesh_client else None)
    agent = Agent(args.node, args.probe_interval_ms / 1000, args.rules_poll_ms / 1000,
                  args.metrics_port, args.idle_interval_ms / 1000, mesh=mesh)
    agent.start()
    host, port = args.listen.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), make_handler(agent, args.token))
    server.daemon_threads = True
    timer = threading.Timer(args.max_lifetime, server.shutdown)
    timer.daemon = True
    timer.start()
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        agent.prober.stop()
        if agent.mesh is not None:
            agent.mesh.stop()
        agent.rules.stop()
        agent.poller.stop()


if __name__ == "__main__":
    main()
