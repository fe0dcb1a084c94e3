"""Fail when nbdev_export, nbdev_clean or the README generator would change the working tree.

The state of the tree (diff + untracked files) is compared before and after running them, so the
check is right both in a clean clone (CI) and in a working copy with uncommitted edits.
"""
import hashlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WATCH = ["invgen_lit", "nbs", "README.md"]


def tree_state() -> str:
    diff = subprocess.run(["git", "diff", "--no-color", "--", *WATCH], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    untracked = subprocess.run(["git", "ls-files", "--others", "--exclude-standard", "--", *WATCH], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout
    contents = "".join((ROOT / f).read_text(errors="replace") for f in untracked.split())
    return hashlib.sha256((diff + untracked + contents).encode()).hexdigest()


def main():
    before = tree_state()
    snapshot = subprocess.run(["git", "stash", "create"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    for cmd in ([str(BIN / "nbdev_export")], [str(BIN / "nbdev_clean")], [sys.executable, "tools/make_readme.py"]):
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    if tree_state() != before:
        ref = snapshot or "HEAD"
        print("out of sync: nbdev_export / nbdev_clean / make_readme changed these files (run `make sync` and commit):")
        subprocess.run(["git", "diff", "--stat", ref, "--", *WATCH], cwd=ROOT)
        sys.exit(1)
    print("in sync: notebooks, library and README agree")


if __name__ == "__main__":
    main()
