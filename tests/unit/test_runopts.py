"""Every `run` option is refused up front, with the option named (issue 9, defect 7)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from bench import runopts
from bench.errors import UserError
from bench.scenarios import ScenarioConfig


@pytest.mark.parametrize(("field", "value", "option"), [
    ("trials", 0, "--trials 0"),
    ("parallel", 0, "--parallel 0"),
    ("spacing_s", -0.005, "--spacing-ms -5"),
    ("trial_timeout_s", 0.0, "--trial-timeout 0"),
    ("trial_timeout_s", math.inf, "--trial-timeout inf"),
    ("probe_interval_ms", -1.0, "--probe-interval-ms -1"),
    ("probe_idle_interval_ms", math.nan, "--probe-idle-interval-ms nan"),
])
def test_out_of_range_names_the_option(field: str, value: float, option: str) -> None:
    sc = dataclasses.replace(ScenarioConfig(), **{field: value})  # type: ignore[arg-type]
    with pytest.raises(UserError, match="^" + option + ":"):
        runopts.check_scenario(sc)


def test_defaults_and_bounds_pass() -> None:
    runopts.check_scenario(ScenarioConfig())
    runopts.check_scenario(ScenarioConfig(trials=1, parallel=1, spacing_s=0.0))


def test_a_string_from_a_hand_edited_run_json_is_refused() -> None:
    with pytest.raises(UserError, match="--trials: expected a number"):
        runopts.check_scenario(dataclasses.replace(ScenarioConfig(), trials="5"))  # type: ignore[arg-type]


@pytest.mark.parametrize(("check", "arg", "needle"), [
    (runopts.check_nodes, 0, "--nodes 0"),
    (runopts.check_nodes, 21, "--nodes 21"),
    (runopts.check_cluster_name, "Bad_Name", "--cluster 'Bad_Name'"),
    (runopts.check_max_skew, -1.0, "--max-skew -1"),
])
def test_target_options(check, arg, needle: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UserError, match=needle):
        check(arg)


def test_out_dir_that_cannot_be_created() -> None:
    with pytest.raises(UserError, match=r"--out /proc/foo/bar: cannot create a directory in /proc"):
        runopts.check_out_dir(Path("/proc/foo/bar"))


def test_out_dir_not_empty_or_a_file(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("")
    with pytest.raises(UserError, match="not empty"):
        runopts.check_out_dir(tmp_path)
    with pytest.raises(UserError, match="not a directory"):
        runopts.check_out_dir(tmp_path / "x")
    with pytest.raises(UserError, match="not a directory"):
        runopts.check_out_dir(tmp_path / "x" / "run")


def test_out_dir_checked_leaves_nothing(tmp_path: Path) -> None:
    runopts.check_out_dir(tmp_path / "a" / "b")
    assert list(tmp_path.iterdir()) == []
