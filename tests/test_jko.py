"""JKO-iFlow (Xu 2022b, notebook 42_jko): objective terms, invertibility, densities, the stopping rule,
checkpoints, memory, reparametrisation/refinement, the UCI path on a synthetic file, and bad input."""
import math

import numpy as np
import pytest
import torch
from torch import nn

import invgen_lit.jko as jko_mod
from invgen_lit.core import CheckpointError
from invgen_lit.data import load_uci, toy
from invgen_lit.density import standard_normal_log_prob
from invgen_lit.jko import JKOBlock, JKOFlow, even_w2_intervals, gaussian_potential, jko_objective_terms
from invgen_lit.ode import ODESolveError, peak_saved_bytes

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = dict(hidden=(16, 16), h=1.0, step_size=0.5, eval_step_size=0.0625, lr=5e-3)


@pytest.fixture(scope="module")
def X():
    return toy("8gaussians").sample(1024, seed=0)


@pytest.fixture(scope="module")
def fitted(X):
    torch.manual_seed(0)
    return JKOFlow(2, max_blocks=3, tol=0.0, **SMALL).fit(X, steps_per_block=20, progress=False)


class LinearField(nn.Module):
    def __init__(self, A): super().__init__(); self.A = nn.Parameter(A)
    def forward(self, t, x): return x @ self.A.T


