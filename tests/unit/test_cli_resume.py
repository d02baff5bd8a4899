"""`run --resume DIR` takes the run's own options from its run.json, not the CLI defaults."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.cli import _resumed
from bench.errors import UserError

SAMPLE = Path(__file__).resolve().parents[2] / "results" / "sample"


def meta() -> dict[str, Any]:
    return dict(json.loads((SAMPLE / "run.json").read_text()))


def test_options_come_from_the_run() -> None:
    m = meta()
    m["scenario_config"]["trials"] = 12
    m["scenario_config"]["future_option"] = "ignored"  # written by a newer hopbench
    modes, cfg, cluster = _resumed(m, None, None)
    assert modes == ("iptables", "nftables")
    assert cfg.trials == 12 and cfg.scenarios == ("scale-up", "delete")
    assert cfg.probe_interval_ms == 5.0 and cfg.probe_idle_interval_ms == 100.0
    assert cluster == m["cluster"]
    assert _resumed(m, "other", None)[2] == "other"  # an explicit --cluster wins


def test_provider_must_match() -> None:
    with pytest.raises(UserError, match="without --kubeconfig"):
        _resumed(meta(), None, "/tmp/kubeconfig")
    m = {**meta(), "provider": "kubeconfig"}
    with pytest.raises(UserError, match="--kubeconfig PATH"):
        _resumed(m, None, None)
    assert _resumed(m, None, "/tmp/kubeconfig")[0] == ("iptables", "nftables")


def test_nothing_to_resume() -> None:
    with pytest.raises(UserError, match="nothing to resume"):
        _resumed({"provider": "local", "proxy_modes": []}, None, None)
