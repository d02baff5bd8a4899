"""A run uses a healthy cluster, creates one where none exists, and refuses the rest
(issue 9, defect 6): it never brings a cluster up over, nor removes, one it did not create."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from bench.cluster.local import cluster, live
from bench.cluster.local.spec import ClusterSpec
from bench.errors import UserError


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOPBENCH_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("HOPBENCH_RUN", str(tmp_path / "run"))

    def no_up(*a: object, **k: object) -> None:
        raise AssertionError("a run brought a cluster up over an existing one")

    monkeypatch.setattr(cluster, "up", no_up)


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _record(name: str, status: str, pids: dict[str, int], owner: int = 0) -> ClusterSpec:
    spec = ClusterSpec(name=name, nodes=1)
    spec.state_dir.mkdir(parents=True)
    (spec.state_dir / "spec.json").write_text(spec.to_json())
    (spec.state_dir / "state.json").write_text(json.dumps(
        {"status": status, "pids": pids, "owner_pid": owner}))
    return spec


def test_absent_and_up() -> None:
    assert live.condition("guardrx").state == "absent"
    _record("guardrx", "up", {"etcd": os.getpid()})
    assert live.condition("guardrx").state == "up"


def test_degraded_names_the_dead_component() -> None:
    _record("guardrx", "up", {"etcd": os.getpid(), "kube-proxy-n1": _dead_pid()})
    cond = live.condition("guardrx")
    assert (cond.state, cond.dead) == ("degraded", ("kube-proxy-n1",))
    with pytest.raises(UserError, match=r"^cluster 'guardrx' is degraded \(dead: "
                                        r"kube-proxy-n1\).*hopbench cluster up --name guardrx"):
        cluster.ensure("guardrx", 1, "iptables", {}, say=lambda m: None)


def test_starting_and_leftovers_are_refused() -> None:
    _record("guardrx", "starting", {}, owner=os.getpid())
    with pytest.raises(UserError, match="still being brought up"):
        cluster.ensure("guardrx", 1, "iptables", {}, say=lambda m: None)
    _record("guardry", "starting", {"etcd": _dead_pid()}, owner=_dead_pid())
    with pytest.raises(UserError, match="not running but left state"):
        cluster.ensure("guardry", 1, "iptables", {}, say=lambda m: None)
