"""pytest configuration shared by the notebook run (nbval) and tests/.

* Cells flagged with one of settings.ini's `tst_flags` (`#| slow`, `#| gpu`) are skipped unless the
  flag is listed in INVGEN_TEST_FLAGS (a `gpu` cell also runs when CUDA is present).
* The terminal summary prints the time each notebook took, so one that outgrows the smoke budget shows.
* Under pytest-xdist (`make test` runs JOBS workers with `--dist loadfile`: each notebook, and each test file with its
  per-module fixtures, stays on one worker) the items of the files that launch `torchrun` take a lock, so that no two
  process groups start at once on one machine (two at once made a gloo rank abort).
"""
import configparser
import contextlib
import os
import tempfile
import re
import time
from collections import defaultdict
from pathlib import Path

import pytest

_cfg = configparser.ConfigParser(delimiters=["="])
_cfg.read(Path(__file__).parent / "settings.ini")
TST_FLAGS = _cfg["DEFAULT"].get("tst_flags", "").split()
_nb_time = defaultdict(float)
TORCHRUN = {"60_images.ipynb", "90_cli.ipynb", "test_cli.py", "test_images.py"}   # files that start process groups


def _cuda() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_configure(config):
    config.addinivalue_line("markers", "claim: reproduces a paper's claim at the docs budget (minutes; CI runs it)")


def pytest_collection_modifyitems(config, items):
    enabled = set(os.environ.get("INVGEN_TEST_FLAGS", "").split())
    if _cuda(): enabled.add("gpu")
    for item in items:
        cell = getattr(item, "cell", None)
        if cell is None: continue
        # nbdev_clean blanks execution counts but keeps the docs-profile outputs; nbval reads "outputs without a count"
        # as a broken reference. Under --nbval-lax no output is compared anyway, so the stored ones are dropped here.
        if cell.get("execution_count") is None and cell.get("outputs"): cell["outputs"] = []
        for flag in TST_FLAGS:
            if flag not in enabled and re.search(rf"^\s*#\|\s*{flag}\b", cell.source, re.M):
                item.add_marker(pytest.mark.skip(reason=f"'#| {flag}' cell (set INVGEN_TEST_FLAGS={flag} to run it)"))


@contextlib.contextmanager
def _torchrun_lock():
    "An exclusive lock shared by every pytest-xdist worker of this machine (no-op where fcntl is missing)."
    try: import fcntl
    except ImportError: yield; return
    with open(Path(tempfile.gettempdir()) / "invgen_lit_torchrun.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try: yield
        finally: fcntl.flock(f, fcntl.LOCK_UN)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if Path(str(item.fspath)).name in TORCHRUN:
        with _torchrun_lock(): yield
    else: yield


def pytest_runtest_logreport(report):
    if report.nodeid.endswith(".ipynb") or ".ipynb::" in report.nodeid:
        _nb_time[report.nodeid.split("::")[0]] += report.duration


def pytest_terminal_summary(terminalreporter):
    if not _nb_time: return
    terminalreporter.section("time per notebook")
    for nb, t in sorted(_nb_time.items()):
        terminalreporter.write_line(f"{t:8.1f} s  {nb}")
    terminalreporter.write_line(f"{sum(_nb_time.values()):8.1f} s  total")
