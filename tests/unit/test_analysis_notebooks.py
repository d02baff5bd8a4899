"""The notebooks in analysis/notebooks run top to bottom against a run directory.

They read the run named by $HOPBENCH_RUN_DIR; here that is a synthetic run, in CI the committed
sample (compare_sweeps: two synthetic sweep runs). A cell that raises, or writes to stderr
(a warning), fails the test.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from analysis_synth import make_run
from growth_synth import make_sweep
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "analysis" / "notebooks")
                   .glob("*.ipynb"))


def test_the_four_notebooks_exist() -> None:
    assert {p.stem for p in NOTEBOOKS} == {"explore_run", "compare_modes", "node_tails",
                                           "compare_sweeps"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_has_no_outputs(path: Path) -> None:
    book = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    nbformat.validate(book)
    for cell in book.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, path.name


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("nb") / "sample", trials=120,  # type: ignore[no-any-return]
                    modes=("iptables", "nftables", "ipvs"))


@pytest.fixture(scope="module")
def sweep_runs(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("sweeps")
    return os.pathsep.join(str(make_sweep(root / name, trials=40, seed=seed))
                           for seed, name in enumerate(("sweep-a", "sweep-b")))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path: Path, sample_run: Path, sweep_runs: str,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    runs = sweep_runs if path.stem == "compare_sweeps" else str(sample_run)
    monkeypatch.setenv("HOPBENCH_RUN_DIR", runs)
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # silences jupyter_core's path warning
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    book = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    client = NotebookClient(book, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    outputs = [o for cell in book.cells if cell.cell_type == "code" for o in cell.outputs]
    errors = [o for o in outputs if o.output_type == "error"]
    stderr = [o.text for o in outputs if o.output_type == "stream" and o.name == "stderr"]
    assert not errors and not stderr, (errors, stderr)
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, f"{path.name} drew no figure"
