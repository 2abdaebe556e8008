"""The notebooks run top to bottom in smoke mode (TFMTL_SMOKE=1), in order, as a user would; their cells assert."""

from __future__ import annotations

import runpy
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from tests.conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def execute(path: Path, cwd: Path, *, timeout: int = 600) -> nbformat.NotebookNode:
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return notebook


@pytest.fixture
def smoke(monkeypatch, movielens_dir):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TFMTL_SMOKE", "1")
    monkeypatch.setenv("TFMTL_DATA_DIR", str(movielens_dir))
    monkeypatch.delenv("TFMTL_TF_SERVING_ADDRESS", raising=False)


def test_there_are_three_notebooks_train_export_query() -> None:
    assert [p.name[:3] for p in NOTEBOOKS] == ["01_", "02_", "03_"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs_and_import_only_the_package(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip the outputs"
            assert "class " not in cell.source, f"{path.name}: notebooks define no classes; use the package"
    assert "TFMTL_SMOKE" in "".join(c.source for c in notebook.cells)


def test_every_notebook_starts_with_the_one_colab_setup_cell() -> None:
    """The cell is written once (scripts/notebook_setup_cell.py, the URL from tfmtl/_version.py) and copied into
    every notebook by that script; tests/test_packaging.py runs it in a fresh venv as Colab would."""
    from tfmtl._version import REPOSITORY_URL

    setup_cell = runpy.run_path(str(REPO / "scripts" / "notebook_setup_cell.py"))["setup_cell"]()
    assert f'TFMTL_REPOSITORY = "{REPOSITORY_URL}"' in setup_cell
    for path in NOTEBOOKS:
        first = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        assert first.source == setup_cell, f"{path.name}: run python scripts/notebook_setup_cell.py"


@pytest.mark.network
def test_every_notebook_runs_in_smoke_mode_in_order(smoke, tmp_path) -> None:  # type: ignore[no-untyped-def]
    for path in NOTEBOOKS:
        executed = execute(path, tmp_path)
        errors = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert errors == [], f"{path.name}: {errors[:1]}"
    assert (tmp_path / "runs" / "notebook" / "plots" / "losses.png").exists()
    assert any(p.name.isdigit() for p in (tmp_path / "saved_models" / "movielens").iterdir())


def test_a_broken_cell_fails_the_run(smoke, tmp_path) -> None:  # type: ignore[no-untyped-def]
    notebook = nbformat.read(NOTEBOOKS[0], as_version=4)
    notebook.cells.insert(2, nbformat.v4.new_code_cell("assert tfmtl.__version__ == 'not this version'"))
    broken = tmp_path / "broken.ipynb"
    nbformat.write(notebook, broken)
    with pytest.raises(CellExecutionError, match="not this version"):
        execute(broken, tmp_path, timeout=300)
    assert not (tmp_path / "runs").exists()  # execution stopped at the broken cell

