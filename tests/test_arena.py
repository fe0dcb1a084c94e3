"""invgen_lit.arena: who may enter (verbs, widths), the three arenas on models whose answers are known, and the claims page."""
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from invgen_lit.arena import (ARENA_VERBS, PAGE_COLUMNS, SklearnDetector, arena_models, claims_page, claims_page_markdown,
                              claims_summary, fit_models, inversion_arena, likelihood_arena, log_prob_kind, model_data_shape,
                              ood_arena, prior_codes, rows_for, timed, unexplained)
from invgen_lit.core import CLAIMS_MIME, DiagonalGaussian, collect_claims, set_seed

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


class PCA:
    "A reader's own model: a linear encoder/decoder with a Gaussian prior, no package base class."
    def __init__(self, dim: int, k: int):
        self.data_shape, self.k = (dim,), k

    def fit(self, X):
        self.mean = X.mean(0)
        U, S, V = torch.linalg.svd(X - self.mean, full_matrices=False)
        self.scale, self.basis = S[:self.k] / math.sqrt(len(X) - 1), V[:self.k]
        return self

    def encode(self, x): return (x - self.mean) @ self.basis.T / self.scale
    def decode(self, z): return self.mean + (z * self.scale) @ self.basis


class EncodeOnly:
    data_shape = (2,)
    def encode(self, x): return x


@pytest.fixture(scope="module")
def gauss_data():
    set_seed(0)
    X = torch.randn(3000, 3) * torch.tensor([3.0, 1.0, 0.5]) + torch.tensor([1.0, -2.0, 0.0])
    return X[:2500], X[2500:]


@pytest.fixture(scope="module")
def gauss(gauss_data):
    set_seed(0)
    return DiagonalGaussian(3).fit(gauss_data[0], steps=1500, progress=False)


# ---- who may enter ---------------------------------------------------------------------------------------------------
def test_every_arena_names_the_missing_verb(gauss):
    with pytest.raises(TypeError, match="has no 'score'.*ood arena calls model.score"):
        arena_models([EncodeOnly()], "ood", (2,))
    with pytest.raises(TypeError, match="'EncodeOnly'.*has no 'decode'"):
        arena_models([EncodeOnly()], "inversion", (2,))
    with pytest.raises(TypeError, match="has no 'log_prob'"):
        likelihood_arena({"pca": PCA(3, 2)}, torch.randn(10, 3), torch.zeros(10))
    with pytest.raises(TypeError, match="has no 'encode' and no 'decode'"):
        inversion_arena([SklearnDetector(__import__("sklearn.ensemble", fromlist=["IsolationForest"]).IsolationForest())], torch.randn(10, 3))
    assert set(ARENA_VERBS) == {"inversion", "likelihood", "ood"}


def test_a_model_fitted_on_another_width_is_refused(gauss):
    with pytest.raises(ValueError, match=r"built for rows of shape \(3,\), the task's rows have shape \(6,\)"):
        inversion_arena([gauss], torch.randn(20, 6))
    with pytest.raises(ValueError, match="another width"):
        likelihood_arena({"g": gauss}, torch.randn(20, 2), torch.zeros(20))
    with pytest.raises(ValueError, match="another width"):
        ood_arena([SklearnDetector(__import__("sklearn.ensemble", fromlist=["IsolationForest"]).IsolationForest()).fit(torch.randn(50, 4))],
                  torch.randn(20, 3), {("far", "x"): torch.randn(20, 3)})


def test_a_vector_model_enters_an_image_task_flattened():
    flat = DiagonalGaussian(64)
    assert list(arena_models({"flat": flat}, "inversion", (1, 8, 8))) == ["flat"]
    assert rows_for(flat, torch.zeros(5, 1, 8, 8)).shape == (5, 64)
    assert rows_for(DiagonalGaussian(3), torch.zeros(5, 3)).shape == (5, 3)