def _whitened(n, Sigma):
    e = torch.randn(n, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    e = e - e.mean(0)
    e = e @ torch.linalg.inv(torch.linalg.cholesky(e.T @ e / n)).T
    return e @ torch.linalg.cholesky(Sigma).T


def test_objective_terms_match_closed_forms_for_a_linear_field():
    h = 0.7
    A = torch.tensor([[-0.6, 0.2], [0.2, -0.3]], dtype=torch.float64)   # symmetric: e^{hA} is the OT map
    Sigma = torch.tensor([[2.0, 0.6], [0.6, 1.0]], dtype=torch.float64)
    block = JKOBlock(2, h=h, n_steps=20, func=LinearField(A)).double()
    x0 = _whitened(500, Sigma)
    x1, int_div, _ = block.flow_with_div(x0)
    M = torch.linalg.matrix_exp(h * A)
    S1 = M @ Sigma @ M.T
    terms = {k: v.mean().item() for k, v in jko_objective_terms(x0, x1, int_div, h).items()}
    assert torch.allclose(x1, x0 @ M.T, atol=1e-7)
    assert terms["potential"] == pytest.approx(0.5 * S1.trace().item(), abs=1e-6)
    assert terms["neg_div"] == pytest.approx(-h * A.trace().item(), abs=1e-9)
    # transport = W2^2 / (2h), with W2^2 from the Bures formula: the coupling is optimal here
    w, U = torch.linalg.eigh(Sigma); r = U @ torch.diag(w.sqrt()) @ U.T
    w2, U2 = torch.linalg.eigh(r @ S1 @ r)
    bures = (Sigma.trace() + S1.trace() - 2 * w2.sqrt().sum()).item()
    assert terms["transport"] == pytest.approx(bures / (2 * h), abs=1e-6)
    assert terms["loss"] == pytest.approx(terms["potential"] + terms["neg_div"] + terms["transport"], abs=1e-9)
    # potential + neg_div + E log p_k + (d/2) log 2 pi is the KL to N(0, I)
    kl = terms["potential"] + terms["neg_div"] - 1 - 0.5 * torch.logdet(Sigma).item()
    assert kl == pytest.approx(0.5 * (S1.trace() - 2 - torch.logdet(S1)).item(), abs=1e-6)


def test_gaussian_potential():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    assert torch.equal(gaussian_potential(x), torch.tensor([12.5, 0.0]))
    # V differs from -log N(0, I) by a constant
    z = torch.randn(10, 3)
    c = gaussian_potential(z) + standard_normal_log_prob(z)
    assert torch.allclose(c, c[0].expand(10))


def test_even_w2_intervals_spreads_the_distance_evenly():
    h = even_w2_intervals([1.0, 1.0, 1.0], [4.0, 1.0, 0.25])
    assert sum(h) == pytest.approx(3.0)
    t = np.cumsum([0.0] + h)
    travelled = np.diff(np.interp(t, [0, 1, 2, 3], [0, 2, 3, 3.5]))
    assert np.allclose(travelled, 3.5 / 3)
    assert even_w2_intervals([0.5, 2.0], [1.0, 1.0]) == pytest.approx([0.5, 2.0])   # already even: unchanged
    with pytest.raises(ValueError, match="'h', 'w2'"):
        even_w2_intervals([1.0, 1.0], [1.0])


def test_api_and_shapes(fitted, X):
    assert isinstance(fitted.n_blocks_, int) and fitted.n_blocks_ == 3 == len(fitted.w2_) == len(fitted.batches_)
    assert fitted.batches_ == [20, 20, 20] and fitted.global_step == 60
    assert fitted.sample(7).shape == (7, 2)
    assert fitted.log_prob(X[:9]).shape == (9,)
    assert fitted.encode(X[:5]).shape == fitted.decode(torch.randn(5, 2)).shape == (5, 2)
    assert [round(t0, 9) for t0, _ in fitted.intervals] == [0.0, 1.0, 2.0]
    one_line = JKOFlow(2, max_blocks=1, **SMALL).fit(X, steps_per_block=2, progress=False).sample(3)
    assert one_line.shape == (3, 2) and torch.isfinite(one_line).all()


def test_encode_decode_round_trip(fitted, X):
    x = X[:300]
    assert (fitted.decode(fitted.encode(x)) - x).abs().max() < 1e-4
    z = torch.randn(300, 2)
    assert (fitted.encode(fitted.decode(z)) - z).abs().max() < 1e-4


def test_log_prob_is_the_change_of_variables_of_the_map(fitted, X):
    x = X[:100].clone().requires_grad_(True)
    y = x
    for b in fitted.blocks: y = b(y)
    J = torch.stack([torch.autograd.grad(y[:, i].sum(), x, retain_graph=True)[0] for i in range(2)], 1)
    expected = standard_normal_log_prob(y.detach()) + torch.linalg.slogdet(J)[1]
    assert (fitted.log_prob(X[:100]) - expected).abs().max() < 1e-2


def test_log_prob_integrates_to_one(fitted):
    g = torch.linspace(-7, 7, 141)
    gx, gy = torch.meshgrid(g, g, indexing="ij")
    p = fitted.log_prob(torch.stack([gx.flatten(), gy.flatten()], 1)).exp()
    assert p.sum().item() * (g[1] - g[0]).item() ** 2 == pytest.approx(1.0, abs=0.02)


def test_stopping_rule_chooses_the_number_of_blocks(X):
    torch.manual_seed(0)
    stop_at_once = JKOFlow(2, max_blocks=4, tol=1e9, patience=1, **SMALL).fit(X, steps_per_block=3, progress=False)
    assert stop_at_once.n_blocks_ == 1
    torch.manual_seed(0)
    assert JKOFlow(2, max_blocks=4, tol=1e9, **SMALL).fit(X, steps_per_block=3, progress=False).n_blocks_ == 2  # patience 2
    torch.manual_seed(0)
    never = JKOFlow(2, max_blocks=3, tol=0.0, **SMALL).fit(X, steps_per_block=3, progress=False)
    assert never.n_blocks_ == 3
    # the same seed trains the same blocks whatever the tolerance, so the rule can be checked against their movements
    w = np.array(never.w2_) / 2
    torch.manual_seed(0)
    just_above_first = JKOFlow(2, max_blocks=3, tol=float(w[0]) * 1.01, patience=1, **SMALL).fit(X, steps_per_block=3, progress=False)
    assert just_above_first.n_blocks_ == 1 and just_above_first.w2_ == pytest.approx(never.w2_[:1], rel=1e-4)
    torch.manual_seed(0)
    just_below_all = JKOFlow(2, max_blocks=3, tol=float(w.min()) * 0.99, patience=1, **SMALL).fit(X, steps_per_block=3, progress=False)
    assert just_below_all.n_blocks_ == 3 and just_below_all.w2_ == pytest.approx(never.w2_, rel=1e-4)


def test_patience_must_be_a_positive_int():
    with pytest.raises(ValueError, match="'patience'"): JKOFlow(2, patience=0)


def test_movement_is_measured_on_the_training_data(fitted, X):
    xk, w2 = X, []
    with torch.no_grad():
        for b in fitted.blocks:
            x1 = b(xk); w2.append((x1 - xk).pow(2).sum(1).mean().item()); xk = x1
    assert fitted.w2_ == pytest.approx(w2, rel=1e-4)
    assert fitted.w2_per_block(X) == pytest.approx(w2, rel=1e-4)


def test_save_load_restores_the_chosen_blocks(fitted, X, tmp_path):
    torch.manual_seed(0)
    m = JKOFlow(2, max_blocks=4, tol=1e9, **SMALL).fit(X, steps_per_block=3, progress=False)
    for model in (fitted, m):
        loaded = JKOFlow.load(model.save(tmp_path / "jko.pt"))
        assert loaded.n_blocks_ == model.n_blocks_ and loaded.intervals == model.intervals
        assert loaded.w2_ == model.w2_ and loaded.batches_ == model.batches_
        assert torch.allclose(loaded.log_prob(X[:50]), model.log_prob(X[:50]), atol=1e-6)
    with pytest.raises(CheckpointError):
        from invgen_lit.ode import CNF
        CNF(2).save(tmp_path / "cnf.pt"); JKOFlow.load(tmp_path / "cnf.pt")


def test_refine_doubles_blocks_and_keeps_the_map_then_save_load(fitted, X, tmp_path):
    import copy
    m = copy.deepcopy(fitted).refine(X, steps_per_block=0, progress=False)
    assert m.n_blocks_ == 2 * fitted.n_blocks_
    assert [h for _, h in m.intervals] == pytest.approx([0.5] * 6)
    assert sum(m.batches_) == sum(fitted.batches_)   # interpolation spends no mini-batches
    assert (m.encode(X[:200]) - fitted.encode(X[:200])).abs().max() < 1e-4
    loaded = JKOFlow.load(m.save(tmp_path / "refined.pt"))
    assert loaded.n_blocks_ == 6 and torch.allclose(loaded.encode(X[:20]), m.encode(X[:20]), atol=1e-6)


def test_reparametrize_keeps_total_time_and_evens_out_the_boundaries(fitted, X):
    import copy
    m = copy.deepcopy(fitted)
    w2 = m.w2_per_block(X)
    m.reparametrize(X, steps_per_block=2, progress=False)
    hs = [h for _, h in m.intervals]
    assert sum(hs) == pytest.approx(3.0)
    assert hs == pytest.approx(even_w2_intervals([1.0] * 3, w2))
    assert m.batches_ == [22, 22, 22]


def test_memory_is_flat_in_the_number_of_blocks(X):
    x = X[:256]
    def peak(L):
        torch.manual_seed(0)
        return peak_saved_bytes(lambda: JKOFlow(2, max_blocks=L, tol=0.0, **SMALL).fit(x, steps_per_block=2, batch_size=256,
                                                                                       progress=False))[1]
    p1, p4 = peak(1), peak(4)
    assert p1 > 0 and p4 <= 1.05 * p1, (p1, p4)


def test_uci_path_on_a_synthetic_power_file(tmp_path):
    rng = np.random.default_rng(0)
    z = rng.standard_normal((400, 8))
    np.save(tmp_path / "data.npy", np.column_stack([z[:, :7], np.linspace(0, 1, 400)]))
    split = load_uci("power", tmp_path)
    assert split["train"].shape[1] == 6
    m = JKOFlow(6, max_blocks=2, tol=0.0, **SMALL).fit(split["train"], steps_per_block=3, progress=False)
    lp = m.log_prob(split["test"])
    assert lp.shape == (len(split["test"]),) and torch.isfinite(lp).all()
    hut = JKOFlow(6, max_blocks=1, divergence="hutchinson", **SMALL).fit(split["train"], steps_per_block=2, progress=False)
    assert torch.isfinite(hut.log_prob(split["test"])).all()


# ---- bad input -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("h", [0.0, -1.0])
def test_step_size_h_must_be_positive(h):
    with pytest.raises(ValueError, match=r"argument 'h'.*received"):
        JKOFlow(2, h=h)
    with pytest.raises(ValueError, match="argument 'h'"):
        jko_objective_terms(torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2), h)


