"""A wheel install must work, not only `pip install -e`: the manifests (workloads/) and the
kind configs (kind-configs/) travel inside the package and are found there."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_ships_and_finds_workloads_and_kind_configs(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp_path / "dist"), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("hopbench-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for want in ("bench/_shipped/workloads/trial-pod.yaml",
                 "bench/_shipped/workloads/agent/entrypoint.sh",
                 "bench/_shipped/kind-configs/nftables.yaml",
                 "bench/_shipped/kind-configs/audit-policy.yaml"):
        assert want in names, f"{want} missing from {wheel.name}"
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    probe = ("import bench.workloads as w, bench.build.kindconfig as k, "
             "bench.build.agentimage as a; "
             "print(w.manifest_path('trial-pod.yaml')); print(k.CONFIG_DIR); "
             "print(a.ENTRYPOINT.exists())")
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env=env, cwd=tmp_path, check=True, timeout=60).stdout.split()
    assert out[0].startswith(str(target)), out  # the wheel's copy, not the checkout's
    assert out[1].startswith(str(target)), out
    assert out[2] == "True"
