"""Tests of invgen_lit.density: change of variables, exact log-det/trace, Hutchinson, coarea formula, latent KDE."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from invgen_lit import density
from invgen_lit.core import CheckpointError, save_checkpoint
from invgen_lit.density import (PROBES, LatentKDE, bandwidth_rule, change_of_variables, divergence, exact_jacobian,
                                exact_logdet, exact_trace, hutchinson_samples, hutchinson_trace, hutchinson_variance,
                                injective_change_of_variables, injective_logdet, jacobian_trace, kde_log_prob,
                                kde_loo_log_likelihood, sample_probes, standard_normal_log_prob)

DT = torch.float64


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def linear(M):
    "The batched linear map x -> M x (Jacobian M everywhere)."
    return lambda x: x @ M.T


@pytest.fixture
def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 6)).double()


# ---------------------------------------------------------------- exact log-det and trace


@pytest.mark.parametrize("D", [1, 3, 7])
def test_exact_logdet_linear_matches_closed_form(D):
    M = torch.randn(D, D, generator=gen(D), dtype=DT) + 2 * torch.eye(D, dtype=DT)
    x = torch.randn(5, D, generator=gen(1), dtype=DT)
    expected = torch.linalg.slogdet(M).logabsdet.expand(5)
    torch.testing.assert_close(exact_logdet(linear(M), x), expected)
    torch.testing.assert_close(exact_trace(linear(M), x), M.trace().expand(5))
    assert jacobian_trace is exact_trace


def test_exact_jacobian_of_mlp_matches_finite_differences(mlp):
    x = torch.randn(3, 6, generator=gen(2), dtype=DT)
    J = exact_jacobian(mlp, x)
    assert J.shape == (3, 6, 6)
    h = 1e-6
    fd = torch.stack([(mlp(x + h * e) - mlp(x - h * e)) / (2 * h) for e in torch.eye(6, dtype=DT)], -1)
    torch.testing.assert_close(J, fd, atol=1e-7, rtol=1e-6)
    # rows are independent: the Jacobian of one row does not depend on the batch it sits in
    torch.testing.assert_close(exact_jacobian(mlp, x[1:2])[0], J[1])


def test_change_of_variables_affine_is_gaussian():
    A = torch.tensor([[2.0, 0.3], [-0.4, 0.8]], dtype=DT)
    b = torch.tensor([0.5, -1.0], dtype=DT)
    Ainv = torch.linalg.inv(A)
    x = torch.randn(100, 2, generator=gen(3), dtype=DT) * 3
    lp = change_of_variables(lambda x: (x - b) @ Ainv.T, x)
    torch.testing.assert_close(lp, torch.distributions.MultivariateNormal(b, A @ A.T).log_prob(x))


def test_change_of_variables_nonlinear_integrates_to_one():
    # x2 = z2 * exp(z1) ... inverse f(x) = (x1, x2 exp(-x1 / 2)): log|det J_f| = -x1 / 2
    f = lambda x: torch.stack([x[:, 0], x[:, 1] * torch.exp(-0.5 * x[:, 0])], 1)
    g1, g2 = torch.linspace(-7, 7, 281, dtype=DT), torch.linspace(-40, 40, 801, dtype=DT)
    G1, G2 = torch.meshgrid(g1, g2, indexing="ij")
    pts = torch.stack([G1.flatten(), G2.flatten()], 1)
    torch.testing.assert_close(exact_logdet(f, pts[:50]), -0.5 * pts[:50, 0])
    p = change_of_variables(f, pts).exp().reshape(G1.shape)
    assert abs(torch.trapezoid(torch.trapezoid(p, g2, dim=1), g1).item() - 1) < 2e-3


def test_standard_normal_log_prob():
    z = torch.randn(10, 3, generator=gen(4), dtype=DT)
    torch.testing.assert_close(standard_normal_log_prob(z), torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1))


# ---------------------------------------------------------------- Hutchinson


@pytest.mark.parametrize("probe", PROBES)
def test_probes_have_zero_mean_and_identity_covariance(probe):
    v = sample_probes((40000, 4), probe, gen(5), dtype=DT)
    assert v.mean(0).abs().max() < 4 / math.sqrt(40000) * 1.5
    assert (v.T @ v / len(v) - torch.eye(4, dtype=DT)).abs().max() < 0.03
    if probe == "rademacher":
        assert set(v.unique().tolist()) == {-1.0, 1.0}


@pytest.mark.parametrize("probe", PROBES)
def test_hutchinson_unbiased_within_four_standard_errors(probe):
    A = torch.randn(10, 10, generator=gen(6), dtype=DT)        # non-symmetric on purpose
    x = torch.zeros(1, 10, dtype=DT)
    m = 20000
    s = hutchinson_samples(linear(A), x, n_probes=m, probe=probe, generator=gen(7))[:, 0]
    se = s.std() / math.sqrt(m)
    assert abs(s.mean() - A.trace()) < 4 * se
    # the mean of the samples is what hutchinson_trace returns for the same probes
    torch.testing.assert_close(hutchinson_trace(linear(A), x, n_probes=m, probe=probe, generator=gen(7)), s.mean().reshape(1))


@pytest.mark.parametrize("probe", PROBES)
def test_hutchinson_variance_formula(probe):
    A = torch.randn(6, 6, generator=gen(8), dtype=DT)
    m = 40000
    s = hutchinson_samples(linear(A), torch.zeros(1, 6, dtype=DT), n_probes=m, probe=probe, generator=gen(9))[:, 0]
    S = 0.5 * (A + A.T)
    expected = 2 * (S ** 2).sum() - (2 * (S.diagonal() ** 2).sum() if probe == "rademacher" else 0)
    torch.testing.assert_close(hutchinson_variance(A, probe), expected)
    se_var = math.sqrt(((s - s.mean()) ** 4).mean().item() - s.var().item() ** 2) / math.sqrt(m)
    assert abs(s.var().item() - expected.item()) < 4 * se_var


def test_rademacher_exact_for_diagonal_gaussian_not():
    d = torch.randn(5, generator=gen(10), dtype=DT)
    f = linear(torch.diag(d))
    x = torch.randn(3, 5, generator=gen(11), dtype=DT)
    s = hutchinson_samples(f, x, n_probes=30, probe="rademacher", generator=gen(12))
    torch.testing.assert_close(s, d.sum().expand(30, 3))
    assert hutchinson_variance(torch.diag(d), "rademacher") == 0
    assert hutchinson_samples(f, x, n_probes=30, probe="gaussian", generator=gen(12)).std() > 0.1
    # an elementwise nonlinearity has a diagonal Jacobian too
    torch.testing.assert_close(hutchinson_trace(torch.tanh, x, n_probes=1), exact_trace(torch.tanh, x))


def test_rademacher_never_worse_than_gaussian():
    A = torch.randn(20, 8, 8, generator=gen(13), dtype=DT)
    assert (hutchinson_variance(A, "rademacher") <= hutchinson_variance(A, "gaussian") + 1e-12).all()


def test_hutchinson_on_mlp_rows_and_chunks(mlp, monkeypatch):
    x = torch.randn(4, 6, generator=gen(14), dtype=DT)
    m = 3000
    s = hutchinson_samples(mlp, x, n_probes=m, generator=gen(15))
    assert s.shape == (m, 4)
    monkeypatch.setattr(density, "_PROBE_ELEMENTS", 7 * x.numel())   # chunks of 7 probes, the last one shorter
    torch.testing.assert_close(hutchinson_samples(mlp, x, n_probes=m, generator=gen(15)), s)
    monkeypatch.undo()
    tr = exact_trace(mlp, x)
    assert ((s.mean(0) - tr).abs() < 4 * s.std(0) / math.sqrt(m)).all()
    # the batched (chunked) backward agrees with one probe at a time
    eps = sample_probes((3, 4, 6), "gaussian", gen(16), dtype=DT)
    one_by_one = torch.stack([hutchinson_samples(mlp, x, eps=e)[0] for e in eps])
    torch.testing.assert_close(hutchinson_samples(mlp, x, eps=eps), one_by_one)


def test_hutchinson_of_constant_map_is_zero():
    x = torch.randn(3, 4, dtype=DT)
    torch.testing.assert_close(hutchinson_trace(lambda x: torch.ones_like(x), x, n_probes=2), torch.zeros(3, dtype=DT))


# ---------------------------------------------------------------- divergence for CNFs


def test_divergence_value_exact_and_gradients(mlp):
    x = torch.randn(5, 6, generator=gen(17), dtype=DT)
    y, div = divergence(mlp, x, method="exact")
    torch.testing.assert_close(y, mlp(x))
    torch.testing.assert_close(div, exact_trace(mlp, x))
    eps = sample_probes((5, 6), "rademacher", gen(18), dtype=DT)
    torch.testing.assert_close(divergence(mlp, x, eps=eps)[1], (torch.autograd.functional.vjp(mlp, x, eps)[1] * eps).sum(-1))
    for method in ("exact", "hutchinson"):
        mlp.zero_grad()
        _, d = divergence(mlp, x, method=method, create_graph=True)
        assert d.requires_grad
        d.sum().backward()
        assert mlp[2].weight.grad.abs().sum() > 0
    with torch.no_grad():
        y, d = divergence(mlp, x)
    assert not d.requires_grad and not y.requires_grad


def test_divergence_through_upstream_graph():
    # in a CNF the state may itself carry a graph; the divergence must use it, not a detached copy
    w = torch.tensor(2.0, dtype=DT, requires_grad=True)
    x = torch.randn(4, 3, dtype=DT) * w
    _, d = divergence(lambda x: x ** 2, x, method="hutchinson", eps=torch.ones(4, 3, dtype=DT), create_graph=True)
    torch.testing.assert_close(d, 2 * x.sum(-1))
    d.sum().backward()
    assert w.grad is not None


# ---------------------------------------------------------------- injective maps (coarea formula)


def test_injective_logdet_linear_map_is_degenerate_gaussian():
    W = torch.randn(6, 3, generator=gen(19), dtype=DT)
    z = torch.randn(50, 3, generator=gen(20), dtype=DT)
    torch.testing.assert_close(injective_logdet(linear(W), z), (0.5 * torch.logdet(W.T @ W)).expand(50))
    x, lp = injective_change_of_variables(linear(W), z)
    Q, R = torch.linalg.qr(W)
    torch.testing.assert_close(x, z @ W.T)
    ref = stats.multivariate_normal(np.zeros(3), (R @ R.T).numpy()).logpdf((x @ Q).numpy())
    torch.testing.assert_close(lp, torch.from_numpy(ref))


def test_injective_square_case_is_change_of_variables():
    M = torch.randn(3, 3, generator=gen(21), dtype=DT)
    z = torch.randn(4, 3, generator=gen(22), dtype=DT)
    torch.testing.assert_close(injective_logdet(linear(M), z), exact_logdet(linear(M), z))


@pytest.mark.parametrize("r", [0.5, 1.0, 3.0])
def test_circle_uniform_density(r):
    uniform = lambda t: torch.full((len(t),), -math.log(2 * math.pi), dtype=t.dtype)
    t = torch.rand(30, 1, generator=gen(23), dtype=DT) * 2 * math.pi
    x, lp = injective_change_of_variables(lambda t: r * torch.cat([t.cos(), t.sin()], 1), t, uniform)
    torch.testing.assert_close(x.norm(dim=1), torch.full((30,), r, dtype=DT))
    torch.testing.assert_close(lp.exp(), torch.full((30,), 1 / (2 * math.pi * r), dtype=DT))


def test_sphere_area_archimedes():
    # (u, phi) uniform on (-1, 1) x (0, 2 pi) with u = cos(polar angle): uniform on the sphere, density 1 / (4 pi r^2)
    r = 1.3
    def sphere(q):
        u, phi = q[:, 0], q[:, 1]
        s = (1 - u ** 2).sqrt()
        return r * torch.stack([s * phi.cos(), s * phi.sin(), u], 1)
    q = torch.rand(20, 2, generator=gen(24), dtype=DT) * torch.tensor([1.8, 2 * math.pi], dtype=DT) - torch.tensor([0.9, 0], dtype=DT)
    _, lp = injective_change_of_variables(sphere, q, lambda q: torch.full((len(q),), -math.log(4 * math.pi), dtype=DT))
    torch.testing.assert_close(lp.exp(), torch.full((20,), 1 / (4 * math.pi * r ** 2), dtype=DT))


# ---------------------------------------------------------------- latent KDE


def test_kde_single_point_is_gaussian():
    z0 = torch.tensor([[1.0, -2.0, 0.5]], dtype=DT)
    q = torch.randn(20, 3, generator=gen(25), dtype=DT)
    torch.testing.assert_close(LatentKDE(0.3).fit(z0).log_prob(q), torch.distributions.Normal(z0, 0.3).log_prob(q).sum(-1))


def test_kde_far_from_data_stays_finite():
    kde = LatentKDE(0.1).fit(torch.zeros(3, 2, dtype=DT))
    lp = kde.log_prob(torch.tensor([[100.0, 0.0]], dtype=DT))
    assert torch.isfinite(lp).all()
    torch.testing.assert_close(lp, torch.distributions.Normal(0.0, 0.1).log_prob(torch.tensor([100.0, 0.0], dtype=DT)).sum().reshape(1))


def test_kde_matches_scipy_1d_and_2d():
    Z = torch.randn(200, 1, generator=gen(26), dtype=DT) ** 3
    h = 0.25
    q = torch.linspace(-4, 4, 101, dtype=DT)[:, None]
    ref = stats.gaussian_kde(Z[:, 0].numpy(), bw_method=h / Z[:, 0].std().item()).logpdf(q[:, 0].numpy())
    torch.testing.assert_close(LatentKDE(h).fit(Z).log_prob(q), torch.from_numpy(ref))
    # 2-D: equal when the data's sample covariance is the identity
    Z2 = torch.randn(300, 2, generator=gen(27), dtype=DT)
    Z2 = Z2 - Z2.mean(0)
    Z2 = Z2 @ torch.linalg.inv(torch.linalg.cholesky(torch.cov(Z2.T))).T
    q2 = torch.randn(40, 2, generator=gen(28), dtype=DT) * 2
    kde_ref = stats.gaussian_kde(Z2.T.numpy(), bw_method="silverman")
    ours = LatentKDE("silverman").fit(Z2)
    torch.testing.assert_close(ours.h, kde_ref.factor)
    torch.testing.assert_close(ours.log_prob(q2), torch.from_numpy(kde_ref.logpdf(q2.T.numpy())))


@pytest.mark.parametrize("d", [1, 2])
def test_kde_integrates_to_one(d):
    Z = torch.randn(50, d, generator=gen(29), dtype=DT)
    kde = LatentKDE(0.4).fit(Z)
    g = torch.linspace(-6, 6, 301 if d == 1 else 121, dtype=DT)
    if d == 1:
        mass = torch.trapezoid(kde.log_prob(g[:, None]).exp(), g)
    else:
        G1, G2 = torch.meshgrid(g, g, indexing="ij")
        p = kde.log_prob(torch.stack([G1.flatten(), G2.flatten()], 1)).exp().reshape(G1.shape)
        mass = torch.trapezoid(torch.trapezoid(p, g, dim=1), g)
    assert abs(mass.item() - 1) < 1e-4


def test_kde_sample_moments():
    Z = torch.randn(100, 2, generator=gen(30), dtype=DT) * torch.tensor([1.0, 2.0], dtype=DT) + torch.tensor([3.0, -1.0], dtype=DT)
    h = 0.7
    n = 200000
    x = LatentKDE(h).fit(Z).sample(n, generator=gen(31))
    assert x.shape == (n, 2) and x.dtype == DT
    cov_pred = torch.cov(Z.T, correction=0) + h ** 2 * torch.eye(2, dtype=DT)
    assert ((x.mean(0) - Z.mean(0)).abs() < 5 * cov_pred.diagonal().sqrt() / math.sqrt(n)).all()
    assert ((torch.cov(x.T) - cov_pred).abs() < 0.05 * cov_pred.diagonal().max()).all()
    # samples follow the KDE: they score higher under it than under a KDE with a wrong bandwidth
    assert LatentKDE(h).fit(Z).log_prob(x[:5000]).mean() > LatentKDE(h / 4).fit(Z).log_prob(x[:5000]).mean()


def test_kde_sample_is_seeded():
    kde = LatentKDE(0.5).fit(torch.randn(10, 3))
    assert torch.equal(kde.sample(7, generator=gen(1)), kde.sample(7, generator=gen(1)))
    assert kde.sample(0).shape == (0, 3)


def test_bandwidth_rules_match_scipy_factors():
    Z = torch.randn(500, 3, generator=gen(32), dtype=DT)
    Z = Z - Z.mean(0)
    Z = Z @ torch.linalg.inv(torch.linalg.cholesky(torch.cov(Z.T))).T
    ref = stats.gaussian_kde(Z.T.numpy())
    assert math.isclose(bandwidth_rule(Z, "scott"), ref.scotts_factor(), rel_tol=1e-10)
    assert math.isclose(bandwidth_rule(Z, "silverman"), ref.silverman_factor(), rel_tol=1e-10)
    assert math.isclose(bandwidth_rule(3 * Z, "scott"), 3 * ref.scotts_factor(), rel_tol=1e-10)


def test_loo_likelihood_matches_brute_force_and_selection():
    Z = torch.randn(40, 2, generator=gen(33), dtype=DT)
    hs = torch.tensor([0.2, 0.5, 1.0], dtype=DT)
    brute = torch.stack([torch.stack([kde_log_prob(Z[i:i + 1], torch.cat([Z[:i], Z[i + 1:]]), h)[0] for i in range(40)]).mean()
                         for h in hs])
    torch.testing.assert_close(kde_loo_log_likelihood(Z, hs, chunk=7), brute)
    kde = LatentKDE(None, grid=15).fit(Z)
    grid, ll = kde.loo_curve
    assert kde.h == grid[ll.argmax()].item() and grid.shape == (15,)
    # on a large sample from N(0, 1) the held-out optimum is close to the asymptotically optimal h (Scott is optimal for a Gaussian)
    big = torch.randn(800, 1, generator=gen(34), dtype=DT)
    assert 0.5 < LatentKDE(None).fit(big).h / bandwidth_rule(big, "scott") < 2


def test_kde_bandwidth_vector():
    Z = torch.randn(30, 2, generator=gen(35), dtype=DT)
    q = torch.randn(5, 2, generator=gen(36), dtype=DT)
    hs = torch.tensor([0.1, 0.3], dtype=DT)
    out = kde_log_prob(q, Z, hs)
    assert out.shape == (2, 5)
    torch.testing.assert_close(out[1], kde_log_prob(q, Z, 0.3))


def test_kde_save_load_roundtrip(tmp_path):
    kde = LatentKDE("scott").fit(torch.randn(25, 4, generator=gen(37)))
    kde.save(tmp_path / "k.pt")
    back = LatentKDE.load(tmp_path / "k.pt")
    q = torch.randn(6, 4)
    assert back.h == kde.h and back.bandwidth == "scott" and torch.equal(back.log_prob(q), kde.log_prob(q))
    save_checkpoint({"class": "Other"}, tmp_path / "o.pt")
    with pytest.raises(CheckpointError, match="not a 'LatentKDE'"):
        LatentKDE.load(tmp_path / "o.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError):
        LatentKDE.load(tmp_path / "junk.pt")


# ---------------------------------------------------------------- bad input


def test_bad_input_jacobians():
    x = torch.randn(4, 3)
    with pytest.raises(TypeError, match="'f'"):
        exact_logdet("not a function", x)
    with pytest.raises(ValueError, match="'x'.*2 dimensions"):
        exact_logdet(torch.tanh, torch.randn(3))
    with pytest.raises(ValueError, match="square Jacobian"):
        exact_logdet(lambda x: x[:, :2], x)
    with pytest.raises(ValueError, match="'f'.*batch"):
        exact_jacobian(lambda x: x.sum(), x)
    with pytest.raises(TypeError, match="'x'"):
        exact_trace(torch.tanh, [[1.0, 2.0]])
    with pytest.raises(ValueError, match="finite"):
        exact_trace(torch.tanh, torch.tensor([[float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="D >= d"):
        injective_logdet(lambda z: z[:, :1], torch.randn(3, 2))
    with pytest.raises(TypeError, match="'base_log_prob'"):
        change_of_variables(torch.tanh, x, base_log_prob=3)


def test_bad_input_hutchinson():
    x = torch.randn(4, 3)
    for bad in (0, -2):
        with pytest.raises(ValueError, match="'n_probes'"):
            hutchinson_trace(torch.tanh, x, n_probes=bad)
    with pytest.raises(TypeError, match="'n_probes'"):
        hutchinson_trace(torch.tanh, x, n_probes=1.5)
    with pytest.raises(ValueError, match=r"'probe'.*\['rademacher', 'gaussian'\].*'normal'"):
        hutchinson_trace(torch.tanh, x, probe="normal")
    with pytest.raises(ValueError, match="'probe'"):
        sample_probes((2, 3), "uniform")
    with pytest.raises(ValueError, match="'f'.*R\\^D -> R\\^D"):
        hutchinson_trace(lambda x: x[:, :2], x)
    with pytest.raises(ValueError, match="'eps'"):
        hutchinson_trace(torch.tanh, x, eps=torch.randn(4, 2))
    with pytest.raises(ValueError, match="'method'.*'hutchinson', 'exact'"):
        divergence(torch.tanh, x, method="approx")
    with pytest.raises(ValueError, match="'A'"):
        hutchinson_variance(torch.randn(3, 4))
    with pytest.raises(ValueError, match="'probe'"):
        hutchinson_variance(torch.eye(3), "sphere")


def test_bad_input_kde():
    with pytest.raises(ValueError, match="'bandwidth'"):
        LatentKDE(-0.5)
    with pytest.raises(ValueError, match="'bandwidth'"):
        LatentKDE(0.0)
    with pytest.raises(ValueError, match=r"'bandwidth'.*\['scott', 'silverman'\]"):
        LatentKDE("auto")
    with pytest.raises(TypeError, match="'bandwidth'"):
        LatentKDE(float("nan"))
    with pytest.raises(TypeError, match="'bandwidth'"):
        LatentKDE(True)
    with pytest.raises(ValueError, match="'Z'.*2 dimensions"):
        LatentKDE(0.5).fit(torch.randn(10))
    with pytest.raises(ValueError, match="'Z'.*at least 2 rows"):
        LatentKDE("scott").fit(torch.randn(1, 2))
    with pytest.raises(ValueError, match="identical"):
        LatentKDE("scott").fit(torch.zeros(5, 2))
    kde = LatentKDE(0.5).fit(torch.randn(10, 2))
    with pytest.raises(ValueError, match=r"'z'.*\(n, 2\)"):
        kde.log_prob(torch.randn(4, 3))
    with pytest.raises(ValueError, match="'n'"):
        kde.sample(-1)
    with pytest.raises(RuntimeError, match="fit"):
        LatentKDE(0.5).sample(3)
    with pytest.raises(ValueError, match="'bandwidth'"):
        kde_log_prob(torch.randn(2, 2), torch.randn(5, 2), -1.0)
    with pytest.raises(ValueError, match="'bandwidths'"):
        kde_loo_log_likelihood(torch.randn(5, 2), torch.tensor([0.1, -0.1]))
    with pytest.raises(ValueError, match="'rule'"):
        bandwidth_rule(torch.randn(5, 2), "cv")


def test_exact_jacobian_forward_mode_matches_reverse_mode():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(7, 3, generator=g, dtype=torch.float64)
    f = lambda z: torch.tanh(z @ A.T)
    z = torch.randn(11, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(exact_jacobian(f, z, mode="forward"), exact_jacobian(f, z, mode="reverse"))
    with pytest.raises(ValueError, match="argument 'mode'"):
        exact_jacobian(f, z, mode="sideways")
