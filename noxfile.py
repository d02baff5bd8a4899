"""nox sessions: the same plain functions the CLI calls, for CI and the README quickstart.

`tests` (default) runs the linters (ruff, mypy), then unit and integration tests; it needs
root and installs what the local cluster needs. `bench` is the main job. Expensive
sessions pass posargs through.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_venv = "yes"
PY = "3.11"


def _install(session: nox.Session) -> None:
    session.install("-e", ".[test]")


def _prepare_host(session: nox.Session) -> None:
    """Debian packages and the cached Go build of upstream binaries."""
    if os.geteuid() != 0:
        session.error("the local cluster needs root: run nox as root")
    session.run("hopbench", "doctor", "--fix")
    session.run("hopbench", "build", "--mesh", "istio")  # the mesh tests need istiod


def _lint(session: nox.Session) -> None:
    session.run("ruff", "check", ".")
    session.run("mypy")
    session.run("lint-imports")


@nox.session(python=PY)
def lint(session: nox.Session) -> None:
    """ruff and mypy (configured in pyproject.toml)."""
    _install(session)
    _lint(session)


@nox.session(python=PY)
def unit(session: nox.Session) -> None:
    """Pure unit tests: no root, no cluster."""
    _install(session)
    session.run("pytest", "tests/unit", *session.posargs)


@nox.session(python=PY)
def tests(session: nox.Session) -> None:
    """Linters, unit and integration tests; integration tests run on the real local cluster."""
    _install(session)
    _lint(session)
    _prepare_host(session)
    session.run("pytest", "tests/unit", "tests/integration", *session.posargs)


def _run_and_report(session: nox.Session, out: str, trials: str, *extra: str) -> None:
    session.run("hopbench", "run", "--nodes", "2", "--proxy-mode", "iptables,nftables",
                "--scenario", "scale-up,delete", "--trials", trials, "--out", out,
                *extra, *session.posargs)
    session.run("hopbench", "report", out, "--out", f"{out}/report")


@nox.session(python=PY)
def bench(session: nox.Session) -> None:
    """The main job: local cluster (2 nodes), scale-up and delete, iptables and nftables,
    100 trial pairs each, into results/<timestamp>/ with plots and report.html."""
    _install(session)
    _prepare_host(session)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    _run_and_report(session, f"results/{stamp}", "100")


@nox.session(python=PY)
def mesh(session: nox.Session) -> None:
    """The mesh job: the main job's trials with istiod and a proxyless gRPC client on
    every node, so each trial has both chains (kube-proxy's and the mesh's), into
    results/mesh-<timestamp>/ with plots and report.html."""
    _install(session)
    _prepare_host(session)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    _run_and_report(session, f"results/mesh-{stamp}", "100", "--mesh", "istio")


#: PILOT_DEBOUNCE_AFTER values of the mesh_debounce sweep, in ms (istio's default: 100)
DEBOUNCE_MS = ("0", "100", "500")


@nox.session(python=PY)
def mesh_debounce(session: nox.Session) -> None:
    """istiod's push debounce swept (issue 11): one mesh run per PILOT_DEBOUNCE_AFTER in
    DEBOUNCE_MS, iptables, 20 trial pairs each, into results/mesh-debounce-<timestamp>/<X>ms/,
    then debounce.csv and debounce.png (slice -> push and the mesh's end to end over X)."""
    _install(session)
    _prepare_host(session)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = f"results/mesh-debounce-{stamp}"
    runs = [f"{out}/{ms}ms" for ms in DEBOUNCE_MS]
    for ms, run in zip(DEBOUNCE_MS, runs):
        session.run("hopbench", "run", "--nodes", "2", "--proxy-mode", "iptables",
                    "--scenario", "scale-up,delete", "--trials", "20", "--mesh", "istio",
                    "--component-env", f"istiod:PILOT_DEBOUNCE_AFTER={ms}ms", "--out", run,
                    *session.posargs)
    session.run("python", "-m", "analysis.debounce", *runs, "--out", out)


@nox.session(python=PY)
def scale(session: nox.Session) -> None:
    """The scale job: 0 / 1,000 / 5,000 / 10,000 background Services (2 endpoints each) x
    iptables and nftables on the local cluster, 30 add+remove cycles on four Services in
    parallel and two proxy-restart full syncs (one per node, run alone) at each point, into
    results/scale-<timestamp>/ with the growth plots."""
    _install(session)
    _prepare_host(session)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = f"results/scale-{stamp}"
    session.run("hopbench", "run", "--nodes", "2", "--proxy-mode", "iptables,nftables",
                "--scenario", "scale-up,delete,proxy-restart:2", "--trials", "30",
                "--parallel", "4",
                "--background-services", "0,1000,5000,10000", "--endpoints-per-service", "2",
                "--out", out, *session.posargs)
    session.run("hopbench", "report", out, "--out", f"{out}/report")


@nox.session(python=PY)
def sample(session: nox.Session) -> None:
    """Regenerate the committed sample run (results/sample) on the local cluster."""
    _install(session)
    _prepare_host(session)
    shutil.rmtree("results/sample", ignore_errors=True)
    _run_and_report(session, "results/sample", "20")
    shutil.rmtree("results/sample/report", ignore_errors=True)  # keep the repo small
    for name in ("events.jsonl", ".lock"):  # the journal duplicates events.parquet
        Path("results/sample", name).unlink(missing_ok=True)


@nox.session(python=PY)
def benchmarks(session: nox.Session) -> None:
    """pytest-benchmark of the analysis path (load + stats + plots, 10,000 trials x 3 nodes)."""
    _install(session)
    session.run("pytest", "tests/bench", "--benchmark-only", *session.posargs)
