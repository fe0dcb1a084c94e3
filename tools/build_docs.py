"""Build the documentation site from the executed notebooks, offline: `python tools/build_docs.py --out docs`.

Two engines:

* `quarto`: when the `quarto` command is on the PATH, run nbdev's own `nbdev_docs` and copy its output
  to `--out` (the site nbdev users know).
* `nbconvert` (these machines: Quarto cannot be installed): render every `nbs/*.ipynb` (sorted; names
  starting with `_` or `.` are skipped, as nbdev does) to one HTML page with nbconvert's `lab` template.
  `index.ipynb` becomes `index.html` and comes first. Each page gets

  - a sidebar listing every page by its title (the first markdown cell's `# Title`); the index page also
    lists the `> summary` line under each title;
  - previous / next links;
  - links between notebooks rewritten (`03_metrics.ipynb#Some-heading` -> `03_metrics.html#Some-heading`);
    an anchor written quarto-style (`#some-heading`) is matched to nbconvert's heading id
    (`#Some-heading`), and a link whose page or anchor does not exist is reported on stderr;
  - nbdev directive lines (`#| export`, ...) removed from the code; cells flagged `#| hide` or
    `#| include: false` dropped; `#| echo: false` hides the code and `#| output: false` the outputs;
  - figures embedded as `data:` URIs (outputs, and images that markdown cells reference);
  - equations typeset by the MathJax 2.7 shipped with `jupyter_server_mathjax`, copied to `<out>/mathjax/`.

  Nothing is loaded from the network: the template's require.js, mermaid and widget CDN links are
  removed and the CSS is written once to `<out>/static/`. Pages of notebooks that no longer exist are
  deleted from `<out>`.

`nbdev.showdoc` output is Markdown and is shown as it is. `--engine nbconvert` forces the offline builder
(the tests use it), `--nbs` picks another notebook folder.
"""
from __future__ import annotations

import argparse
import html
import logging
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------------------------------
# Notebook -> page data
# ----------------------------------------------------------------------------------------------------

_DIRECTIVE = re.compile(r"^[ \t]*#\|[ \t]*([\w-]+)(?:[ \t]*:[ \t]*(\S+))?.*$\n?", re.M)
# outputs that need JavaScript from a CDN (widgets) are shown by their text/plain fallback instead
_DROP_MIME = ("application/vnd.jupyter.widget-view+json", "application/vnd.jupyter.widget-state+json")


@dataclass
class Page:
    "One notebook of the site: where it comes from, where it goes, and what the navigation shows."
    src: Path
    html_name: str
    title: str
    summary: str


def directives(source: str) -> dict[str, str]:
    "nbdev/quarto directives of a cell: `#| hide` -> {'hide': ''}, `#| echo: false` -> {'echo': 'false'}."
    return {m.group(1).lower(): (m.group(2) or "").lower() for m in _DIRECTIVE.finditer(source)}


def title_and_summary(nb) -> tuple[str, str]:
    "The `# Title` and `> summary` lines of the first markdown cell (the nbdev convention); '' if absent."
    for cell in nb.cells:
        if cell.cell_type != "markdown": continue
        title = re.search(r"^#\s+(.+?)\s*$", cell.source, re.M)
        summary = re.search(r"^>\s*(.+?)\s*$", cell.source, re.M)
        return (title.group(1) if title else ""), (summary.group(1) if summary else "")
    return "", ""


def read_page(path: Path) -> Page:
    "Read a notebook's title and summary; the title falls back to the file name."
    nb = nbformat.read(path, as_version=4)
    title, summary = title_and_summary(nb)
    name = "index.html" if path.stem == "index" else f"{path.stem}.html"
    return Page(path, name, title or path.stem, summary)


def prepare(nb):
    "Apply the nbdev directives to a notebook in place: drop hidden cells, strip directive lines."
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            cells.append(cell); continue
        flags = directives(cell.source)
        if "hide" in flags or flags.get("include") == "false": continue
        cell.source = _DIRECTIVE.sub("", cell.source).strip("\n")
        if flags.get("output") == "false": cell.outputs = []
        for out in cell.get("outputs", []):
            for mime in _DROP_MIME: out.get("data", {}).pop(mime, None)
        if not cell.source.strip() or flags.get("echo") == "false":
            if not cell.get("outputs"): continue  # e.g. a lone `#| default_exp core`
            cell.metadata.setdefault("transient", {})["remove_source"] = True
        cells.append(cell)
    nb.cells = cells
    return nb


# ----------------------------------------------------------------------------------------------------
# Template: nbconvert's `lab` page with a sidebar, local CSS and local MathJax, and no CDN
# ----------------------------------------------------------------------------------------------------

