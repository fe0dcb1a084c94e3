"""Invertible residual networks (notebook 40): Lipschitz branches, fixed-point inverse, exact and power-series
log-determinants, Russian roulette, the block stack, the IResNet API and bad input."""
import math

import pytest
import torch
from torch import nn

from invgen_lit.data import toy
from invgen_lit.density import exact_jacobian, exact_logdet, standard_normal_log_prob
from invgen_lit.iresnet import (LIPSCHITZ_ACTS, FixedPointError, InvertibleResNet, IResNet, ResidualBlock,
                                exact_residual_logdet, power_series_logdet, residual_net, roulette_terms)
from invgen_lit.nn import MLP

pytestmark = pytest.mark.usefixtures("one_thread")


def linears(f):
    return [m for m in f.modules() if isinstance(m, nn.Linear)]


def op_norm(J):
    return torch.linalg.matrix_norm(J.detach(), 2)


def strong_branch(D, c, seed=0):
    """A c-Lipschitz branch whose Jacobian c Q^T diag(elu') Q reaches norm c: log det(I + J) is O(1), the power series
    needs many terms, and the Hutchinson probes have non-zero variance (J is not diagonal)."""
    torch.manual_seed(seed)
    f = residual_net(D, (D,), "elu", c)
    Q = torch.linalg.qr(torch.randn(D, D))[0]
    first, last = linears(f)
    with torch.no_grad():
        first.parametrizations.weight.original.copy_(Q)
        last.parametrizations.weight.original.copy_(Q.T)
        f.train(); f(torch.randn(8, D))  # one power iteration: exact for an orthogonal matrix
    return f.eval()


def exploding_mlp(D, seed=0):
    "An unconstrained branch with all weights times 4: far from a contraction, the fixed point iteration blows up."
    torch.manual_seed(seed)
    m = MLP(D, D, (32, 32), act="elu")
    with torch.no_grad():
        for p in m.parameters(): p.mul_(4)
    return m


# ---------------------------------------------------------------- residual_net

def test_residual_net_is_c_lipschitz_after_training_and_power_iterations():
    torch.manual_seed(0)
    c = 0.7
    f = residual_net(3, (16, 16), "elu", c)
    assert isinstance(f(torch.randn(5, 3)), torch.Tensor) and len(linears(f)) == 3
    # push the raw weights around (maximise the output) so the normalisation has something to undo
    opt = torch.optim.Adam(f.parameters(), lr=0.05)
    f.train()
    for _ in range(20):
        x = 2 * torch.randn(64, 3)
        opt.zero_grad(); (-f(x).pow(2).mean()).backward(); opt.step()
    with torch.no_grad():
        for _ in range(30): f(torch.randn(64, 3))  # power iterations in train mode
    f.eval()
    for lin in linears(f):
        assert abs(float(op_norm(lin.weight)) - 1) < 1e-3
        assert float(op_norm(lin.parametrizations.weight.original)) > 1.01  # the raw weight really is larger
    J = exact_jacobian(f, 3 * torch.randn(400, 3))
    assert J.shape == (400, 3, 3)
    assert float(op_norm(J).max()) <= c + 1e-3


def test_residual_net_linear_branch_attains_c():
    torch.manual_seed(0)
    f = residual_net(4, (), "identity", 0.6)
    with torch.no_grad():
        for _ in range(30): f(torch.randn(8, 4))  # power iterations (train mode): the 15 at construction are not enough
    f.eval()
    norms = op_norm(exact_jacobian(f, torch.randn(20, 4)))
    assert torch.allclose(norms, torch.full_like(norms, 0.6), atol=1e-3)


def test_residual_net_without_lipschitz_is_a_plain_mlp():
    torch.manual_seed(0)
    f = residual_net(3, (8,), "silu")  # any activation is fine without a constraint
    assert isinstance(f, MLP)
    assert not any(hasattr(m, "parametrizations") for m in linears(f))
    assert f(torch.randn(4, 3)).shape == (4, 3)


@pytest.mark.parametrize("c", [1.0, 1.5, 0.0, -0.2])
def test_residual_net_bad_lipschitz(c):
    with pytest.raises(ValueError, match="lipschitz"):
        residual_net(2, (8,), "elu", c)


