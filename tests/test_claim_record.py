"""The claim record of `invgen_lit.core`: intervals, rules, verdicts, the stored rows and what refuses bad input."""
import json

import numpy as np
import pytest

from invgen_lit.core import (CLAIMS_MIME, VERDICTS, Claim, Rule, claims_markdown, collect_claims, fmt_interval, greater, less,
                             mean_interval, verdict_counts, within)


def test_t_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    hits = [lo <= 1.0 <= hi for lo, hi in (mean_interval(rng.normal(1.0, 2.0, 3))[1:] for _ in range(4000))]
    assert 0.94 < np.mean(hits) < 0.96, np.mean(hits)


def test_t_interval_matches_the_textbook_value():
    m, lo, hi = mean_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert m == 3.0 and hi - m == pytest.approx(2.776445 * np.std([1, 2, 3, 4, 5], ddof=1) / 5**0.5, rel=1e-6)


@pytest.mark.parametrize("rule, lo, hi, verdict", [
    (greater("a", "b"), 0.1, 0.5, "holds"), (greater("a", "b"), -0.5, -0.1, "fails"), (greater("a", "b"), -0.1, 0.1, "inconclusive"),
    (greater("a", by=0.7), 0.75, 0.8, "holds"), (greater("a", by=0.7), 0.6, 0.8, "inconclusive"),
    (less("a", "b"), -0.5, -0.1, "holds"), (less("a", "b", by=0.2), -0.3, -0.1, "inconclusive"), (less("a", by=1e-5), 3e-7, 3e-7, "holds"),
    (within("a", "b", 0.1), -0.05, 0.05, "holds"), (within("a", "b", 0.1), -0.05, 0.15, "inconclusive"), (within("a", "b", 0.1), 0.2, 0.3, "fails"),
])
def test_the_verdict_reads_the_whole_interval(rule, lo, hi, verdict):
    assert rule.verdict(lo, hi) == verdict


def test_a_paired_comparison_removes_what_the_seeds_share():
    "Two methods whose values move together with the seed: unpaired intervals overlap, the paired difference decides."
    shared = np.array([0.2, 0.9, 0.5, 0.1, 0.7])
    c = Claim("p", "a beats b", metric="m", values={"a": shared + 0.05, "b": shared}, seeds=[1, 2, 3, 4, 5], rule=greater("a", "b"))
    s = c.summary()
    assert s["a"][1] < s["b"][2]                  # the two methods' own intervals overlap ...
    assert c.verdict == "holds"                   # ... but every seed has a ahead of b by 0.05


def test_a_row_carries_what_a_sceptic_needs_and_survives_json(tmp_path):
    c = Claim("Ren 2020, Sec. 4.1", "a beats b", metric="Spearman (higher is better)", values={"a": [0.9, 0.92, 0.91], "b": [0.5, 0.6, 0.55]},
              seeds=[1, 2, 3], rule=greater("a", "b"), budget="100 steps x 64", params={"a": 1000, "b": 1100}, note="extra")
    row = c.row("x")
    for key in ("source", "claim", "metric", "values", "seeds", "n", "summary", "interval", "rule", "budget", "verdict", "profile"):
        assert key in row, key
    assert row["n"] == 3 and row["verdict"] == "holds" and "a 1,000" in row["budget"] and row["ours"].endswith("; extra")
    assert row["ours"].startswith("a: 0.910 [") and "a - b: 0.36" in row["ours"], row["ours"]
    nb = {"cells": [{"cell_type": "code", "outputs": [{"output_type": "display_data", "data": {CLAIMS_MIME: {"rows": [row]}}}]}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "x.ipynb").write_text(json.dumps(nb))
    got = collect_claims(tmp_path)
    assert got.loc[0, "verdict"] == "holds" and got.loc[0, "n"] == 3 and got.loc[0, "values"] == {"a": [0.9, 0.92, 0.91], "b": [0.5, 0.6, 0.55]}
    assert verdict_counts(got) == {"holds": 1, "fails": 0, "inconclusive": 0}


def test_the_table_marks_verdicts_and_lists_diagnoses():
    bad = Claim("p", "b beats a", metric="m", values={"a": [1.0, 1.1, 0.9], "b": [0.0, 0.1, 0.05]}, seeds=[1, 2, 3],
                rule=greater("b", "a"), diagnosis="b never trained long enough")
    md = claims_markdown([bad.row("x")])
    assert "| **fails** |" in md and "*Diagnosis*: b never trained long enough" in md


@pytest.mark.parametrize("kwargs, message", [
    (dict(values={"a": [1, 2]}, rule=greater("a"), seeds=[1]), "argument 'seeds'"),
    (dict(values={"a": [1, 2], "b": [1]}, rule=greater("a", "b"), seeds=[1, 2]), "as many values"),
    (dict(values={"a": [1, 2]}, rule=greater("a", "c"), seeds=[1, 2]), "needs method 'c'"),
    (dict(values={"a": [1, float("nan")]}, rule=greater("a"), seeds=[1, 2]), "finite"),
    (dict(values=[1, 2], rule=greater("a"), seeds=[1, 2]), "argument 'values'"),
    (dict(values={"a": [1, 2]}, rule="a > 0", seeds=[1, 2]), "argument 'rule'"),
    (dict(), "expected `values`"),
])
def test_bad_claims_are_refused_naming_the_argument(kwargs, message):
    with pytest.raises((TypeError, ValueError, KeyError), match=message):
        c = Claim("p", "c", **kwargs); c.verdict


def test_rule_arguments_are_checked():
    with pytest.raises(ValueError, match="argument 'op'"): Rule("a", op="=")
    with pytest.raises(ValueError, match="positive tolerance"): within("a", "b", 0)
    assert set(VERDICTS) == {"holds", "fails", "inconclusive"}


def test_numbers_are_rounded_to_what_the_interval_supports():
    assert fmt_interval(0.6234, 0.5512, 0.6956) == "0.623 [0.551, 0.696]"
    assert fmt_interval(12.345, 11.2, 13.5) == "12.3 [11.2, 13.5]"
    assert fmt_interval(0.5, 0.5, 0.5) == "0.500"
