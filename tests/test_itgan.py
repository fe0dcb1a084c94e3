"""ITGAN (Lee 2021) part 2: the model, its schedule, its API on DataFrames, save/load and bad input."""
import numpy as np
import pandas as pd
import pytest
import torch

from invgen_lit.core import set_seed
from invgen_lit.data import adult_like
from invgen_lit.itgan import ITGAN, reconstruction_loss, soft_rows

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small():
    return adult_like(400, seed=0)


@pytest.fixture(scope="module")
def fitted(small):
    set_seed(0)
    return ITGAN(gamma=0.01, categorical=["income"], period_g=3, period_l=2).fit(small, steps=6, progress=False)


def test_sample_keeps_columns_order_and_dtypes(fitted, small):
    s = fitted.sample(25)
    assert list(s.columns) == list(small.columns) and len(s) == 25
    assert s.dtypes.to_dict() == small.dtypes.to_dict()
    for c in ["workclass", "education", "marital_status", "sex"]:
        assert set(s[c]) <= set(small[c])
    assert set(s["income"]) <= {0, 1}


def test_history_follows_the_schedule(fitted):
    h = fitted.history.df
    assert h["rec"].notna().all() and h["d_loss"].notna().all()
    assert h["g_loss"].notna().tolist() == [k % 3 == 0 for k in range(6)]
    assert h["nll"].notna().tolist() == [k % 2 == 0 for k in range(6)]


def test_gamma_zero_never_evaluates_the_density(small):
    set_seed(0)
    m = ITGAN(gamma=0.0, categorical=["income"]).fit(small, steps=3, progress=False)
    assert "nll" not in m.history.df or m.history.df["nll"].isna().all()


def test_defaults_follow_the_authors_schedule(small):
    "G every iteration and the autoencoder's learning rate 2e-4 (the authors' training script); the docs budget is the measured one."
    m = ITGAN(categorical=["income"])
    assert m.periods == {"g": 1, "d": 1, "l": 6} and m.config["ae_lr"] == 2e-4
    set_seed(0)
    h = m.fit(small, steps=3, progress=False).history.df
    assert h["g_loss"].notna().all()
    assert ITGAN.steps_by_profile["docs"] >= 500


def test_kinetic_regulariser_runs_at_gamma_zero(small):
    "With kinetic > 0 the likelihood step runs every period_l steps even at gamma = 0 (the authors' setting), and moves only G."
    set_seed(0)
    m = ITGAN(gamma=0.0, kinetic=1.0, period_l=2, categorical=["income"]).fit(small, steps=4, progress=False)
    assert m.history.df["nll"].notna().tolist() == [True, False, True, False]
    set_seed(0)
    m = ITGAN(gamma=0.0, kinetic=0.0, categorical=["income"]).fit(small, steps=1, progress=False)
    assert "nll" not in m.history.df or m.history.df["nll"].isna().all()


def test_ode_settings_reach_the_generator(small):
    "ode_act, method, rtol and atol are handed to the ODE generator; a seed changes the weights."
    set_seed(0)
    m = ITGAN(categorical=["income"], ode_act="tanh", method="dopri5", rtol=1e-2, atol=1e-2, latent_dim=4).fit(small, steps=1, progress=False)
    assert m.G.solver["method"] == "dopri5" and m.G.solver["rtol"] == 1e-2 and m.G.solver["atol"] == 1e-2
    assert any(isinstance(mod, torch.nn.Tanh) for mod in m.G.modules())
    w = [ITGAN(categorical=["income"], seed=s, latent_dim=4).fit(small, steps=0, progress=False).E.parameters().__next__() for s in (1, 2)]
    assert not torch.equal(w[0], w[1])


def test_density_step_moves_generator_in_the_sign_of_gamma(small):
    "One R_density step with gamma > 0 lowers -log p(E(x)); with gamma < 0 raises it."
    x_df = small[:200]
    change = {}
    for gamma in (1.0, -1.0):
        set_seed(0)
        m = ITGAN(gamma=gamma, categorical=["income"], lr=1e-2).fit(small, steps=1, progress=False)
        h = m.hidden(x_df)
        before = -m.G.log_prob(h, divergence="exact").mean().item()
        m.optimizers["g"].zero_grad()
        (gamma * -m.G.log_prob(h, divergence="exact").mean()).backward()
        m.optimizers["g"].step()
        change[gamma] = -m.G.log_prob(h, divergence="exact").mean().item() - before
    assert change[1.0] < 0 < change[-1.0]


def test_save_load_round_trip(fitted, small, tmp_path):
    fitted.save(tmp_path / "it.pt")
    again = ITGAN.load(tmp_path / "it.pt")
    torch.manual_seed(3); a = fitted.sample(8)
    torch.manual_seed(3); b = again.sample(8)
    pd.testing.assert_frame_equal(a, b)
    assert torch.allclose(fitted.log_prob(small[:5]), again.log_prob(small[:5]))


def test_hidden_encode_log_prob_shapes(fitted, small):
    h = fitted.hidden(small[:7])
    assert h.shape == (7, fitted.latent_dim)
    z = fitted.encode(small[:7])
    assert torch.allclose(fitted.G.decode(z).detach(), h, atol=1e-3)
    assert fitted.log_prob(small[:7]).shape == (7,)


def test_reconstruction_loss_and_soft_rows(fitted, small):
    t = fitted.transformer
    x = t.transform(small[:10])
    out = torch.randn_like(x)
    rows = soft_rows(out, t.spans)
    for a, b, kind, _ in t.spans:
        if kind == "softmax": assert torch.allclose(rows[:, a:b].sum(1), torch.ones(10))
        else: assert rows[:, a].abs().max() < 1
    assert (reconstruction_loss(out, x, t.spans) > 0).all()


def test_constant_column_is_reproduced(small):
    df = small.assign(country="KR")
    set_seed(0)
    m = ITGAN(categorical=["income"]).fit(df, steps=2, progress=False)
    assert (m.sample(10)["country"] == "KR").all()


def test_bad_input(fitted, small):
    with pytest.raises(TypeError, match="DataFrame"):
        ITGAN().fit(small.to_numpy(), steps=1, progress=False)
    with pytest.raises(TypeError, match="when"):
        ITGAN().fit(small.assign(when=pd.Timestamp("2021-01-01")), steps=1, progress=False)
    with pytest.raises(ValueError, match="missing"):
        ITGAN().fit(small.assign(age=small["age"].where(small["age"] > 20)), steps=1, progress=False)
    with pytest.raises(ValueError, match="Gwangju"):
        fitted.encode(small.assign(workclass="Gwangju"))
    with pytest.raises(ValueError, match="'n'"):
        fitted.sample(0)
    with pytest.raises(RuntimeError, match="fit"):
        ITGAN().sample(3)
    with pytest.raises(TypeError, match="categorical"):
        ITGAN(categorical="income")
    with pytest.raises(ValueError, match="period_g"):
        ITGAN(period_g=0)
    with pytest.raises(ValueError, match="shape"):
        fitted.decode(torch.randn(3, fitted.latent_dim + 1))
