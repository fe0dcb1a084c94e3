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


REVISED = ("00_core", "03_metrics", "04_gan", "05_density", "10_reversal", "20_invgan", "30_neural_ode", "31_itgan", "40_iresnet", "41_ignn", "42_jko")


def test_claims_carry_a_verdict_and_comparisons_rest_on_seeds():
    "Every row has holds / fails / inconclusive; a row of the revised notebooks that compares methods rests on 3 or more seeds; a row that does not hold says why."
    claims = collect_claims(NBS)
    assert set(claims.verdict) <= {"holds", "fails", "inconclusive"}, set(claims.verdict)
    revised = claims[claims.notebook.isin(REVISED)]
    comparing = revised[revised["values"].map(lambda v: isinstance(v, dict) and len(v) > 1)]
    assert (comparing["n"] >= 3).all(), comparing[comparing["n"] < 3][["notebook", "claim", "n"]]
    single = revised[revised["values"].map(lambda v: not isinstance(v, dict))]
    assert single.empty, f"rows of the single-run kind left in the revised notebooks: {single[['notebook', 'claim']].values.tolist()}"
    undiagnosed = revised[(revised.verdict != "holds") & (revised.diagnosis.fillna("") == "")]
    assert undiagnosed.empty, undiagnosed[["notebook", "claim", "verdict"]]
