"""Execute notebooks in place (outputs saved), in the profile given by INVGEN_PROFILE, several at a time.

  python tools/execute_nbs.py [--jobs N] NOTEBOOK [NOTEBOOK ...]

* `--jobs N` notebooks run at once (default: the number of cores), each in its own kernel on one thread
  (OMP_NUM_THREADS=1), so that N notebooks share N cores without oversubscribing them.
* Order that matters is kept: a notebook listed in AFTER starts only when the notebooks it needs have finished
  (99_results loads the models of the earlier notebooks from the fitted-model cache, so it runs last). Among the
  notebooks that may start, the longest (by the times of the last run, kept in tools/notebook_times.json) goes first,
  which keeps the cores busy until the end.
* Cells flagged `#| gpu` are not run when CUDA is absent: their output says so instead.
* A notebook that fails does not stop the others (those that need it are skipped); the exit status is 1.
* At the end: the wall time of each notebook, the total, and the speed-up over running them one after another.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMES = ROOT / "tools" / "notebook_times.json"
_GPU = re.compile(r"^\s*#\|\s*gpu\b", re.M)
# stem -> the notebooks it needs ('*': every notebook of the run not listed here): 99_results reuses the others' models
# through the cache, and index shows every claim, 99_results's included
AFTER = {"99_results": ("*",), "index": ("*", "99_results")}


def execute(path: Path) -> float:
    "Run one notebook in place in this process (a kernel of its own); return its wall seconds."
    import nbformat
    from nbclient import NotebookClient

    class FlagAwareClient(NotebookClient):
        "Runs every cell except `#| gpu` cells on a machine without CUDA."
        has_cuda = cuda_available()

        async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
            if cell.cell_type == "code" and not self.has_cuda and _GPU.search(cell.source):
                cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="(not run: this cell needs a CUDA GPU)\n")]
                cell.execution_count = None
                return cell
            return await super().async_execute_cell(cell, cell_index, execution_count, store_history)

    nb = nbformat.read(path, as_version=4)
    start = time.time()
    FlagAwareClient(nb, timeout=None, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    nbformat.write(nb, path)
    return time.time() - start


def cuda_available() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except Exception:
        return False


def needs(stem: str, stems: list[str]) -> set[str]:
    deps = AFTER.get(stem, ())
    out = {s for s in stems if s != stem and s not in AFTER} if "*" in deps else set()
    return (out | set(deps)) & (set(stems) - {stem})


def schedule(paths: list[Path], jobs: int, env: dict) -> dict[str, tuple[str, float]]:
    "Run the notebooks `jobs` at a time (each in a subprocess); return stem -> (status, seconds)."
    known = json.loads(TIMES.read_text()) if TIMES.exists() else {}
    by_stem = {p.stem: p for p in paths}
    waiting = set(by_stem)
    results: dict[str, tuple[str, float]] = {}

    def run(stem: str) -> tuple[str, float]:
        t = time.time()
        proc = subprocess.run([sys.executable, __file__, "--single", str(by_stem[stem])], env=env, capture_output=True, text=True)
        if proc.returncode:
            sys.stderr.write(f"--- {stem} failed ---\n{proc.stderr[-4000:]}\n")
            return "FAILED", time.time() - t
        return "ok", time.time() - t

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        running = {}
        while waiting or running:
            done_ok = {s for s, (st, _) in results.items() if st == "ok"}
            for stem in [s for s in waiting if needs(s, list(by_stem)) - done_ok and needs(s, list(by_stem)) & {r for r, (st, _) in results.items() if st != "ok"}]:
                waiting.discard(stem); results[stem] = ("skipped (a notebook it needs failed)", 0.0)
            ready = sorted((s for s in waiting if needs(s, list(by_stem)) <= done_ok), key=lambda s: -known.get(s, 60.0))
            while ready and len(running) < jobs:
                stem = ready.pop(0); waiting.discard(stem)
                print(f"  start  {stem}", flush=True)
                running[pool.submit(run, stem)] = stem
            if not running:
                if waiting: raise RuntimeError(f"cannot order the notebooks {sorted(waiting)}: circular AFTER")
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                stem = running.pop(f)
                results[stem] = f.result()
                print(f"  {results[stem][1]:7.1f} s  {stem} ({results[stem][0]})", flush=True)
    known.update({s: round(t, 1) for s, (st, t) in results.items() if st == "ok"})
    if env.get("INVGEN_PROFILE", "docs") == "docs": TIMES.write_text(json.dumps(dict(sorted(known.items())), indent=1) + "\n")
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebooks", nargs="*", type=Path)
    ap.add_argument("--jobs", "-j", type=int, default=int(os.environ.get("JOBS") or os.cpu_count() or 1))
    ap.add_argument("--single", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.single: execute(a.single); return
    if not a.notebooks: ap.error("expected at least one notebook")
    if a.jobs < 1: ap.error(f"argument --jobs: expected at least 1, received {a.jobs}")
    # the kernels inherit this environment: a non-inline backend (the Makefile exports Agg for the tests) would
    # draw every figure off screen and the committed notebooks would carry none; one thread per kernel
    env = os.environ | {"MPLBACKEND": "module://matplotlib_inline.backend_inline", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    profile = env.get("INVGEN_PROFILE", "docs")
    print(f"executing {len(a.notebooks)} notebooks, {a.jobs} at a time, one thread each ({profile} profile)", flush=True)
    start = time.time()
    results = schedule(list(a.notebooks), a.jobs, env)
    wall = time.time() - start
    subprocess.run([str(Path(sys.executable).parent / "nbdev_clean")], check=True, cwd=ROOT)
    print(f"\n{'seconds':>9}  notebook")
    for stem, (status, t) in sorted(results.items()):
        print(f"{t:9.1f}  {stem}" + ("" if status == "ok" else f"  {status}"))
    serial = sum(t for _, t in results.values())
    print(f"{wall:9.1f}  total wall time, {a.jobs} at a time (the notebooks took {serial:.1f} s together: {serial / max(wall, 1e-9):.2f}x)")
    if any(st != "ok" for st, _ in results.values()): sys.exit(1)


if __name__ == "__main__":
    main()
