"""tools/execute_nbs.py, the runner behind `make run`: order, parallel execution, failures."""
import os
import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import execute_nbs  # noqa: E402


def test_order_that_matters():
    stems = ["00_core", "04_gan", "99_results", "index"]
    assert execute_nbs.needs("04_gan", stems) == set()
    assert execute_nbs.needs("99_results", stems) == {"00_core", "04_gan"}
    assert execute_nbs.needs("index", stems) == {"00_core", "04_gan", "99_results"}
    assert execute_nbs.needs("99_results", ["99_results"]) == set()


def notebook(path: Path, source: str) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_parallel_run_keeps_outputs_and_skips_after_a_failure(tmp_path, monkeypatch):
    "Two notebooks run at once, outputs saved; a failing one is reported and the notebook that needs it is skipped."
    monkeypatch.setattr(execute_nbs, "TIMES", tmp_path / "times.json")
    a = notebook(tmp_path / "a.ipynb", "import os; print('threads', os.environ['OMP_NUM_THREADS'])")
    b = notebook(tmp_path / "b.ipynb", "raise RuntimeError('broken on purpose')")
    c = notebook(tmp_path / "99_results.ipynb", "print('last')")
    env = os.environ | {"INVGEN_PROFILE": "docs", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    results = execute_nbs.schedule([a, b, c], jobs=2, env=env)
    assert results["a"][0] == "ok" and results["b"][0] == "FAILED" and results["99_results"][0].startswith("skipped")
    out = nbformat.read(a, 4).cells[0].outputs
    assert "threads 1" in out[0]["text"]
    times = (tmp_path / "times.json").read_text()
    assert '"a"' in times and '"b"' not in times      # only notebooks that ran through record a time


def test_bad_jobs():
    with pytest.raises(SystemExit):
        execute_nbs.main(["--jobs", "0", "nbs/00_core.ipynb"])
