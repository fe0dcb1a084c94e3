"""Build the documentation site with Sphinx, offline: `python tools/build_docs.py` (what `make docs` runs).

The sources are staged in docs/_build/src, then `sphinx-build` (configuration: docs/conf.py) writes docs/_build/html:

* every committed notebook of nbs/, shown with its saved outputs by MyST-NB (never executed), with the nbdev directive
  lines (`#| export`, ...) removed, `#| hide` cells dropped, `#| echo: false` / `#| output: false` honoured, alt text
  on every figure (the figure's title in the code, else the sentence that introduces it), and a link to the API page
  of the module it exports;
* the landing page (nbs/index.ipynb without its Results section), the claims page (that section, from the index's
  saved output), docs/references.md, and one API page per module (autodoc: signatures, docstrings, links to the
  source), each linking back to the notebook that teaches it;
* MathJax 2.7 copied from `jupyter_server_mathjax`, so that the equations render with no network.

Warnings about broken internal references fail the build (exit 1); other warnings are printed.
"""
from __future__ import annotations

import argparse
import copy
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
DIRECTIVE = re.compile(r"^\s*#\|.*$\n?", re.M)
REFERENCE_WARNINGS = re.compile(r"undefined label|unknown document|reference target not found|xref_missing|"
                                r"nonexisting document|local id not found|toc\.not_readable|not found in document", re.I)


def module_of(nb) -> str | None:
    "The module a notebook exports (`#| default_exp NAME`), if any."
    for c in nb.cells:
        m = re.search(r"#\|\s*default_exp\s+([\w.]+)", c.source) if c.cell_type == "code" else None
        if m: return m.group(1)
    return None


def _plain(text: str) -> str:
    "Markdown/LaTeX reduced to plain words for alt text."
    text = re.sub(r"\$+([^$]*)\$+", r"\1", text)
    text = re.sub(r"[`*_#>|\[\]]", "", re.sub(r"\]\([^)]*\)", "]", text))
    return " ".join(text.split())


def _clean_title(title: str) -> str:
    "A title from the code as plain words: f-string fields as '...', escapes as spaces; empty if fewer than two words remain."
    t = re.sub(r"\{[^{}]*\}", "...", title)
    t = re.sub(r"\{.*$", "...", t).replace("\\n", " ").strip(" ;:,")
    return t if len(re.findall(r"[A-Za-z]{3,}", t)) >= 2 else ""


def figure_alt(cell, intro: str) -> str:
    "Alt text of a figure cell: the titles its code sets, else the first sentence of the markdown before it."
    titles = re.findall(r"(?:set_title|suptitle|title)\s*[(=]\s*f?[\"']([^\"']{4,})[\"']", cell.source)
    titles = [t for t in map(_clean_title, titles) if t]
    if titles: return "Figure: " + "; ".join(dict.fromkeys(titles))[:240]
    first = intro.strip().split("\n\n")[0]                                      # its first paragraph (or heading)
    text = re.sub(r"^\s*(?:\d+(?:\.\d+)*\.?\s+)", "", _plain(first))        # without a numbered heading's number
    sentence = re.split(r"(?<=[.:!?])\s+(?=[A-Z(])", text, maxsplit=1)[0] if text.strip() else ""
    return ("Figure: " + sentence)[:240] if len(sentence) > 3 else "Figure of this section's result"


def stage_notebook(nb, module: str | None):
    "A copy of `nb` for the site: directives stripped, hidden cells dropped, figures with alt text, a link to its API page."
    nb = copy.deepcopy(nb)
    cells, intro = [], ""
    for c in nb.cells:
        if c.cell_type == "markdown":
            intro = c.source
            c.source = re.sub(r"\]\(([\w.-]+\.ipynb)#([^)\s]+)\)", lambda m: f"]({m.group(1)}#{_slug(m.group(2))})", c.source)
            cells.append(c); continue
        if c.cell_type != "code": cells.append(c); continue
        flags = DIRECTIVE.findall(c.source)
        flag = " ".join(flags)
        if re.search(r"#\|\s*(hide|include:\s*false)\b", flag) or re.search(r"#\|\s*default_exp", flag): continue
        c.source = DIRECTIVE.sub("", c.source).strip()
        tags = set(c.metadata.get("tags", []))
        if re.search(r"#\|\s*echo:\s*false", flag): tags.add("remove-input")
        if re.search(r"#\|\s*output:\s*false", flag): tags.add("remove-output")
        if not c.source and not c.get("outputs"): continue
        if not c.source: tags.add("remove-input")
        c.metadata["tags"] = sorted(tags)
        if any("image/png" in o.get("data", {}) for o in c.get("outputs", [])):
            c.metadata.setdefault("mystnb", {})["image"] = {"alt": figure_alt(c, intro)}
        cells.append(c)
    nb.cells = cells
    if module and nb.cells and nb.cells[0].cell_type == "markdown":
        nb.cells[0].source += f"\n\nAPI reference of this notebook's module: [`invgen_lit.{module}`](api/{module}.md)."
    return nb


