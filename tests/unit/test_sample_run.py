"""The committed sample run (results/sample): produced by the harness on the local
cluster (`nox -s sample`), it feeds the notebooks and the report in CI."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from analysis.report import write_report

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "results" / "sample"
NOTEBOOKS = sorted((ROOT / "analysis" / "notebooks").glob("*.ipynb"))


def test_sample_was_made_by_the_harness() -> None:
    meta = json.loads((SAMPLE / "run.json").read_text())
    assert meta["status"] == "finished" and meta["provider"] == "local"
    assert meta["git_commit"] not in ("", "unknown") and meta["harness_version"]
    assert set(meta["modes"]) == {"iptables", "nftables"}
    assert (SAMPLE / "events.parquet").stat().st_size > 0


def test_report_on_the_sample_has_every_plot(tmp_path: Path) -> None:
    paths = write_report([SAMPLE], tmp_path)
    pngs = [Path(p) for k, p in paths.items() if str(p).endswith(".png")]
    assert len(pngs) >= 9
    for p in pngs:
        assert p.stat().st_size > 10_000, p  # a real figure, not an empty canvas
    html = Path(paths["html"]).read_text()
    assert html.count("data:image/png;base64,") == len(pngs)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_the_sample(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOPBENCH_RUN_DIR", str(SAMPLE))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    book = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    NotebookClient(book, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = [o for c in book.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert [o for o in outputs if "image/png" in o.get("data", {})]


def test_report_lists_the_runs_instrument_checks(tmp_path: Path) -> None:
    from analysis.report import instruments

    meta = json.loads((SAMPLE / "run.json").read_text())
    table = instruments({meta["run_id"]: meta})
    assert list(table.proxy_mode) == ["iptables", "nftables"]
    for mode, m in meta["modes"].items():
        row = table[table.proxy_mode == mode].iloc[0]
        assert row["agent CPU max %"] == round(max(m["agent_cpu_fraction"].values()) * 100, 1)
        assert row["trials/min"] == m["trials_per_minute"]
        assert row["early rule changes"] == 0
        assert 0 < row["fine probing %"] < 100
    html = Path(write_report([SAMPLE], tmp_path)["html"]).read_text()
    assert "<h2>Instruments</h2>" in html and "agent CPU max %" in html
    # a run from before these keys existed still gets its row, with blanks
    old = instruments({"r0": {"modes": {"iptables": {"trials_per_minute": 40.9}}}})
    assert old.iloc[0]["trials/min"] == 40.9 and old.iloc[0]["agent CPU max %"] is None
