"""The package cites its source papers by author and year: no numbered source, source file name or internal planning
name in anything it ships (notebooks with their outputs, the library, the README, the documentation source)."""
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = re.compile(r"seed[ _-]?00\d|seeds/|\b\d{3}_[0-9a-f]{16}\b|ANCHOR_FACTS|LECTURE_SHAPE|DESIGN\.md|EVIDENCE\.md|\bissues? #?\d+\b",
                       re.IGNORECASE)


def shipped_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "nbs", "invgen_lit", "README.md", "docs"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.split()
    return [ROOT / f for f in out if (ROOT / f).is_file() and not f.endswith((".png", ".jpg", ".pt"))]


def test_no_numbered_sources_or_internal_names_ship():
    hits = []
    for f in shipped_files():
        for m in FORBIDDEN.finditer(f.read_text(encoding="utf-8", errors="ignore")):
            hits.append(f"{f.relative_to(ROOT)}: {m.group(0)!r}")
    assert hits == [], f"{len(hits)} hits, first: {hits[:5]}"


def test_the_references_name_the_five_works():
    readme = (ROOT / "README.md").read_text()
    refs = readme[readme.index("## References"):]
    for short, title in [("Lee 2021", "Invertible Tabular GANs"), ("Ren 2020", "Implicit Likelihoods of GANs"),
                         ("Kilcher 2017", "Generator Reversal"), ("Xu 2022a", "Graph Prediction"),
                         ("Xu 2022b", "JKO Scheme"), ("Cho 2025", "PhD thesis")]:
        assert short in refs and title in refs, short
