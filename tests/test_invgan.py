"""InvGAN (Ren 2020): the variance network, Eq. 4, Algorithm 1, baselines, bad input."""
import time

import pytest
import torch

from invgen_lit.core import CheckpointError, set_seed
from invgen_lit.data import Manifold6D, digits
from invgen_lit.density import exact_jacobian, standard_normal_log_prob
from invgen_lit.invgan import (Autoencoder, DegenerateMetricError, InvGAN, RBFVariance, RealNVP, align_offset,
                               detection_report, kmeans_centres, log_prob_per_row, minmax_anomaly_score, rbf_bandwidths,
                               rbf_sigma, rbf_sigma_jacobian)
from invgen_lit.metrics import revised_bits_per_dim

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def m6():
    return Manifold6D()


@pytest.fixture(scope="module")
def trained(m6):
    "An InvGAN after a short run on the 6-D manifold (enough for non-trivial networks)."
    set_seed(0)
    return InvGAN(6, 2, hidden=(32, 32)).fit(m6.sample(2000, seed=0), steps=200, progress=False)


# --- the variance network (Sec. 2.1, Lemma 1) ---

def test_rbf_bandwidths_follow_the_cluster_spread():
    Z = torch.tensor([[0., 0.], [2., 0.], [10., 10.], [10., 14.]], dtype=torch.float64)
    centres, labels = torch.tensor([[1., 0.], [10., 12.]], dtype=torch.float64), torch.tensor([0, 0, 1, 1])
    lam = rbf_bandwidths(Z, centres, labels, a=2.0)
    torch.testing.assert_close(lam, torch.tensor([0.5 / (2 * 1.0) ** 2, 0.5 / (2 * 2.0) ** 2], dtype=torch.float64))


def test_kmeans_centres_recovers_separated_clusters():
    Z = torch.cat([torch.randn(200, 2) * 0.1 + 5, torch.randn(200, 2) * 0.1 - 5])
    centres, labels = kmeans_centres(Z, 2)
    assert sorted(centres[:, 0].round().tolist()) == [-5.0, 5.0]
    assert len(set(labels[:200].tolist())) == 1 and labels[0] != labels[-1]


