"""The kind provider's cluster lifecycle: create, delete, and switch kube-proxy's mode.

Users with Docker measure on kind (docs/design.md §5). This module drives the user's own
`kind` and Docker; the configs come from bench.build.kindconfig (the committed kind-configs/
file when one fits, otherwise rendered into the cache). Everything that can be refused
(unknown mode, bad name or node count, kind or a Docker engine missing, a name already
taken) is refused with one line before kind runs, and a failed `up` deletes what kind
made, so nothing is left half-created.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from bench import prom
from bench.build.kindconfig import CONFIG_DIR, KindConfig, filename, load_kind_pins, render, write
from bench.cluster.local.spec import check_mode
from bench.errors import ClusterError, PrerequisiteError, UserError
from bench.kube import STRATEGIC_PATCH, Kube
from bench.paths import cache_dir
from bench.poll import wait_until

Say = Callable[[str], None]
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")  # kind allows [a-z0-9.-]; node names derive
KUBE_PROXY_METRICS_PORT = 10249                  # metricsBindAddress in every hopbench config
NFTABLES_SINCE = (0, 23)  # kind >= v0.23 knows kubeProxyMode: nftables


# --- prerequisites ---------------------------------------------------------------------


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise UserError(f"kind cluster name {name!r}: use 1-32 lowercase letters, digits or "
                        "'-', starting with a letter")
    return name


def require_kind() -> str:
    kind = shutil.which("kind")
    if not kind:
        v = load_kind_pins().version
        raise PrerequisiteError(f"kind is not on PATH: install kind {v} "
                                f"(go install sigs.k8s.io/kind@{v}) or use --provider local")
    return kind


def require_docker() -> None:
    """A docker CLI is not enough: kind needs the engine, so ask it (`docker info`)."""
    docker = shutil.which("docker")
    if not docker:
        raise PrerequisiteError("docker is not on PATH: the kind provider needs a running "
                                "Docker engine (or use --provider local)")
    try:
        proc = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"],
                              check=False, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        raise PrerequisiteError("`docker info` did not answer within 30s: is the Docker "
                                "engine hung? (or use --provider local)") from None
    if proc.returncode != 0 or not proc.stdout.strip():
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"exit status {proc.returncode}"
        raise PrerequisiteError(f"docker cannot reach a Docker engine ({reason.rstrip('.')}); "
                                "start Docker, or use --provider local")


def parse_version(text: str) -> tuple[int, ...]:
    """`kind v0.31.0 go1.26.8 linux/amd64` -> (0, 31, 0); () when unparseable."""
    m = re.search(r"\bv(\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(g) for g in m.groups()) if m else ()


def kind_version(kind: str) -> tuple[int, ...]:
    return parse_version(subprocess.run([kind, "version"], check=False, capture_output=True,
                                        text=True, timeout=30).stdout)


def prerequisites(mode: str, say: Say = print) -> str:
    """The Docker engine, then kind, then kind's version against the mode; returns kind."""
    require_docker()
    kind = require_kind()
    have, pin = kind_version(kind), load_kind_pins().version
    if mode == "nftables" and have and have[:2] < NFTABLES_SINCE:
        raise PrerequisiteError(f"kind v{'.'.join(map(str, have))} cannot run kube-proxy in "
                                f"nftables mode (needs >= v0.23); install kind {pin}")
    if have and "v" + ".".join(map(str, have)) != pin:
        say(f"note: kind v{'.'.join(map(str, have))} on PATH; hopbench's configs are "
            f"validated with kind {pin}")
    return kind


# --- lifecycle --------------------------------------------------------------------------


def kubeconfig_path(name: str) -> Path:
    """Where `up` writes the cluster's kubeconfig (not ~/.kube/config; regenerable with
    `kind get kubeconfig`, hence the cache)."""
    return cache_dir() / "kind" / "clusters" / name / "kubeconfig"


