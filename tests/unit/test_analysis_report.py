"""write_report end to end on synthetic runs: every figure present, readable and non-blank."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from analysis_synth import hops_frame, make_run
from matplotlib.image import imread

from analysis.load import ProvenanceMismatch, load_run
from analysis.plots import FIGURES, ecdf_figure, sli_figure
from analysis.report import CSV_FILES, write_report
from analysis.stats import Settings

FAST = Settings(n_boot=200)
ANALYSIS = Path(__file__).resolve().parents[2] / "analysis"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("runs") / "full", trials=150,  # type: ignore[no-any-return]
                    modes=("iptables", "nftables", "ipvs"))


def assert_real_picture(path: Path) -> None:
    """A PNG of a reasonable size whose pixels are not all one colour."""
    assert path.suffix == ".png" and path.stat().st_size > 15_000, path
    pixels = imread(path)[..., :3]
    assert pixels.shape[0] > 300 and pixels.shape[1] > 600
    assert pixels.std() > 0.05, f"{path.name} looks blank"
    ink = (pixels.min(axis=2) < 0.97).mean()  # a "no data" panel is light grey, not white
    assert ink > 0.02, f"{path.name}: only {ink:.1%} of pixels are not white"


def test_report_has_every_figure_table_and_page(run_dir: Path, tmp_path: Path) -> None:
    paths = write_report([run_dir], tmp_path / "out", settings=FAST)
    names = {spec.name for spec in FIGURES}
    assert set(paths) == names | set(CSV_FILES) | {"html"}
    for name in names:
        assert_real_picture(paths[name])
    summary = pd.read_csv(paths["summary_csv"])
    assert {"p50_ms", "p50_lo_ms", "p99_censored", "n_censored"} <= set(summary.columns)
    assert len(summary) == summary[["direction", "proxy_mode", "hop", "scope"]].drop_duplicates() \
        .shape[0]
    for key in CSV_FILES:
        assert paths[key].stat().st_size > 100
    page = paths["html"].read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == len(FIGURES)
    assert not re.findall(r'(?:src|href)="(?!data:)', page), "report must be self-contained"
    assert "Ratio".lower() in page.lower() and "Per-node spread" in page


def test_report_without_sli_and_removals_still_draws_every_figure(tmp_path: Path) -> None:
    run = make_run(tmp_path / "addonly", trials=40, sli=False, directions=("add",),
                   modes=("nftables",))
    paths = write_report(str(run), tmp_path / "out", settings=FAST)
    for spec in FIGURES:
        assert_real_picture(paths[spec.name])
    data = load_run(run)
    texts = [t.get_text() for ax in sli_figure(data.hops, []).axes for t in ax.texts]
    assert any("no SLI data for nftables in run.json" in t for t in texts)
    removal = [t.get_text() for ax in ecdf_figure(data.hops, "remove").axes for t in ax.texts]
    assert any("no remove trials" in t for t in removal)


def test_report_refuses_to_pool_mismatched_runs(run_dir: Path, tmp_path: Path) -> None:
    other = make_run(tmp_path / "kind", trials=20, provider="kind",
                     modes=("iptables", "nftables", "ipvs"))
    with pytest.raises(ProvenanceMismatch, match="provider"):
        write_report([run_dir, other], tmp_path / "out", settings=FAST)
    assert not (tmp_path / "out").exists()  # nothing half-written
    paths = write_report([run_dir, other], tmp_path / "out", allow_mixed=True, settings=FAST)
    assert "runs pooled although provider differs" in paths["html"].read_text()


def test_sli_figure_reports_malformed_entries() -> None:
    hops = hops_frame([{"hop": "ready_to_slice", "latency_ms": 5.0}])
    fig = sli_figure(hops, [], ["r: sli iptables/n1: needs buckets_s and counts"])
    assert any("malformed" in t.get_text() for t in fig.texts)


def test_analysis_never_imports_a_kubernetes_client_or_the_run_path() -> None:
    """Transitively, at run time: loading every analysis module pulls in no client and none
    of the harness's cluster-facing packages (pure bench modules such as the results
    schema and store are fine). import-linter checks the same statically."""
    code = ("import sys, analysis.load, analysis.stats, analysis.plots, analysis.report;"
            "bad = [m for m in sys.modules if m.split('.')[0] in"
            " ('kubernetes', 'kr8s', 'httpx', 'httpcore', 'urllib3')"
            " or m.split('.')[:2] in (['bench', 'providers'], ['bench', 'sources'],"
            " ['bench', 'cluster'], ['bench', 'scenarios'], ['bench', 'runner'],"
            " ['bench', 'build'], ['bench', 'workloads'], ['bench', 'kube'])];"
            "print(','.join(sorted(bad)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""


def test_png_checker_rejects_blank_images(tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    blank = tmp_path / "blank.png"
    Figure(figsize=(8, 4)).savefig(blank)
    with pytest.raises(AssertionError):
        assert_real_picture(blank)
    assert np.isfinite(imread(blank)).all()