def test_models_must_be_a_list_or_dict_of_models_that_say_their_width(gauss):
    with pytest.raises(TypeError, match="argument 'models'"): arena_models(gauss, "likelihood", (3,))
    with pytest.raises(ValueError, match="at least one"): arena_models({}, "likelihood", (3,))
    with pytest.raises(ValueError, match="argument 'arena'"): arena_models([gauss], "speed", (3,))
    class NoShape:
        def log_prob(self, x): return x.sum(1)
    with pytest.raises(TypeError, match="does not say what rows it takes"): arena_models([NoShape()], "likelihood", (3,))
    assert list(arena_models([gauss, gauss], "likelihood", (3,))) == ["DiagonalGaussian", "DiagonalGaussian #2"]
    assert model_data_shape(gauss) == (3,) and model_data_shape(PCA(4, 2)) == (4,) and model_data_shape(object()) is None


# ---- fitting ---------------------------------------------------------------------------------------------------------
def test_fit_models_seeds_each_recipe_and_records_its_time(gauss_data):
    X = gauss_data[0]
    recipe = {"a": lambda: DiagonalGaussian(3).fit(X, steps=3, progress=False),
              "noise": lambda: torch.nn.Linear(2, 2)}    # built after the seed: the same weights as in a second run
    one, two = fit_models(recipe, verbose=False), fit_models(recipe, verbose=False)
    assert one["a"].fit_seconds > 0 and one["a"].global_step == 3
    assert torch.equal(one["noise"].weight, two["noise"].weight)
    with pytest.raises(TypeError, match="argument 'recipes'"): fit_models([lambda: 1])


def test_timed_and_prior_codes_leave_the_global_stream_alone():
    out, seconds = timed(lambda c: c * 2, torch.ones(2500, 2), chunk=1000)
    assert out.shape == (2500, 2) and (out == 2).all() and seconds >= 0
    torch.manual_seed(5); a = torch.rand(3)
    torch.manual_seed(5); z = prior_codes(DiagonalGaussian(2), 10, 2, seed=1); b = torch.rand(3)
    assert torch.equal(a, b) and z.shape == (10, 2)
    assert torch.equal(z, prior_codes(DiagonalGaussian(2), 10, 2, seed=1))


# ---- the inversion arena ---------------------------------------------------------------------------------------------
def test_unexplained_variance_is_zero_for_a_copy_and_one_for_the_mean():
    a = torch.randn(100, 4)
    assert unexplained(a, a) == 0
    assert abs(unexplained(a, a.mean(0).expand_as(a)) - 1) < 1e-12
    with pytest.raises(ValueError, match="argument 'estimate'"): unexplained(a, a[:, :2])


def test_inversion_arena_exact_inverse_vs_a_lossy_linear_one(gauss, gauss_data):
    X, X_test = gauss_data
    table = inversion_arena({"gauss": gauss, "pca": PCA(3, 2).fit(X)}, X_test, n_fake=400)
    assert table.loc["gauss", "fake rec. (FVU of z)"] < 1e-10 and table.loc["gauss", "real rec. (FVU of x)"] < 1e-10
    # PCA with 2 of 3 directions: its codes of fake data come back exactly, real data lose the smallest direction
    assert table.loc["pca", "fake rec. (FVU of z)"] < 1e-10
    expected = 0.25 / (9 + 1 + 0.25)
    assert abs(table.loc["pca", "real rec. (FVU of x)"] - expected) < 0.01, table
    assert abs(table.loc["gauss", "MMD² codes vs prior"]) < 0.01 and abs(table.loc["pca", "MMD² codes vs prior"]) < 0.01
    assert list(table["code width"]) == [3, 2] and (table["encode s / 1k rows"] >= 0).all()


