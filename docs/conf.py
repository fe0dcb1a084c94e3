"""Sphinx configuration of the invgen_lit site: `make docs` (tools/build_docs.py) stages the sources in
docs/_build/src (the executed notebooks, the API pages, the claims page) and builds docs/_build/html with this file.
Nothing is executed (MyST-NB shows the notebooks' saved outputs) and nothing is loaded from the network."""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import invgen_lit  # noqa: E402

project = "invgen_lit"
author = "the invgen_lit authors"
copyright = "2026, the invgen_lit authors"
release = version = invgen_lit.__version__

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.autosummary", "sphinx.ext.viewcode", "sphinx.ext.napoleon",
              "sphinx.ext.mathjax"]
root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
suppress_warnings = ["mystnb.unknown_mime_type", "myst.header"]   # widget and HTML outputs; notebooks may skip heading levels

# the notebooks: shown with their saved outputs (`make run` executes them), never executed here
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
myst_update_mathjax = False          # MathJax 2 below is configured by mathjax2_config; no MathJax-3 options object

# the API reference: signatures and docstrings of every public object, with links to the source
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True, "member-order": "bysource",
                           "inherited-members": "Module"}   # a model page shows fit, save, load... (not torch.nn.Module's)
autodoc_typehints = "signature"
autodoc_preserve_defaults = False
autosummary_generate = False

# the site
html_theme = "sphinx_book_theme"
html_title = f"invgen_lit {release}"
html_static_path = [os.environ.get("INVGEN_DOCS_STATIC", str(ROOT / "docs" / "_build" / "src" / "_static"))]   # MathJax, staged by the build
html_theme_options = {"show_toc_level": 2, "navigation_with_keys": True, "use_download_button": False,
                      "home_page_in_toc": True, "show_navbar_depth": 1}
html_show_sourcelink = False
html_copy_source = False

# MathJax 2.7 from a local copy (jupyter_server_mathjax), so that the equations render offline
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"   # the one combined configuration that build ships
mathjax2_config = {"tex2jax": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]], "processEscapes": True,
                               "processEnvironments": True},
                   "HTML-CSS": {"availableFonts": [], "imageFont": None, "preferredFont": None, "webFont": "STIX-Web"},
                   "messageStyle": "none", "showMathMenu": False}


def plain_docstring(app, what, name, obj, options, lines):
    """The package's docstrings are plain text with `code` in single backticks: show that as code, and `*`, `|`, `_` and
    backslashes outside it as themselves (reStructuredText would read them as markup)."""
    import re
    for i, line in enumerate(lines):
        parts = re.split(r"(`[^`]+`)", line)
        lines[i] = "".join(f"``{p[1:-1]}``" if len(p) > 2 and p[0] == p[-1] == "`" else re.sub(r"([*|_\\])", r"\\\1", p)
                           for p in parts)


def setup(app):
    app.connect("autodoc-process-docstring", plain_docstring)