def config_for(mode: str, nodes: int) -> Path:
    """The committed config when one fits and matches the generator, else a rendered one."""
    cfg = KindConfig(mode, nodes)
    committed = CONFIG_DIR / filename(mode, nodes)
    if committed.exists() and committed.read_text() == render(cfg):
        return committed
    return write(cache_dir() / "kind" / "configs", cfg)


def cluster_names(kind: str) -> list[str]:
    proc = subprocess.run([kind, "get", "clusters"], check=False, capture_output=True, text=True,
                          timeout=60)
    if proc.returncode != 0:
        raise ClusterError(f"`kind get clusters` failed: {_tail(proc)}")
    return proc.stdout.split()


def up(mode: str, nodes: int = 1, name: str = "hopbench", say: Say = print,
       wait_s: float = 300) -> Path:
    """Create a kind cluster with kube-proxy in `mode`; returns its kubeconfig."""
    check_mode(mode)
    check_name(name)
    KindConfig(mode, nodes)  # refuses a bad node count before anything runs
    kind = prerequisites(mode, say)
    if name in cluster_names(kind):
        raise UserError(f"kind cluster {name!r} already exists "
                        f"(`hopbench cluster down --provider kind --name {name}` first)")
    config = config_for(mode, nodes)
    kubeconfig = kubeconfig_path(name)
    kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    say(f"creating kind cluster {name!r}: {nodes} node(s), kube-proxy {mode}, config {config}")
    started = time.monotonic()
    try:
        # cwd: the audit policy mount in the config is relative to kind's working directory
        proc = subprocess.run([kind, "create", "cluster", "--name", name, "--config",
                               str(config), "--kubeconfig", str(kubeconfig),
                               "--wait", f"{int(wait_s)}s"],
                              cwd=config.parent, check=False, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ClusterError(f"kind create cluster {name!r} failed: {_tail(proc)}")
        wait_proxy_synced(kubeconfig, mode, since=0.0, timeout=wait_s)
    except BaseException:
        try:
            _delete(kind, name, kubeconfig)
        except ClusterError as exc:  # keep the original error; say what may be left
            say(f"cleanup after the failed create also failed: {exc}")
        raise
    say(f"kind cluster {name!r} up after {time.monotonic() - started:.0f}s; "
        f"kubeconfig {kubeconfig}")
    return kubeconfig


def down(name: str = "hopbench", say: Say = print) -> bool:
    """Delete the cluster and its kubeconfig (idempotent); True if it existed."""
    check_name(name)
    require_docker()
    kind = require_kind()
    existed = name in cluster_names(kind)
    _delete(kind, name, kubeconfig_path(name))
    say(f"kind cluster {name!r} " + ("deleted" if existed else "was not there; nothing to do"))
    return existed


def _delete(kind: str, name: str, kubeconfig: Path) -> None:
    proc = subprocess.run([kind, "delete", "cluster", "--name", name, "--kubeconfig",
                           str(kubeconfig)], check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ClusterError(f"kind delete cluster {name!r} failed: {_tail(proc)}")
    shutil.rmtree(kubeconfig.parent, ignore_errors=True)


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0]


def _tail(proc: subprocess.CompletedProcess[str]) -> str:
    """kind's own `ERROR: ...` line when there is one, else the last line it printed."""
    lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR:")]
    return (errors or lines or [f"exit status {proc.returncode}"])[-1]


# --- kube-proxy mode on a live cluster -----------------------------------------------------


def with_mode(config_conf: str, mode: str) -> str:
    """kube-proxy's config.conf (from the kube-proxy ConfigMap) with `mode` replaced."""
    doc = yaml.safe_load(config_conf)
    if not isinstance(doc, dict) or doc.get("kind") != "KubeProxyConfiguration":
        raise ClusterError("ConfigMap kube-system/kube-proxy has no KubeProxyConfiguration "
                           "in config.conf; is this a kubeadm (kind) cluster?")
    doc["mode"] = check_mode(mode)
    return str(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))


CONFIGMAP = "/api/v1/namespaces/kube-system/configmaps/kube-proxy"
DAEMONSET = "/apis/apps/v1/namespaces/kube-system/daemonsets/kube-proxy"