def test_residual_net_rejects_non_lipschitz_activation():
    assert "silu" not in LIPSCHITZ_ACTS and "elu" in LIPSCHITZ_ACTS
    with pytest.raises(ValueError, match="'act'"):
        residual_net(2, (8,), "silu", 0.5)
    with pytest.raises(ValueError, match="'dim'"):
        residual_net(0, (8,), "elu", 0.5)


# ---------------------------------------------------------------- ResidualBlock.inverse

def test_block_inverse_round_trip():
    torch.manual_seed(0)
    block = ResidualBlock(strong_branch(2, 0.9)).eval()
    x = 2 * torch.randn(200, 2)
    y = block(x)
    assert (y - x).abs().max() > 0.1  # the block does move the points
    tol = 1e-5  # absolute, on float32 values of size ~5: much tighter stalls at rounding level
    x_back, iterations, residual = block.inverse(y, tol=tol)
    assert (x_back - x).abs().max() < 1e-4
    assert iterations >= 1 and residual <= tol
    assert (block(x_back) - y).abs().max() <= 3 * tol


def test_block_inverse_of_non_contraction_raises():
    block = ResidualBlock(exploding_mlp(2))
    x = torch.randn(100, 2)
    tol, max_iter = 1e-5, 20
    with pytest.raises(FixedPointError, match="did not converge") as info:
        block.inverse(block(x), tol=tol, max_iter=max_iter)
    e = info.value
    assert e.residual > tol and 1 <= e.iterations <= max_iter
    assert isinstance(e, RuntimeError)
    # with the default budget the iterates overflow; the error still says the tolerance was not reached
    with pytest.raises(FixedPointError, match="did not converge") as info:
        block.inverse(block(x), tol=tol)
    assert not (info.value.residual <= tol) and info.value.iterations <= 500


# ---------------------------------------------------------------- exact_residual_logdet

@pytest.mark.parametrize("D", [2, 8])
def test_exact_residual_logdet_matches_exact_logdet(D):
    for f in (strong_branch(D, 0.8), exploding_mlp(D, seed=1)):
        x = torch.randn(16, D)
        fx, ld = exact_residual_logdet(f, x)
        ref = exact_logdet(lambda v: v + f(v), x)
        assert ld.shape == (16,) and fx.shape == (16, D)
        assert torch.allclose(fx, f(x), atol=1e-6)
        assert torch.allclose(ld, ref, atol=1e-4, rtol=1e-5)
        assert ld.abs().max() > 0.1  # not a trivial zero


def test_exact_residual_logdet_graph_follows_grad_mode():
    f = strong_branch(3, 0.8)
    x = torch.randn(5, 3)
    _, ld = exact_residual_logdet(f, x)
    assert ld.requires_grad
    with torch.no_grad():
        _, ld0 = exact_residual_logdet(f, x)
    assert not ld0.requires_grad and torch.allclose(ld0, ld.detach())


def test_exact_residual_logdet_bad_branch():
    torch.manual_seed(0)
    wide = nn.Linear(3, 4)
    with pytest.raises(ValueError, match="'f'"):
        exact_residual_logdet(wide, torch.randn(5, 3))
    with pytest.raises(ValueError, match="'x'"):
        exact_residual_logdet(nn.Identity(), torch.randn(5))


# ---------------------------------------------------------------- power series and Russian roulette

def repeated_estimates(f, x, R, seed, **kw):
    "Per-row estimates for R probe draws in one call: shape (R, n)."
    g = torch.Generator().manual_seed(seed)
    _, ld = power_series_logdet(f, x.repeat(R, 1), generator=g, **kw)
    return ld.view(R, len(x))


def test_power_series_converges_to_exact():
    f = strong_branch(4, 0.5)
    x = torch.randn(5, 4)
    exact = exact_residual_logdet(f, x)[1]
    est = repeated_estimates(f, x, 8000, seed=0, n_terms=20)
    assert exact.abs().min() > 0.5
    assert (est.mean(0) - exact).abs().max() < 0.02


def test_one_term_series_is_biased():
    "One term is Hutchinson's tr J, which misses -tr(J^2)/2 + ...: the gap is many standard errors."
    f = strong_branch(4, 0.5)
    x = torch.randn(5, 4)
    exact = exact_residual_logdet(f, x)[1]
    est = repeated_estimates(f, x, 2000, seed=0, n_terms=1)
    gap, se = est.mean(0) - exact, est.std(0) / math.sqrt(len(est))
    assert (gap > 0.1).all() and (gap > 5 * se).all()


