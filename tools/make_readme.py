"""Write README.md from nbs/index.ipynb (nbdev_readme needs quarto, which these machines lack).

Markdown cells are copied (links to notebooks made relative to the repository root); code cells without `#| hide` are shown as Python blocks with their text or
Markdown outputs; nbdev directives (`#| ...`) are dropped. Images stay in the notebook and the site.
"""
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
_DIRECTIVE = re.compile(r"^\s*#\|.*$\n?", re.M)


def cell_markdown(cell) -> str:
    if cell.cell_type == "markdown": return cell.source.strip()
    if cell.cell_type != "code" or re.search(r"^\s*#\|\s*(hide|exporti?)\b", cell.source, re.M): return ""
    code = _DIRECTIVE.sub("", cell.source).strip()
    echo = not re.search(r"^\s*#\|\s*echo:\s*false", cell.source, re.M)
    parts = [f"```python\n{code}\n```"] if code and echo else []
    for out in cell.get("outputs", []):
        data = out.get("data", {})
        if "text/markdown" in data: parts.append(data["text/markdown"].strip())
        elif out.get("output_type") == "stream": parts.append(f"```\n{out['text'].rstrip()}\n```")
        elif "text/plain" in data and "image/png" not in data: parts.append(f"```\n{data['text/plain'].rstrip()}\n```")
    return "\n\n".join(parts)


def render(nb_path: Path) -> str:
    nb = nbformat.read(nb_path, as_version=4)
    body = "\n\n".join(s for s in map(cell_markdown, nb.cells) if s)
    # links between notebooks are relative to nbs/; the README sits one folder up
    body = re.sub(r"\]\((?!nbs/|[a-z]+:)([\w.-]+\.ipynb(?:#[\w.-]*)?)\)", r"](nbs/\1)", body)
    return ("<!-- generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file -->\n\n"
            + body + "\n")


if __name__ == "__main__":
    src = ROOT / "nbs" / "index.ipynb"
    if not src.exists(): sys.exit(f"{src} not found")
    (ROOT / "README.md").write_text(render(src), encoding="utf-8")
    print("wrote README.md")