def _slug(anchor: str) -> str:
    "The anchor MyST gives a heading: lower case, punctuation dropped, spaces and underscores as hyphens."
    a = anchor.lower().replace("_", "-")
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "", a)).strip("-")


def split_landing(nb):
    "The landing page without its Results section, and that section's markdown (text and saved outputs)."
    keep, results, inside = [], [], False
    for c in nb.cells:
        if c.cell_type == "markdown" and c.source.startswith("## "): inside = c.source.startswith("## Results")
        if not inside: keep.append(c); continue
        if c.cell_type == "markdown": results.append(c.source)
        for o in c.get("outputs", []):
            if "text/markdown" in o.get("data", {}): results.append(o["data"]["text/markdown"])
    nb = copy.deepcopy(nb); nb.cells = keep
    return nb, "\n\n".join(results)


def stage(src: Path):
    "Write every source of the site into `src`."
    if src.exists(): shutil.rmtree(src)
    (src / "api").mkdir(parents=True)
    notebooks, modules = [], {}
    for p in sorted((ROOT / "nbs").glob("*.ipynb")):
        if p.name.startswith(("_", ".")) or p.stem == "index": continue
        nb = nbformat.read(p, as_version=4)
        mod = module_of(nb)
        if mod: modules[mod] = p.stem
        nbformat.write(stage_notebook(nb, mod), src / p.name)
        notebooks.append(p.stem)
    landing, results = split_landing(nbformat.read(ROOT / "nbs" / "index.ipynb", as_version=4))
    landing = stage_notebook(landing, None)
    landing.cells.append(nbformat.v4.new_markdown_cell(
        "The claims each notebook reproduces, with their numbers and verdicts, are on [the claims page](claims.md); the full "
        "references are on [the references page](references.md); every function is in [the API reference](api/index.md).\n\n"
        "```{toctree}\n:hidden:\n:maxdepth: 1\n:caption: Tutorials\n\n" + "\n".join(notebooks) + "\n```\n\n"
        "```{toctree}\n:hidden:\n:maxdepth: 1\n:caption: Reference\n\nclaims\napi/index\nreferences\n```"))
    nbformat.write(landing, src / "index.ipynb")
    (src / "claims.md").write_text("# Claims\n\n" + re.sub(r"^## Results\s*", "", results) + "\n", encoding="utf-8")
    shutil.copy(ROOT / "docs" / "references.md", src / "references.md")
    import invgen_lit
    names = sorted(m.name for m in pkgutil.iter_modules(invgen_lit.__path__) if not m.name.startswith("_"))
    (src / "api" / "index.md").write_text("# API reference\n\nOne page per module of `invgen_lit`, each generated from the "
                                          "docstrings, with links to the source and to the notebook that teaches it.\n\n"
                                          "```{toctree}\n:maxdepth: 1\n\n" + "\n".join(names) + "\n```\n", encoding="utf-8")
    for name in names:
        nbname = modules.get(name)
        taught = f"Taught in the notebook [{nbname}](../{nbname}.ipynb).\n\n" if nbname else ""
        (src / "api" / f"{name}.md").write_text(f"# invgen_lit.{name}\n\n{taught}```{{eval-rst}}\n.. automodule:: invgen_lit.{name}\n"
                                                "   :members:\n```\n", encoding="utf-8")
    static = src / "_static"
    shutil.copytree(Path(__import__("jupyter_server_mathjax").__file__).parent / "static", static / "mathjax")
    return len(notebooks) + 1


def build(out: Path) -> int:
    "Stage and build; return the exit status (1 on a broken internal reference)."
    t0 = time.perf_counter()
    src, html = out / "src", out / "html"
    n = stage(src)
    log = out / "warnings.txt"
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-j", "auto", "-c", str(ROOT / "docs"), "-d", str(out / "doctrees"),
           "-w", str(log), str(src), str(html)]
    r = subprocess.run(cmd, cwd=ROOT, env=os.environ | {"INVGEN_DOCS_STATIC": str(src / "_static")})
    warnings = log.read_text().splitlines() if log.exists() else []
    broken = [w for w in warnings if REFERENCE_WARNINGS.search(w)]
    for w in warnings: print(w, file=sys.stderr)
    pages = len(list(html.rglob("*.html")))
    size = sum(f.stat().st_size for f in html.rglob("*") if f.is_file()) / 2**20
    print(f"docs: {pages} pages ({n} notebooks), {size:.0f} MB, {len(warnings)} warnings, {time.perf_counter() - t0:.0f} s: "
          f"file://{html / 'index.html'}")
    if broken: print(f"docs: {len(broken)} broken internal references (above)", file=sys.stderr)
    return 1 if r.returncode or broken else 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "_build", help="build folder (default docs/_build)")
    sys.exit(build(ap.parse_args().out))