def test_h_must_be_a_number():
    with pytest.raises(TypeError, match="argument 'h'"):
        JKOFlow(2, h="1")


def test_data_with_nan_is_refused(X):
    bad = X[:20].clone(); bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match=r"argument 'x'.*NaN"):
        JKOFlow(2, **SMALL).fit(bad, steps_per_block=1, progress=False)


def test_other_bad_arguments(X, fitted):
    with pytest.raises(ValueError, match="data_shape"):
        JKOFlow((1, 4, 4))
    with pytest.raises(ValueError, match="max_blocks"):
        JKOFlow(2, max_blocks=0)
    with pytest.raises(ValueError, match="'steps_per_block'"):
        JKOFlow(2, **SMALL).fit(X, steps_per_block=0, progress=False)
    with pytest.raises(ValueError, match=r"argument 'x'.*shape"):
        JKOFlow(2, **SMALL).fit(torch.randn(10, 3), steps=1, progress=False)
    with pytest.raises(ValueError, match="argument 'x'"):
        fitted.log_prob(torch.randn(4, 3))
    with pytest.raises(ValueError, match="argument 'n'"):
        fitted.sample(0)


@pytest.mark.parametrize("call", ["sample", "encode", "decode", "log_prob", "reparametrize", "refine"])
def test_using_the_flow_before_fit_is_refused(call):
    m = JKOFlow(2)
    args = {"sample": (3,)}.get(call, (torch.zeros(4, 2),))
    with pytest.raises(RuntimeError, match=rf"JKOFlow.{call}.*fit\(X\) first"):
        getattr(m, call)(*args)