def test_roulette_mean_is_close_to_exact():
    f = strong_branch(4, 0.5)
    x = torch.randn(5, 4)
    exact = exact_residual_logdet(f, x)[1]
    g = torch.Generator().manual_seed(0)
    xr = x.repeat(5, 1)
    calls = torch.stack([power_series_logdet(f, xr, roulette=True, generator=g)[1].view(5, 5).mean(0)
                         for _ in range(1000)])
    assert (calls.mean(0) - exact).abs().max() < 0.04
    # the cheapest truncation a roulette call can stop at (n_exact = 2 terms) is far off
    two = repeated_estimates(f, x, 2000, seed=1, n_terms=2)
    assert (two.mean(0) - exact).abs().min() > 0.04


def test_roulette_is_the_reweighted_truncated_series():
    "With fixed probes, a roulette call is sum_{k <= K} w_k * (term k of the series), K and w from `roulette_terms`."
    f = strong_branch(3, 0.7)
    x = torch.randn(6, 3)
    eps = torch.randn(6, 3)
    partial = [torch.zeros(6)] + [power_series_logdet(f, x, n_terms=k, eps=eps)[1] for k in range(1, 15)]
    terms = [partial[k] - partial[k - 1] for k in range(1, 15)]
    seen = set()
    for seed in range(12):
        K, w = roulette_terms(2, 0.5, torch.Generator().manual_seed(seed))
        if K > 14: continue
        seen.add(K)
        _, ld = power_series_logdet(f, x, roulette=True, eps=eps, generator=torch.Generator().manual_seed(seed))
        expected = sum(float(w[k]) * terms[k] for k in range(K))
        assert torch.allclose(ld, expected, atol=1e-5)
    assert len(seen) >= 2  # several different K were exercised


@pytest.mark.parametrize("n_exact, p", [(2, 0.5), (0, 0.3), (1, 0.7)])
def test_roulette_terms_weights(n_exact, p):
    g = torch.Generator().manual_seed(0)
    draws = [roulette_terms(n_exact, p, g) for _ in range(4000)]
    for K, w in draws[:50]:
        assert K >= n_exact and w.shape == (K,)
        k = torch.arange(1, K + 1, dtype=torch.float64)
        assert torch.allclose(w.double(), (1 - p) ** -(k - n_exact).clamp(min=0))
    # unbiasedness: E[1{K >= k} w_k] = 1 for every k
    for k in range(1, n_exact + 4):
        mean = sum(float(w[k - 1]) for K, w in draws if K >= k) / len(draws)
        assert abs(mean - 1) < 0.1, (k, mean)
    extras = torch.tensor([K - n_exact for K, _ in draws], dtype=torch.float64)
    assert abs(float(extras.mean()) - (1 - p) / p) < 0.1  # Geometric(p) on {0, 1, ...}


def test_power_series_gradients_flow_to_parameters():
    torch.manual_seed(0)
    f = residual_net(3, (8,), "elu", 0.8)
    x = torch.randn(10, 3)
    g = torch.Generator().manual_seed(0)
    for roulette in (False, True):
        f.zero_grad()
        _, ld = power_series_logdet(f, x, n_terms=5, roulette=roulette, generator=g, create_graph=True)
        assert ld.requires_grad
        ld.sum().backward()
        grad = linears(f)[0].parametrizations.weight.original.grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    with torch.no_grad():
        _, ld = power_series_logdet(f, x)
    assert not ld.requires_grad


@pytest.mark.parametrize("kw, err, match", [(dict(n_terms=0), ValueError, "n_terms"), (dict(p=1.5), ValueError, "'p'"),
                                            (dict(p=0.0), ValueError, "'p'"), (dict(n_exact=-1), ValueError, "n_exact"),
                                            (dict(probe="cauchy"), ValueError, "probe")])
def test_power_series_bad_arguments(kw, err, match):
    f = residual_net(2, (8,), "elu", 0.5)
    with pytest.raises(err, match=match):
        power_series_logdet(f, torch.randn(4, 2), **kw)


# ---------------------------------------------------------------- InvertibleResNet

@pytest.fixture(scope="module")
def stack():
    torch.manual_seed(0)
    nets = [strong_branch(3, 0.8, seed=s) for s in range(2)] + [residual_net(3, (16, 16), "elu", 0.9)]
    return InvertibleResNet(3, nets=nets).eval()