def _call(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """One API call, with any failure as one line that says what was being done."""
    try:
        return fn(*args, **kwargs)
    except ClusterError as exc:
        raise ClusterError(f"{what}: {_first_line(exc)}") from None


def set_proxy_mode(name: str, mode: str, kubeconfig: Path | None = None, say: Say = print,
                   timeout: float = 180) -> float:
    """Edit the kube-proxy ConfigMap, restart its DaemonSet, wait until every node's new
    kube-proxy runs `mode` and has synced; returns the seconds it took.

    kube-proxy cleans the other family's rules when it starts (nftables <-> iptables/ipvs)
    but not iptables <-> ipvs leftovers; for a clean comparison create one cluster per mode.
    """
    check_mode(mode)
    check_name(name)
    kubeconfig = kubeconfig or kubeconfig_path(name)
    if not kubeconfig.exists():
        raise UserError(f"no kubeconfig for kind cluster {name!r} at {kubeconfig} "
                        f"(`kind get kubeconfig --name {name} > FILE`, then pass it)")
    with Kube(kubeconfig) as api:
        cm = _call("reading ConfigMap kube-system/kube-proxy", api.get, CONFIGMAP) or {}
        started, clock = time.time(), time.monotonic()
        conf = with_mode((cm.get("data") or {}).get("config.conf", ""), mode)
        _call("updating ConfigMap kube-system/kube-proxy", api.patch, CONFIGMAP,
              {"data": {"config.conf": conf}}, STRATEGIC_PATCH)
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        _call("restarting DaemonSet kube-system/kube-proxy", api.patch, DAEMONSET,
              {"spec": {"template": {"metadata": {"annotations": {
                  "kubectl.kubernetes.io/restartedAt": stamp}}}}}, STRATEGIC_PATCH)
        wait_until(lambda: _rolled_out(api), timeout, 0.5, "the kube-proxy DaemonSet rollout",
                   retry_on=(Exception,))
        wait_proxy_synced(kubeconfig, mode, since=started, timeout=timeout, api=api)
    took = round(time.monotonic() - clock, 2)
    say(f"kube-proxy now {mode} on kind cluster {name!r} after {took}s")
    return took


def _rolled_out(api: Kube) -> bool:
    ds = _call("reading DaemonSet kube-system/kube-proxy", api.get, DAEMONSET + "/status") or {}
    s, want = ds.get("status") or {}, (ds.get("status") or {}).get("desiredNumberScheduled")
    return bool(s.get("observedGeneration", 0) >= ds.get("metadata", {}).get("generation", 0)
                and want and s.get("updatedNumberScheduled") == want
                and s.get("numberAvailable") == want and not s.get("numberUnavailable"))


def wait_proxy_synced(kubeconfig: Path, mode: str, since: float, timeout: float,
                      api: Kube | None = None) -> None:
    """Every node's kube-proxy reports `mode` (/proxyMode) and a sync later than `since`.

    Read through the API server's node proxy (kind nodes share the harness's kernel clock,
    so comparing kube-proxy's sync timestamp with `since` is sound).
    """
    own = api is None
    kube = Kube(kubeconfig) if api is None else api
    try:
        nodes = [n["metadata"]["name"] for n in _call("listing nodes", kube.list, "/api/v1/nodes")]

        def synced(node: str) -> bool:
            proxy = f"/api/v1/nodes/{node}:{KUBE_PROXY_METRICS_PORT}/proxy"
            running = kube.get_text(f"{proxy}/proxyMode").strip()
            return running == mode and prom.last_sync_s(kube.get_text(f"{proxy}/metrics")) > since

        hint = f"kubectl -n kube-system logs -l k8s-app=kube-proxy --kubeconfig {kubeconfig}"
        for node in nodes:
            wait_until(partial(synced, node), timeout, 0.5,
                       f"kube-proxy ({mode}) to sync on node {node}", retry_on=(Exception,),
                       hint=f"`{hint}`")
    finally:
        if own:
            kube.close()