MATHJAX_CONFIG = r"""
<script type="text/x-mathjax-config">
MathJax.Hub.Config({
  tex2jax: {inlineMath: [['$', '$'], ['\\(', '\\)']], displayMath: [['$$', '$$'], ['\\[', '\\]']],
            processEscapes: true, processEnvironments: true},
  TeX: {equationNumbers: {autoNumber: "AMS", useLabelIds: true}},
  // the jupyter_server_mathjax build ships only the STIX-Web fonts
  "HTML-CSS": {availableFonts: [], imageFont: null, preferredFont: null, webFont: "STIX-Web",
               linebreaks: {automatic: true}},
  "fast-preview": {disabled: true},
  displayAlign: "center", messageStyle: "none", showMathMenu: false
});
</script>
"""

SITE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{#- the lab template runs the highlighted code through bleach (a third of the build time); Pygments
    already escapes it -#}
{% block input %}
<div class="jp-CodeMirrorEditor jp-Editor jp-InputArea-editor" data-type="inline">
<div class="cm-editor cm-s-jupyter">
{{ cell.source | highlight_code(metadata=cell.metadata) }}
</div>
</div>
{%- endblock input %}
{% block notebook_css %}
<link rel="stylesheet" href="static/lab.css">
<link rel="stylesheet" href="static/site.css">
{% endblock notebook_css %}
{%- block html_head_js_mathjax -%}
""" + MATHJAX_CONFIG + """<script src="{{ resources.mathjax_url }}"></script>
{%- endblock html_head_js_mathjax -%}
{%- block body_header -%}
<body class="jp-Notebook site" data-jp-theme-light="true" data-jp-theme-name="JupyterLab Light">
{{ resources.site.sidebar }}
<main>
{%- endblock body_header -%}
{% block body_footer %}
{{ resources.site.contents }}
{{ resources.site.pager }}
</main>
</body>
{% endblock body_footer %}
"""

# Layout of the site, plus the small styles the lab template normally inlines.
SITE_CSS = """
* { -webkit-print-color-adjust: exact; }
a.anchor-link { display: none; }
h1:hover a.anchor-link, h2:hover a.anchor-link, h3:hover a.anchor-link, h4:hover a.anchor-link {
  display: inline; margin-left: .3em; color: #999; text-decoration: none; }
.jp-InputArea, .jp-InputArea-editor { overflow: hidden; }
.jp-InputArea-editor .highlight pre, .jp-OutputArea-output pre { overflow-x: auto; }
.jp-OutputArea-output pre { line-height: inherit; font-family: inherit; }
.jp-RenderedText pre { color: var(--jp-content-font-color1); font-size: var(--jp-code-font-size); }
.jp-Collapser, .jp-InputPrompt, .jp-OutputPrompt { display: none; }
.cm-editor.cm-s-jupyter .highlight pre { padding: var(--jp-code-padding) 4px; margin: 0;
  font-family: inherit; font-size: inherit; line-height: inherit; color: inherit; }
body.site { margin: 0; padding: 0; background: #fff; }
.site-nav { position: fixed; top: 0; bottom: 0; left: 0; width: 17rem; overflow-y: auto; box-sizing: border-box;
  padding: 1.2rem 1rem; background: #f6f7f9; border-right: 1px solid #e1e4e8;
  font-family: var(--jp-ui-font-family); font-size: 14px; line-height: 1.4; }
.site-nav .site-name { display: block; font-weight: 700; font-size: 17px; margin-bottom: 1rem; color: #222; }
.site-nav ol { list-style: none; padding: 0; margin: 0; }
.site-nav li { margin: 0 0 .25rem 0; }
.site-nav a { display: block; padding: .3rem .5rem; border-radius: 4px; color: #24292e; text-decoration: none; }
.site-nav a:hover { background: #e8ebef; }
.site-nav a.current { background: #dde6f5; color: #0b4ea2; font-weight: 600; }
body.site > main { margin-left: 17rem; padding: 1.5rem 2.5rem 3rem; max-width: 66rem; box-sizing: border-box; }
.jp-RenderedMarkdown pre { background: #f6f8fa; padding: .6em .8em; border-radius: 4px; overflow-x: auto; }
.jp-RenderedMarkdown blockquote { border-left: 4px solid #c8d3e6; color: #555; margin-left: 0; padding-left: 1em; }
.site-contents { margin-top: 2rem; }
.site-contents ol { padding-left: 1.5rem; }
.site-contents li { margin-bottom: .8rem; font-family: var(--jp-content-font-family); }
.site-contents .summary { display: block; color: #555; }
.site-pager { display: flex; justify-content: space-between; gap: 1rem; margin-top: 3rem;
  padding-top: 1rem; border-top: 1px solid #e1e4e8; font-family: var(--jp-ui-font-family); }
.site-pager a { text-decoration: none; color: #0b4ea2; }
.site-pager .next { margin-left: auto; text-align: right; }
@media (max-width: 900px) {
  .site-nav { position: static; width: auto; border-right: none; border-bottom: 1px solid #e1e4e8; }
  body.site > main { margin-left: 0; padding: 1rem; }
}
"""


def inline_markdown(text: str) -> str:
    "Escape a title or summary for HTML, keeping `code` spans."
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


CURRENT = ' class="current"'


def sidebar(pages: list[Page], current: Page) -> str:
    "The navigation: every page by title, the current one highlighted."
    items = "\n".join(
        f'<li><a href="{p.html_name}"{CURRENT if p is current else ""}>{inline_markdown(p.title)}</a></li>'
        for p in pages)
    home = pages[0]
    return (f'<nav class="site-nav"><a class="site-name" href="{home.html_name}">{inline_markdown(home.title)}</a>\n'
            f'<ol>\n{items}\n</ol></nav>')


def contents(pages: list[Page]) -> str:
    "The table of contents of the index page: title and summary of every other page."
    items = "\n".join(
        f'<li><a href="{p.html_name}">{inline_markdown(p.title)}</a>'
        f'<span class="summary">{inline_markdown(p.summary)}</span></li>' for p in pages[1:])
    return (f'<section class="site-contents jp-RenderedHTMLCommon"><h2 id="Contents">Contents</h2>\n'
            f'<ol>\n{items}\n</ol></section>')


def pager(pages: list[Page], i: int) -> str:
    "Previous / next links."
    prev = (f'<a class="prev" href="{pages[i - 1].html_name}">&larr; {inline_markdown(pages[i - 1].title)}</a>'
            if i > 0 else "")
    nxt = (f'<a class="next" href="{pages[i + 1].html_name}">{inline_markdown(pages[i + 1].title)} &rarr;</a>'
           if i + 1 < len(pages) else "")
    return f'<nav class="site-pager">{prev}{nxt}</nav>'


# ----------------------------------------------------------------------------------------------------
# Links between pages
# ----------------------------------------------------------------------------------------------------

# a relative href (no scheme, not a bare #anchor) to a notebook, with an optional #anchor
_NB_HREF = re.compile(r'href="(?![a-zA-Z][\w+.-]*:)([^"#]*?)\.ipynb(#[^"]*)?"')
_PAGE_HREF = re.compile(r'href="(?![a-zA-Z][\w+.-]*:)([^"#/]+\.html)(?:#([^"]*))?"')
_ID = re.compile(r'\sid="([^"]+)"')


def rewrite_notebook_links(page_html: str) -> str:
    "`03_metrics.ipynb#x` (any folder) -> `03_metrics.html#x`; `index.ipynb` -> `index.html`."
    return _NB_HREF.sub(lambda m: f'href="{Path(m.group(1)).name}.html{m.group(2) or ""}"', page_html)


def slug(anchor: str) -> str:
    "Compare anchors as quarto and nbconvert write them: lower case, runs of other characters as '-'."
    return re.sub(r"[^0-9a-z]+", "-", html.unescape(anchor).lower()).strip("-")


def fix_anchors(rendered: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    "Point anchors at the target page's real ids (matching by `slug`); list links that stay broken."
    ids = {name: set(_ID.findall(text)) for name, text in rendered.items()}
    by_slug = {name: {slug(i): i for i in s} for name, s in ids.items()}
    problems: list[str] = []

    def fix(name: str, m: re.Match) -> str:
        target, anchor = m.group(1), m.group(2)
        if target not in rendered:
            problems.append(f"{name}: link to missing page {target}")
            return m.group(0)
        if not anchor or anchor in ids[target]: return m.group(0)
        real = by_slug[target].get(slug(anchor))
        if real is None:
            problems.append(f"{name}: link to missing anchor {target}#{anchor}")
            return m.group(0)
        return f'href="{target}#{real}"'

    out = {name: _PAGE_HREF.sub(lambda m, n=name: fix(n, m), text) for name, text in rendered.items()}
    return out, problems


# ----------------------------------------------------------------------------------------------------
# The builders
# ----------------------------------------------------------------------------------------------------

def mathjax_dir() -> Path:
    "The MathJax 2.7 tree of `jupyter_server_mathjax`."
    import jupyter_server_mathjax
    path = Path(jupyter_server_mathjax.__file__).parent / "static"
    if not (path / "MathJax.js").exists(): raise FileNotFoundError(f"MathJax.js not found in {path}")
    return path


def lab_css() -> str:
    "The CSS of nbconvert's `lab` template (light theme), to write once for all pages."
    from jupyter_core.paths import jupyter_path
    for folder in jupyter_path("nbconvert", "templates"):
        static = Path(folder) / "lab" / "static"
        if (static / "index.css").exists():
            return "\n".join((static / f).read_text(encoding="utf-8") for f in ("index.css", "theme-light.css"))
    raise FileNotFoundError("nbconvert's lab template (lab/static/index.css) not found")


def make_exporter():
    "nbconvert's HTMLExporter on the `lab` template, with the site template on top."
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter
    exporter = HTMLExporter(extra_loaders=[DictLoader({"invgen_site.html.j2": SITE_TEMPLATE})],
                            template_name="lab", embed_images=True,
                            mathjax_url="mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full")
    exporter.template_file = "invgen_site.html.j2"
    exporter.log.setLevel(logging.ERROR)  # not one "alt text missing" warning per matplotlib figure
    return exporter


def notebooks(nbs: Path) -> list[Path]:
    "The notebooks of the site: `index.ipynb` first, then the others in sorted order."
    paths = sorted(p for p in nbs.glob("*.ipynb") if not p.name.startswith(("_", ".")))
    return sorted(paths, key=lambda p: p.stem != "index")


def build_nbconvert(nbs: Path, out: Path) -> list[Path]:
    "Render the notebooks of `nbs` to `out` with nbconvert; returns the pages written."
    paths = notebooks(nbs)
    if not paths: raise FileNotFoundError(f"no notebooks in {nbs}")
    pages = [read_page(p) for p in paths]
    out.mkdir(parents=True, exist_ok=True)
    # assets: MathJax, the lab CSS once for all pages, the site layout
    if (out / "mathjax").exists(): shutil.rmtree(out / "mathjax")
    shutil.copytree(mathjax_dir(), out / "mathjax")
    (out / "static").mkdir(exist_ok=True)
    (out / "static" / "lab.css").write_text(lab_css(), encoding="utf-8")
    (out / "static" / "site.css").write_text(SITE_CSS, encoding="utf-8")

    exporter = make_exporter()
    rendered = {}
    for i, page in enumerate(pages):
        nb = prepare(nbformat.read(page.src, as_version=4))
        nb.metadata["title"] = page.title
        site = {"sidebar": sidebar(pages, page), "pager": pager(pages, i),
                "contents": contents(pages) if i == 0 and page.src.stem == "index" else ""}
        body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"path": str(page.src.parent)}, "site": site})
        rendered[page.html_name] = rewrite_notebook_links(body)
    rendered, problems = fix_anchors(rendered)
    for p in problems: print(f"build_docs: warning: {p}", file=sys.stderr)
    for stale in set(p.name for p in out.glob("*.html")) - set(rendered): (out / stale).unlink()  # renamed notebooks
    for name, text in rendered.items(): (out / name).write_text(text, encoding="utf-8")
    return [out / p.html_name for p in pages]


def build_quarto(out: Path) -> list[Path]:
    "Run `nbdev_docs` (needs quarto) and copy its output folder (settings.ini `doc_path`) to `out`."
    subprocess.run([str(Path(sys.executable).with_name("nbdev_docs"))], cwd=ROOT, check=True)
    from nbdev.config import get_config
    built = Path(get_config().doc_path)
    if built.resolve() != out.resolve(): shutil.copytree(built, out, dirs_exist_ok=True)
    return sorted(out.glob("*.html"))


def build(out: Path, nbs: Path = ROOT / "nbs", engine: str = "auto") -> list[Path]:
    "Build the site into `out`; engine `auto` uses quarto when it is on the PATH, else nbconvert."
    if engine not in ("auto", "quarto", "nbconvert"):
        raise ValueError(f"engine: expected 'auto', 'quarto' or 'nbconvert', got {engine!r}")
    if engine == "quarto" or (engine == "auto" and shutil.which("quarto")): return build_quarto(Path(out))
    return build_nbconvert(Path(nbs), Path(out))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs", help="output folder (default: docs/)")
    ap.add_argument("--nbs", type=Path, default=ROOT / "nbs", help="notebook folder (default: nbs/)")
    ap.add_argument("--engine", choices=("auto", "quarto", "nbconvert"), default="auto")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    pages = build(args.out, args.nbs, args.engine)
    print(f"build_docs: {len(pages)} pages in {args.out} ({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
