"""Execute notebooks in place (outputs saved), in the profile given by INVGEN_PROFILE.

Cells flagged `#| gpu` are not run when CUDA is absent: their output says so instead. Each notebook
is executed in its own directory, then cleaned with nbdev_clean so the committed JSON stays minimal.
Usage: python tools/execute_nbs.py nbs/00_core.ipynb [nbs/01_data.ipynb ...]
"""
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

_GPU = re.compile(r"^\s*#\|\s*gpu\b", re.M)


def cuda_available() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except Exception:
        return False


class FlagAwareClient(NotebookClient):
    "Runs every cell except `#| gpu` cells on a machine without CUDA."
    has_cuda = cuda_available()

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        if cell.cell_type == "code" and not self.has_cuda and _GPU.search(cell.source):
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="(not run: this cell needs a CUDA GPU)\n")]
            cell.execution_count = None
            return cell
        return await super().async_execute_cell(cell, cell_index, execution_count, store_history)


def execute(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    start = time.time()
    FlagAwareClient(nb, timeout=None, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    nbformat.write(nb, path)
    return time.time() - start


def main(paths):
    if not paths: sys.exit("usage: execute_nbs.py NOTEBOOK [NOTEBOOK ...]")
    # the kernels inherit this environment: a non-inline backend (the Makefile exports Agg for the tests) would
    # draw every figure off screen and the committed notebooks would carry none
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    profile = os.environ.get("INVGEN_PROFILE", "docs")
    total = 0.0
    for p in map(Path, paths):
        print(f"executing {p} ({profile} profile) ...", flush=True)
        t = execute(p)
        total += t
        print(f"  {t:7.1f} s  {p}", flush=True)
    subprocess.run([str(Path(sys.executable).parent / "nbdev_clean")], check=True)
    print(f"  {total:7.1f} s  total ({profile} profile)")


if __name__ == "__main__":
    main(sys.argv[1:])