def test_inversion_arena_mmd_sees_codes_off_the_prior(gauss_data):
    X, X_test = gauss_data
    off = PCA(3, 2).fit(X)
    off.scale = off.scale * 4            # codes four times too small: decode still inverts encode, the prior is wrong
    table = inversion_arena([off], X_test, n_fake=400)
    assert table.iloc[0]["MMD² codes vs prior"] > 0.2 and table.iloc[0]["fake rec. (FVU of z)"] < 1e-10


# ---- the likelihood arena --------------------------------------------------------------------------------------------
def test_likelihood_arena_against_the_true_density(gauss, gauss_data):
    X, X_test = gauss_data
    truth = torch.distributions.Normal(torch.tensor([1.0, -2.0, 0.0]), torch.tensor([3.0, 1.0, 0.5])).log_prob(X_test).sum(1)

    class Unnormalised:
        data_shape = (3,)
        def log_prob(self, x): return gauss.log_prob(x) * 2 + 7   # monotone in the truth, not a density
    table = likelihood_arena({"gauss": gauss, "scaled": Unnormalised()}, X_test, truth)
    assert table.loc["gauss", "Spearman"] > 0.99 and table.loc["scaled", "Spearman"] > 0.99
    assert abs(table.loc["gauss", "NLL"] - table.loc["gauss", "NLL of the truth"]) < 0.05
    assert table.loc["gauss", "kind"] == "exact" and table.loc["scaled", "kind"] == "unknown"
    assert math.isnan(table.loc["scaled", "NLL"])
    with pytest.raises(ValueError, match="argument 'true_log_prob'"): likelihood_arena([gauss], X_test, truth[:10])


def test_log_prob_kind_of_the_package_models():
    from invgen_lit.invgan import InvGAN, RealNVP
    from invgen_lit.iresnet import IResNet
    from invgen_lit.reversal import KDEGAN
    assert log_prob_kind(RealNVP(4)) == "exact" and log_prob_kind(InvGAN(6, 2)) == "manifold"
    assert log_prob_kind(KDEGAN(6, 2)) == "latent" and log_prob_kind(object()) == "unknown"
    assert log_prob_kind(IResNet(2)) == "exact" and log_prob_kind(IResNet(2, logdet="series")) == "estimate"


# ---- the OOD arena ---------------------------------------------------------------------------------------------------
def test_ood_arena_ranks_far_above_near_for_a_classical_detector():
    from sklearn.ensemble import IsolationForest
    g = torch.Generator().manual_seed(0)
    X, X_id = torch.randn(1000, 4, generator=g), torch.randn(200, 4, generator=g)
    ood = {("near", "shift"): X_id + 0.3, ("far", "shift"): X_id + 4.0}
    table = ood_arena({"IF": SklearnDetector(IsolationForest(random_state=0)).fit(X)}, X_id, ood)
    assert list(table.index) == [("near", "shift"), ("far", "shift"), ("mean", "near"), ("mean", "far")]
    assert table.loc[("far", "shift"), "IF"] > 99 and 45 < table.loc[("near", "shift"), "IF"] < 70
    with pytest.raises(ValueError, match="expected keys"): ood_arena({"IF": SklearnDetector(IsolationForest()).fit(X)}, X_id, {"far": X_id})
    with pytest.raises(TypeError, match="argument 'ood'"): ood_arena({"IF": SklearnDetector(IsolationForest()).fit(X)}, X_id, {})


def test_sklearn_detector_checks_its_input():
    from sklearn.ensemble import IsolationForest
    with pytest.raises(TypeError, match="argument 'estimator'"): SklearnDetector(object())
    with pytest.raises(RuntimeError, match="not fitted"): SklearnDetector(IsolationForest()).score(torch.zeros(3, 2))
    d = SklearnDetector(IsolationForest(random_state=0)).fit(torch.randn(50, 2))
    with pytest.raises(ValueError, match="argument 'x'"): d.score(torch.zeros(3, 5))


