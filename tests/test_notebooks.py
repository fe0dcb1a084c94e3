"""The committed notebooks are what readers see: executed in the `docs` profile, with their figures, without errors."""
import json
import re
from pathlib import Path

import pytest

from invgen_lit.core import collect_claims

NBS = Path(__file__).resolve().parents[1] / "nbs"
NOTEBOOKS = sorted(NBS.glob("*.ipynb"))
_DRAWS = re.compile(r"plt\.subplots\(|plt\.figure\(")
_EXPORTED = re.compile(r"^\s*#\|\s*export", re.M)  # library code that draws when called, not when defined
_NOT_RUN_HERE = re.compile(r"^\s*#\|\s*(gpu|eval:\s*false)\b", re.M)


def _cells(path):
    return [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]


def _source(cell): return "".join(cell["source"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_with_outputs_and_no_errors(path):
    cells = [c for c in _cells(path) if _source(c).strip() and not _NOT_RUN_HERE.search(_source(c))]
    errors = [_source(c)[:60] for c in cells if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert not errors, f"{path.name}: cells committed with an error output: {errors}"
    assert any(c.get("outputs") for c in cells), f"{path.name}: committed without outputs (run `make run`)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_figure_is_in_the_outputs(path):
    "A demonstration cell that draws a figure carries it as a PNG (a non-inline matplotlib backend would drop it silently)."
    demos = [c for c in _cells(path) if not _NOT_RUN_HERE.search(_source(c)) and not _EXPORTED.search(_source(c))]
    missing = [_source(c)[:60] for c in demos if _DRAWS.search(_source(c))
               and not any("image/png" in o.get("data", {}) for o in c.get("outputs", []))]
    assert not missing, f"{path.name}: cells that draw but carry no figure: {missing}"


def test_claims_come_from_the_docs_profile():
    claims = collect_claims(NBS)
    assert len(claims), "no claims rows found in the committed notebooks"
    assert set(claims.profile) == {"docs"}, claims[claims.profile != "docs"][["notebook", "claim", "profile"]]
