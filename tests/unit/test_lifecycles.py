"""Cluster kinds are registered by name: the CLI has no branch per kind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.cluster import lifecycles
from bench.errors import UserError


def test_local_and_kind_are_registered() -> None:
    assert lifecycles.names() == ["kind", "local"]
    assert lifecycles.get("kind").name == "kind"


def test_unknown_provider_is_one_line_naming_the_known_ones() -> None:
    with pytest.raises(UserError, match=r"unknown provider 'k3d' \(choose from kind, local\)"):
        lifecycles.get("k3d")


def test_a_registered_kind_is_used_by_the_cli_without_edits(tmp_path: Path) -> None:
    code = '''
import sys
from pathlib import Path
from bench.cluster import lifecycles
from bench import cli

class Fake:
    name = "fake"
    def up(self, name, nodes, mode, component_args, say, build_progress=None):
        say(f"fake up {name} {nodes} {mode}")
        return Path("/tmp/fake-kubeconfig")
    def down(self, name, say):
        return f"fake {name} gone"
    def set_proxy_mode(self, name, mode, say):
        say(f"fake {name} now {mode}")

lifecycles.register(Fake())
sys.argv = ["hopbench", *sys.argv[1:]]
cli.main()
'''
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                              text=True, timeout=60)

    up = run("cluster", "up", "--provider", "fake", "--name", "x", "--nodes", "3")
    assert up.returncode == 0, up.stderr
    assert "fake up x 3 iptables" in up.stderr and "/tmp/fake-kubeconfig" in up.stdout
    down = run("cluster", "down", "--provider", "fake", "--name", "x")
    assert "fake x gone" in down.stderr
    mode = run("cluster", "set-proxy-mode", "x", "nftables", "--provider", "fake")
    assert "fake x now nftables" in mode.stderr
    bad = run("cluster", "down", "--provider", "nope")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