def test_stack_flow_logdet_and_transport(stack):
    x = torch.randn(32, 3)
    z, ld, transport = stack.flow(x)
    assert z.shape == (32, 3) and ld.shape == transport.shape == (32,)
    assert torch.allclose(z, stack(x), atol=1e-6)
    ref = exact_logdet(stack, x)
    assert ref.abs().max() > 0.5
    assert torch.allclose(ld, ref, atol=1e-4)
    traj = stack.trajectory(x)
    assert traj.shape == (4, 32, 3) and torch.equal(traj[0], x) and torch.allclose(traj[-1], z, atol=1e-6)
    steps = (traj[1:] - traj[:-1]).pow(2).sum(-1).sum(0)
    assert torch.allclose(transport, steps, rtol=1e-5, atol=1e-6) and (transport > 0).all()
    # the series estimator of the whole stack agrees on average
    _, ld_series, _ = stack.flow(x.repeat(500, 1), "series", n_terms=20, generator=torch.Generator().manual_seed(0))
    assert (ld_series.view(500, 32).mean(0) - ref).abs().max() < 0.05


def test_stack_inverse_and_stats(stack):
    x = 2 * torch.randn(64, 3)
    z = stack(x)
    tol = 1e-5  # absolute, on float32 values of size ~5: much tighter stalls at rounding level
    x_back = stack.inverse(z, tol=tol)
    assert (x_back - x).abs().max() < 1e-4
    stats = stack.inverse_stats
    assert [s["block"] for s in stats] == [0, 1, 2]
    assert all(set(s) == {"block", "iterations", "residual"} for s in stats)
    assert all(s["iterations"] >= 1 and s["residual"] <= tol for s in stats)


def test_stack_bad_input(stack):
    with pytest.raises(ValueError, match="'x'"):
        stack(torch.randn(4, 2))
    with pytest.raises(ValueError, match="'x'"):
        stack.flow(torch.randn(4, 4))
    with pytest.raises(ValueError, match="'z'"):
        stack.inverse(torch.randn(4, 2))
    with pytest.raises(ValueError, match="tol"):
        stack.inverse(torch.randn(4, 3), tol=0)
    with pytest.raises(ValueError, match="nets"):
        InvertibleResNet(3, nets=[])
    with pytest.raises(ValueError, match="n_blocks"):
        InvertibleResNet(3, n_blocks=0)


def test_stack_default_blocks_and_failing_block_is_named():
    torch.manual_seed(0)
    default = InvertibleResNet(2, n_blocks=3, hidden=(8,), lipschitz=0.5)
    assert len(default.blocks) == 3 and all(isinstance(b, ResidualBlock) for b in default.blocks)
    bad = InvertibleResNet(2, nets=[strong_branch(2, 0.5), exploding_mlp(2)])
    x = torch.randn(50, 2)
    with pytest.raises(FixedPointError, match="block 1 of 2.*did not converge") as info:
        bad.inverse(bad(x), max_iter=20)
    assert info.value.residual > 1e-5 and info.value.iterations == 20


# ---------------------------------------------------------------- IResNet

@pytest.fixture(scope="module")
def moons():
    return toy("two_moons").sample(2000, seed=0)


@pytest.fixture(scope="module")
def fitted(moons):
    torch.manual_seed(0)
    m = IResNet(data_shape=2, n_blocks=3, hidden=(32, 32), lipschitz=0.9, gamma=0.1)
    out = m.fit(moons, steps=30, progress=False)
    assert out is m
    return m


def test_iresnet_fit_history(fitted):
    df = fitted.history.df
    assert {"nll", "transport"} <= set(df.columns) and len(df) == 30
    assert df[["nll", "transport"]].notna().all().all() and (df["transport"] >= 0).all()
    assert df["nll"].iloc[-10:].mean() < df["nll"].iloc[:10].mean()  # it learns something
    assert fitted.logdet == "exact" and not fitted.training


def test_iresnet_encode_decode_sample(fitted, moons):
    x = moons[:200].to(fitted.device)
    z = fitted.encode(x)
    assert z.shape == (200, 2) and (z - x).abs().max() > 1e-2
    assert (fitted.decode(z) - x).abs().max() < 1e-3
    torch.manual_seed(1)
    s = fitted.sample(50)
    assert s.shape == (50, 2) and torch.isfinite(s).all()