def test_rbf_sigma_jacobian_matches_autograd():
    g = torch.Generator().manual_seed(0)
    C, lam = torch.randn(7, 3, generator=g, dtype=torch.float64), torch.rand(7, generator=g, dtype=torch.float64) + 0.2
    W, z = torch.randn(5, 7, generator=g, dtype=torch.float64), torch.randn(20, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(rbf_sigma_jacobian(z, C, lam, W, 1e-6), exact_jacobian(lambda q: rbf_sigma(q, C, lam, W, 1e-6), z))


@pytest.mark.parametrize("d", [2, 5, 12])
def test_lemma1_full_rank_with_d_plus_1_centres(d):
    net = RBFVariance(d, 20, n_centres=d + 1, n_samples=2000).double()
    z = torch.randn(2000, d, dtype=torch.float64)
    J = net.jacobian(z)
    ev = torch.linalg.eigvalsh(J.mT @ J)
    assert (ev[:, 0] > 1e-12 * ev[:, -1]).all()


def test_lemma1_fails_on_the_line_through_d_centres():
    "With K = d = 2 centres, the metric of sigma is singular on the line through them (why K >= d + 1)."
    C = torch.tensor([[-1., 0.], [1., 0.]], dtype=torch.float64)
    lam = torch.full((2,), 0.5, dtype=torch.float64)
    W = torch.rand(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) + 0.5
    on_line = torch.stack([torch.linspace(-2, 2, 50, dtype=torch.float64), torch.zeros(50, dtype=torch.float64)], 1)
    off_line = on_line + torch.tensor([0., 0.7], dtype=torch.float64)
    def relative_min_eig(z):
        J = rbf_sigma_jacobian(z, C, lam, W)
        ev = torch.linalg.eigvalsh(J.mT @ J)
        return ev[:, 0] / ev[:, -1]
    assert (relative_min_eig(on_line) < 1e-14).all() and (relative_min_eig(off_line) > 1e-6).all()


def test_too_few_centres_is_refused_with_lemma1():
    with pytest.raises(ValueError, match=r"n_centres.*at least latent_dim \+ 1 = 4.*Lemma 1"):
        RBFVariance(3, 10, n_centres=3)
    with pytest.raises(ValueError, match="Lemma 1"):
        InvGAN(6, 2, n_centres=2)


def test_lemma1_can_fail_when_there_are_more_centres_than_outputs():
    "K = 64 > D = 6: a non-negative W^2 of full rank D, orthogonal to V E u, and a generator flat along u give a singular metric."
    d, D, K = 2, 6, 64
    Z = torch.randn(5000, d, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    C, labels = kmeans_centres(Z, K)
    lam = rbf_bandwidths(Z, C, labels)
    z0, u = torch.tensor([[0.3, -0.2]], dtype=torch.float64), torch.tensor([0., 1.], dtype=torch.float64)
    a = (-2 * lam * torch.exp(-lam * (z0 - C).pow(2).sum(1))) * ((z0 - C) @ u)
    pos, neg = a.argsort(descending=True)[:D], a.argsort()[:D]
    W2 = torch.zeros(D, K, dtype=torch.float64)
    for i, (p, n) in enumerate(zip(pos, neg)): W2[i, p], W2[i, n] = -a[n], a[p]
    assert torch.linalg.matrix_rank(W2) == D and (W2 >= 0).all()
    Js = rbf_sigma_jacobian(z0, C, lam, W2.sqrt(), 1e-6)
    Jg = torch.tensor([[[1.0, 0.0]] * D], dtype=torch.float64)           # a generator flat along u = e_2
    ev = torch.linalg.eigvalsh(Jg.mT @ Jg + Js.mT @ Js)[0]
    assert ev[0] < 1e-14 * ev[1]


def test_default_centres_meet_lemma1s_proof():
    "K defaults to min(64, D), at least d + 1: d + 1 <= K <= D wherever D allows it."
    for D, d, K in [(6, 2, 6), (64, 32, 64), (30, 4, 30), (256, 16, 64), (2, 2, 3)]:
        assert len(InvGAN(D, d, hidden=(4,), kmeans_samples=500).sigma.centres) == K
    assert len(InvGAN(6, 2, n_centres=10, kmeans_samples=500).sigma.centres) == 10


def test_each_seed_draws_its_own_W_but_the_same_centres():
    set_seed(1); a = InvGAN(6, 2, kmeans_samples=500)
    set_seed(2); b = InvGAN(6, 2, kmeans_samples=500)
    set_seed(1); c = InvGAN(6, 2, kmeans_samples=500)
    assert not torch.equal(a.sigma.W, b.sigma.W) and torch.equal(a.sigma.W, c.sigma.W)
    assert torch.equal(a.sigma.centres, b.sigma.centres)


def test_eq4_is_a_jensen_lower_bound(trained):
    "E_eps log det(J_f^T J_f) <= log det M~: Eq. 4 never exceeds the Monte Carlo expected log-likelihood (beyond its error)."
    z = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    J = exact_jacobian(trained.stacked_map(), z)
    eps = torch.randn(4000, 1, 6, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    ld = torch.linalg.slogdet((J[:, :6] + eps * J[:, 6:]).mT @ (J[:, :6] + eps * J[:, 6:])).logabsdet
    gap = torch.linalg.slogdet(trained.metric(z)).logabsdet - ld.mean(0)
    assert (gap > -4 * ld.std(0) / 4000 ** 0.5).all()


def test_sigma_is_small_near_the_prior_and_capped_far_away():
    net = RBFVariance(2, 3, n_centres=32, n_samples=2000, floor=1e-6)
    near, far = net(torch.zeros(1, 2)), net(torch.full((1, 2), 50.0))
    assert (near < far).all() and torch.allclose(far, torch.full_like(far, 1e3), rtol=1e-3)


# --- Algorithm 1 and the objective ---

def test_hs_objective_is_gaussian_loglik_minus_kl(m6):
    set_seed(0)
    model = InvGAN(6, 2)
    x = m6.sample(64, seed=1)
    out = model.hs_objective(x)
    with torch.no_grad():
        z = model.H(x)
        ll = torch.distributions.Normal(model.G(z), model.sigma(z)).log_prob(x).sum(1).mean()
        kl = torch.distributions.kl_divergence(torch.distributions.Normal(z.mean(0), z.std(0)), torch.distributions.Normal(0., 1.)).sum()
    torch.testing.assert_close(out["loglik"].detach(), ll, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(out["kl"].detach(), kl, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(out["L_hs"].detach(), ll - kl, rtol=1e-5, atol=1e-4)


def test_the_hs_step_does_not_move_the_generator(m6):
    "Algorithm 1, line 11 updates h and sigma only; g must not see that step's gradient."
    set_seed(0)
    model = InvGAN(6, 2)
    x = m6.sample(64, seed=2)
    G0 = [p.detach().clone() for p in model.G.parameters()]
    model.G.requires_grad_(False)
    loss = -model.hs_objective(x)["L_hs"]
    model.G.requires_grad_(True)
    loss.backward()
    assert all(p.grad is None for p in model.G.parameters())
    assert model.sigma.W.grad is not None and all(p.grad is not None for p in model.H.parameters())
    assert all(torch.equal(a, b) for a, b in zip(G0, model.G.parameters()))


def test_fit_reads_the_profile_budget_and_trains(m6):
    set_seed(0)
    model = InvGAN(6, 2).fit(m6.sample(500, seed=3), progress=False)   # smoke profile in the test suite: 30 steps
    df = model.history.df
    assert len(df) == InvGAN.steps_by_profile["smoke"]
    assert {"d_loss", "g_loss", "L_hs", "kl", "loglik", "latent_rec"} <= set(df.columns)


def test_latent_reconstruction_improves_with_training(trained):
    df = trained.history.df
    assert df["latent_rec"].tail(20).mean() < 0.5 * df["latent_rec"].head(20).mean()
    assert df["L_hs"].tail(20).mean() > df["L_hs"].head(20).mean()


# --- Eq. 4 ---

def test_batched_log_prob_matches_the_per_row_loop(trained, m6):
    x = m6.sample(64, seed=4)
    torch.testing.assert_close(trained.log_prob(x), log_prob_per_row(trained, x), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(trained.log_prob(x, mode="reverse"), trained.log_prob(x), rtol=1e-6, atol=1e-5)


def test_metric_is_the_sum_of_generator_and_variance_parts(trained):
    z = torch.randn(16, 2, dtype=torch.float64)
    Jg = exact_jacobian(lambda q: trained.stacked_map()(q)[:, :6], z)
    s = trained.sigma
    Js = rbf_sigma_jacobian(z, s.centres.double(), s.lam.double(), s.W.double(), s.floor)
    torch.testing.assert_close(trained.metric(z), Jg.mT @ Jg + Js.mT @ Js)


def test_likelihood_terms_add_up(trained, m6):
    L = trained.likelihood(m6.sample(32, seed=5))
    torch.testing.assert_close(L.log_prob, L.log_pz - 0.5 * L.logdet)
    torch.testing.assert_close(L.log_pz, standard_normal_log_prob(L.z), rtol=1e-5, atol=1e-5)


def test_linear_generator_gives_the_exact_plane_density():
    model = InvGAN(5, 2, hidden=())
    with torch.no_grad(): model.sigma.W.zero_()
    A = model.G.net[0].effective_weight().double()
    x = model.decode(torch.randn(20, 2)).detach()
    L = model.likelihood(x)
    torch.testing.assert_close(L.log_prob.double(), standard_normal_log_prob(L.z.double()) - 0.5 * torch.logdet(A.T @ A),
                               rtol=1e-4, atol=1e-4)


def test_degenerate_metric_names_the_rows():
    model = InvGAN(5, 2, hidden=())
    with torch.no_grad():
        model.sigma.W.zero_()
        model.G.net[0].weight[:, 1] = model.G.net[0].weight[:, 0]
    x = torch.randn(6, 5)
    with pytest.raises(DegenerateMetricError, match=r"singular at z = h\(x\) for rows \[0, 1, 2, 3, 4, 5\]") as e:
        model.log_prob(x)
    assert e.value.rows == list(range(6)) and e.value.eigenvalues.shape == (6, 2)


def test_batched_log_prob_is_at_least_10x_faster_than_a_loop(trained, m6):
    "The issue's benchmark: 512 rows of the 6-D set, batched Eq. 4 vs a per-row autograd loop."
    x = m6.sample(512, seed=6)
    trained.log_prob(x)  # warm-up
    t0 = time.perf_counter(); log_prob_per_row(trained, x); t_loop = time.perf_counter() - t0
    t_batch = min(_timed(lambda: trained.log_prob(x)) for _ in range(3))
    assert t_loop / t_batch >= 10, (t_loop, t_batch)


def _timed(fn):
    t0 = time.perf_counter(); fn(); return time.perf_counter() - t0


def test_revised_bits_per_dim_uses_both_dimensions(trained, m6):
    x = m6.sample(50, seed=7)
    L = trained.likelihood(x)
    expected = revised_bits_per_dim(L.log_pz, L.logdet, 2, 6).mean()
    assert trained.bits_per_dim(x) == pytest.approx(float(expected), rel=1e-6)
    assert trained.bits_per_dim(x, revised=False) == pytest.approx(float(-L.log_prob.mean() / (6 * torch.log(torch.tensor(2.)))), rel=1e-5)


# --- common API ---

def test_score_encode_decode_sample_shapes(trained, m6):
    x = m6.sample(10, seed=8)
    assert trained.encode(x).shape == (10, 2) and trained.decode(torch.randn(4, 2)).shape == (4, 6)
    assert trained.sample(7).shape == (7, 6)
    torch.testing.assert_close(trained.score(x), -trained.log_prob(x))
    assert trained.reconstruction_error(x).shape == (10,) and (trained.reconstruction_error(x) >= 0).all()


def test_images_are_flattened_and_reshaped():
    X, _ = digits(8)
    set_seed(0)
    model = InvGAN((1, 8, 8), 3, hidden=(32,), out_act="tanh").fit(X[:200], steps=5, progress=False)
    assert model.sample(4).shape == (4, 1, 8, 8) and model.encode(X[:3]).shape == (3, 3)
    assert model.log_prob(X[:3]).shape == (3,)


def test_save_load_round_trip(trained, m6, tmp_path):
    path = trained.save(tmp_path / "inv.pt")
    back = InvGAN.load(path)
    x = m6.sample(16, seed=9)
    torch.testing.assert_close(back.log_prob(x), trained.log_prob(x))
    torch.testing.assert_close(back.sigma.centres, trained.sigma.centres)
    with pytest.raises(CheckpointError, match="InvGAN"):
        RealNVP.load(path)


# --- bad input ---

def test_wrong_width_is_refused(trained):
    with pytest.raises(ValueError, match=r"argument 'x': expected shape \(n, 6\), received \(3, 5\)"):
        trained.log_prob(torch.randn(3, 5))
    with pytest.raises(ValueError, match=r"argument 'x'"):
        trained.fit(torch.randn(10, 7), steps=1, progress=False)


def test_non_finite_rows_are_named(trained):
    x = torch.randn(5, 6); x[1, 2] = float("nan"); x[3, 0] = float("inf")
    with pytest.raises(ValueError, match=r"argument 'x': expected finite values, received NaN/inf in rows \[1, 3\]"):
        trained.log_prob(x)
    with pytest.raises(ValueError, match=r"rows \[1, 3\]"):
        trained.score(x)


def test_bad_constructor_arguments():
    with pytest.raises(TypeError, match="data_shape"):
        InvGAN("six", 2)
    with pytest.raises(ValueError, match="latent_dim"):
        InvGAN(6, 0)
    with pytest.raises(ValueError, match="latent_weight"):
        InvGAN(6, 2, latent_weight=-1)


def test_metric_checks_the_latent_width(trained):
    with pytest.raises(ValueError, match=r"argument 'z': expected shape \(n, 2\)"):
        trained.metric(torch.randn(4, 3))


# --- baselines and helpers ---

def test_realnvp_is_invertible_with_an_exact_logdet():
    set_seed(0)
    flow = RealNVP(4, n_layers=4)
    with torch.no_grad():
        for net in flow.nets: net.net[-2].weight.normal_(0, 0.3)
    x = torch.randn(10, 4)
    torch.testing.assert_close(flow.decode(flow.encode(x)), x, rtol=1e-4, atol=1e-5)
    J = exact_jacobian(lambda q: flow.forward_logdet(q)[0], x)
    torch.testing.assert_close(flow.forward_logdet(x)[1], torch.linalg.slogdet(J).logabsdet, rtol=1e-4, atol=1e-4)


def test_realnvp_learns_a_shifted_gaussian():
    set_seed(0)
    X = torch.randn(2000, 2) * torch.tensor([2.0, 0.5]) + 3
    flow = RealNVP(2, n_layers=4, hidden=(32,)).fit(X, steps=600, progress=False)
    true = torch.distributions.Normal(torch.tensor([3., 3.]), torch.tensor([2., .5])).log_prob(X[:500]).sum(1)
    assert float((flow.log_prob(X[:500]).detach() - true).mean().abs()) < 0.15


def test_autoencoder_scores_outliers_higher():
    set_seed(0)
    X = torch.randn(1000, 2) @ torch.tensor([[1., 2., 0., 0.], [0., 0., 1., -1.]])
    ae = Autoencoder(4, 2, hidden=(32, 32)).fit(X, steps=400, progress=False)
    assert ae.score(torch.tensor([[0., 0., 3., 3.]])) > ae.score(X[:100]).max()


def test_align_offset_and_its_bad_input():
    shifted, c = align_offset(torch.tensor([1., 2., 3.]), torch.tensor([3., 4., 5.]))
    assert c == pytest.approx(2.0) and torch.equal(shifted, torch.tensor([3., 4., 5.]))
    with pytest.raises(ValueError, match="argument 'truth'"):
        align_offset(torch.zeros(3), torch.zeros(4))


def test_minmax_score_and_detection_report():
    torch.testing.assert_close(minmax_anomaly_score(torch.tensor([-3., 0., 2., -1.])), torch.tensor([1., 0.4, 0., 0.6]))
    assert (minmax_anomaly_score(torch.ones(3)) == 0).all()
    rep = detection_report(torch.tensor([0.1, 0.9, 0.2, 0.8, 0.3]), torch.tensor([0, 1, 0, 0, 1]), contamination=0.4)
    assert rep["precision"] == pytest.approx(0.5) and rep["recall"] == pytest.approx(0.5) and rep["f1"] == pytest.approx(0.5)
    perfect = detection_report(torch.tensor([0.1, 0.2, 0.9, 0.95]), torch.tensor([0, 0, 1, 1]))
    assert perfect["f1"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="contamination"):
        detection_report(torch.rand(5), torch.zeros(5, dtype=torch.long), contamination=1.5)
    with pytest.raises(ValueError, match="is_anomaly"):
        detection_report(torch.rand(5), torch.zeros(4, dtype=torch.long))
    own = detection_report(torch.tensor([0.1, 0.9, 0.2, 0.8, 0.3]), torch.tensor([0, 1, 0, 0, 1]), threshold=0.15)
    assert own["precision"] == pytest.approx(0.5) and own["recall"] == pytest.approx(1.0) and own["threshold"] == 0.15
    with pytest.raises(ValueError, match="contamination.*threshold"):
        detection_report(torch.rand(5), torch.zeros(5, dtype=torch.long), contamination=0.2, threshold=0.5)