# ---- the claims page -------------------------------------------------------------------------------------------------
def test_claims_page_is_collected_from_the_notebooks():
    page, raw = claims_page(ROOT / "nbs"), collect_claims(ROOT / "nbs")
    assert list(page.columns)[:len(PAGE_COLUMNS)] == PAGE_COLUMNS and len(page) == len(raw) > 30
    assert (page["verdict"] == raw["verdict"]).all() and set(page["verdict"]) <= {"holds", "fails", "inconclusive"}
    summary = claims_summary(page)
    assert int(summary.values.sum()) == len(page) and list(summary.columns) == ["holds", "fails", "inconclusive"]
    md = claims_page_markdown(page)
    assert "| notebook | paper | claim | ours | n | rule | budget | profile | verdict |" in md
    assert md.count("| **fails** |") == int((page["verdict"] == "fails").sum())
    assert md.count("| *inconclusive* |") == int((page["verdict"] == "inconclusive").sum())
    counts = md.splitlines()[0]
    assert f"{int((page.verdict == 'holds').sum())} hold, {int((page.verdict == 'fails').sum())} fail" in counts, counts


def test_claims_page_rows_of_a_running_notebook_replace_its_stored_ones(tmp_path):
    row = {"source": "a paper, Fig. 1", "claim": "c", "ours": "o", "budget": "b", "holds": False, "profile": "docs"}
    nb = {"cells": [{"cell_type": "code", "outputs": [{"output_type": "display_data", "data": {CLAIMS_MIME: {"rows": [row | {"notebook": "x"}]}}}]}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "x.ipynb").write_text(json.dumps(nb))
    assert list(claims_page(tmp_path)["verdict"]) == ["fails"]           # a single-run row of the older kind
    from invgen_lit.core import Claim, greater
    fresh_row = Claim("a paper", "c", metric="m", values={"A": [3.0, 3.1, 2.9], "B": [1, 1, 1]}, seeds=[1, 2, 3], rule=greater("A", "B")).row("x")
    fresh = claims_page(tmp_path, rows=[fresh_row])
    assert list(fresh["verdict"]) == ["holds"] and list(fresh["n"]) == [3] and len(fresh) == 1
    with pytest.raises(FileNotFoundError, match="argument 'folder'"): claims_page(tmp_path / "missing")
    with pytest.raises(ValueError, match="argument 'page'"): claims_summary(pd.DataFrame())


def test_the_readme_shows_the_claims_page_with_its_verdict_counts():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "| notebook | paper | claim | ours | n | rule | budget | profile | verdict |" in readme
    from invgen_lit.arena import claims_count_line
    assert claims_count_line(claims_page(ROOT / "nbs")) in readme


def test_likelihood_arena_takes_the_nll_on_held_out_data_and_ranks_on_probes(gauss, gauss_data):
    _, X_test = gauss_data
    normal = torch.distributions.Normal(torch.tensor([1.0, -2.0, 0.0]), torch.tensor([3.0, 1.0, 0.5]))
    probes = 12 * torch.rand(500, 3, generator=torch.Generator().manual_seed(0)) - 6
    x_rank = torch.cat([X_test, probes])
    table = likelihood_arena([gauss], x_rank, normal.log_prob(x_rank).sum(1), X_test, normal.log_prob(X_test).sum(1))
    row = table.iloc[0]
    assert row["Spearman"] > 0.99
    assert abs(row["NLL of the truth"] + normal.log_prob(X_test).sum(1).double().mean().item()) < 1e-6
    assert abs(row["NLL"] - row["NLL of the truth"]) < 0.05
    with pytest.raises(ValueError, match="expected both or neither"): likelihood_arena([gauss], X_test, normal.log_prob(X_test).sum(1), held_out=X_test)
    with pytest.raises(ValueError, match="argument 'held_out'"):
        likelihood_arena([gauss], X_test, normal.log_prob(X_test).sum(1), torch.zeros(4, 2), torch.zeros(4))