def test_a_failing_block_is_named_after_fit(fitted, X, tmp_path):
    broken = JKOFlow.load(fitted.save(tmp_path / "b.pt"))
    with torch.no_grad():
        for p in broken.blocks[1].parameters(): p.mul_(1e20)
    with pytest.raises(ODESolveError, match="block 2 of 3"):
        broken.encode(X[:10])
    with pytest.raises(ODESolveError, match="block 2 of 3"):
        broken.log_prob(X[:10])


def test_a_failing_block_is_named_during_fit(X, monkeypatch):
    real = jko_mod.odesolve
    def failing(func, y0, t, **kw):
        if float(t[0]) >= 1.0 or float(t[-1]) > 1.0: raise ODESolveError("solver gave up (simulated)")
        return real(func, y0, t, **kw)
    monkeypatch.setattr(jko_mod, "odesolve", failing)
    with pytest.raises(ODESolveError, match=r"block 2 of 2 \(t in \[1, 2\]\).*simulated"):
        JKOFlow(2, max_blocks=3, tol=0.0, **SMALL).fit(X, steps_per_block=2, progress=False)


def test_a_schedule_of_step_sizes_gives_each_block_its_h_and_block_steps_fixes_the_rk4_steps(X, tmp_path):
    "The authors' schedule h_k (Xu 2022b's code: 8 blocks, about x1.4 each, 3 integration steps per block)."
    schedule = [0.25, 0.35, 0.49]
    torch.manual_seed(0)
    m = JKOFlow(2, max_blocks=4, tol=0.0, block_steps=3, **{**SMALL, "h": schedule}).fit(X, steps_per_block=2, progress=False)
    hs = [h for _, h in m.intervals]
    assert hs == pytest.approx(schedule + [schedule[-1]])                      # the last entry repeats beyond the schedule
    assert [t for t, _ in m.intervals] == pytest.approx(np.cumsum([0.0] + hs[:-1]))
    assert all(b.n_steps == 3 for b in m.blocks) and [m.block_h(k) for k in range(5)] == pytest.approx(schedule + [0.49, 0.49])
    loaded = JKOFlow.load(m.save(tmp_path / "sched.pt"))
    assert loaded.intervals == m.intervals and loaded.h == m.h
    torch.testing.assert_close(loaded.log_prob(X[:50]), m.log_prob(X[:50]))
    assert all(b.n_steps == 3 for b in m.refine(X, steps_per_block=0, progress=False).blocks)   # halves keep block_steps
    assert JKOFlow(2, **SMALL).block_h(7) == 1.0 and JKOFlow(2, **SMALL).block_steps is None


@pytest.mark.parametrize("kw, match", [({"h": []}, "'h'"), ({"h": [0.5, 0.0]}, r"'h\[1\]'"), ({"block_steps": 0}, "'block_steps'")])
def test_bad_schedules_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        JKOFlow(2, **kw)