def test_iresnet_log_prob_is_exact(fitted, moons):
    x = moons[:100].to(fitted.device)
    lp = fitted.log_prob(x)
    ref = standard_normal_log_prob(fitted.encode(x)) + exact_logdet(fitted.flow, x)
    assert lp.shape == (100,) and not lp.requires_grad
    assert torch.allclose(lp, ref.detach(), atol=1e-4)
    series = fitted.log_prob(x, logdet="series")
    assert (series - lp).abs().mean() < 0.5  # an estimate of the same thing
    with pytest.raises(ValueError, match="logdet"):
        fitted.log_prob(x, logdet="bogus")


def test_iresnet_save_load(fitted, moons, tmp_path):
    path = fitted.save(tmp_path / "iresnet.pt")
    loaded = IResNet.load(path).to(fitted.device)
    assert not loaded.training
    x = moons[:64]
    assert torch.equal(loaded.log_prob(x), fitted.log_prob(x))
    assert loaded.config["lipschitz"] == 0.9 and len(loaded.history) == len(fitted.history)


def test_iresnet_roulette_trains_without_nan(moons):
    torch.manual_seed(0)
    m = IResNet(2, n_blocks=2, hidden=(16,), lipschitz=0.9, logdet="roulette")
    m.fit(moons, steps=5, progress=False, batch_size=128)
    df = m.history.df
    assert m.logdet == "roulette" and len(df) == 5
    assert torch.isfinite(torch.tensor(df[["nll", "transport"]].values)).all()
    assert all(torch.isfinite(p).all() for p in m.parameters())


def test_iresnet_default_logdet_by_dimension():
    assert IResNet(4, n_blocks=1, hidden=(4,)).logdet == "exact"
    assert IResNet(17, n_blocks=1, hidden=(4,)).logdet == "roulette"
    assert IResNet(4, n_blocks=1, hidden=(4,), logdet="series").logdet == "series"


@pytest.mark.parametrize("kw, match", [(dict(data_shape=(1, 4, 4)), "data_shape"), (dict(gamma=-1), "gamma"),
                                       (dict(logdet="bogus"), "logdet"), (dict(lipschitz=1.0), "lipschitz"),
                                       (dict(n_terms=0), "n_terms"), (dict(tol=0), "tol")])
def test_iresnet_bad_arguments(kw, match):
    args = dict(data_shape=2, n_blocks=1, hidden=(4,)) | kw
    with pytest.raises(ValueError, match=match):
        IResNet(**args)


def test_iresnet_fit_wrong_width():
    m = IResNet(2, n_blocks=1, hidden=(4,))
    with pytest.raises(ValueError, match="'x'"):
        m.fit(torch.randn(50, 3), steps=1, progress=False)
    with pytest.raises(ValueError, match="'z'"):
        m.decode(torch.randn(5, 3))


def test_contraction_branch_is_at_its_bound():
    "f(x) = c tanh(Qx): J_f(0) = c Q with Q orthogonal, and ||J_f(x)||_2 <= c everywhere."
    from invgen_lit.density import exact_jacobian
    from invgen_lit.iresnet import ContractionBranch
    f = ContractionBranch(6, c=0.7, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(f.Q @ f.Q.T, torch.eye(6), atol=1e-5, rtol=0)
    J0 = exact_jacobian(f, torch.zeros(1, 6))[0]
    torch.testing.assert_close(torch.linalg.matrix_norm(J0, 2), torch.tensor(0.7), atol=1e-5, rtol=0)
    norms = torch.linalg.matrix_norm(exact_jacobian(f, 2 * torch.randn(500, 6)), 2)
    assert norms.max() <= 0.7 + 1e-5 and norms.min() < 0.7
    with pytest.raises(ValueError, match="'c'"): ContractionBranch(3, c=1.5)
    with pytest.raises(ValueError, match="'dim'"): ContractionBranch(0)


def test_default_logdet_is_exact_only_for_small_dimensions():
    "Exact log-det costs D backward passes per block: the flows switch to the roulette series above D = 16."
    from invgen_lit.ignn import ConditionalFlow
    assert IResNet(16).logdet == "exact" and IResNet(17).logdet == "roulette"
    assert ConditionalFlow(16, n_classes=2).logdet == "exact" and ConditionalFlow(17, n_classes=2).logdet == "roulette"
    path = torch.tensor([[0., 1, 0], [1, 0, 1], [0, 1, 0]])
    assert ConditionalFlow((3, 6), n_classes=2, adjacency=path).logdet == "roulette"  # V d = 18
