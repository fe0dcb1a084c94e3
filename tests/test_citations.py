"""The package cites its source papers by author and year. Nothing it ships (notebooks with their outputs, the library,
the README, the documentation source) may cite them by a number, by the name of a local text file, or name a planning
document or a tracker entry. The patterns are structural, so this file names none of them itself."""
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "a paper cited by number": re.compile(r"\b[A-Za-z]+[ _-]00\d\b|\(00\d\)"),
    "a local text file as a source": re.compile(r"\b\d{3}_[0-9a-f]{16}(\.txt)?\b"),
    "a planning document (an upper-case Markdown file other than the README)": re.compile(r"\b(?!README\.)[A-Z][A-Z_]{3,}\.md\b"),
    "a tracker entry": re.compile(r"\bissues? #?\d+\b", re.I),
}


def shipped_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "nbs", "invgen_lit", "README.md", "CONTRIBUTING.md", "docs"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.split()
    return [ROOT / f for f in out if (ROOT / f).is_file() and not f.endswith((".png", ".jpg", ".pt"))]


def test_no_numbered_sources_or_internal_names_ship():
    hits = []
    for f in shipped_files():
        text = f.read_text(encoding="utf-8", errors="ignore")
        for what, pattern in FORBIDDEN.items():
            hits += [f"{f.relative_to(ROOT)}: {what}: {m.group(0)!r}" for m in pattern.finditer(text)]
    assert hits == [], f"{len(hits)} hits, first: {hits[:5]}"


def test_the_patterns_catch_what_they_are_for():
    # the bad examples are assembled at run time, so that this file holds none of them as text
    bad = {"a paper cited by number": "as in paper " + "0" * 2 + "9, Sec. 3",
           "a local text file as a source": "see " + "9" * 3 + "_" + "f" * 16 + ".txt",
           "a planning document (an upper-case Markdown file other than the README)": "the settings in `" + "SOME" + "_NOTES.md`",
           "a tracker entry": "fixed in " + "issue" + " 12"}
    for what, text in bad.items(): assert FORBIDDEN[what].search(text), what
    for good in ("Cho 2025, Sec. 3.2", "see README.md", "seed 0", "steps=1000", "torch.float32", "MAX_BLOCKS = 8"):
        assert not any(p.search(good) for p in FORBIDDEN.values()), good


def test_the_references_name_the_five_works():
    readme = (ROOT / "README.md").read_text()
    refs = readme[readme.index("## References"):]
    for short, title in [("Lee 2021", "Invertible Tabular GANs"), ("Ren 2020", "Implicit Likelihoods of GANs"),
                         ("Kilcher 2017", "Generator Reversal"), ("Xu 2022a", "Graph Prediction"),
                         ("Xu 2022b", "JKO Scheme"), ("Cho 2025", "PhD thesis")]:
        assert short in refs and title in refs, short
