"Tests of invgen_lit.reversal: Algorithm 1 (batched, stopping rules, faults), Prop. 1, the KDE prior, the KDE-GAN's API and bad input."
import math

import pytest
import torch
from torch import nn

from invgen_lit.core import CheckpointError, set_seed
from invgen_lit.data import digits
from invgen_lit.nn import ConvGenerator
from invgen_lit.reversal import (KDEGAN, LatentKDE, LossBelow, MMDStop, ReversalError, ReversalResult, biased_numbers,
                                 cluster_separation, knn_class_accuracy, reverse)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def linear():
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(12, 3, generator=gen, dtype=torch.float64)
    z_true = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    G = lambda z: z @ A.T
    return G, A, z_true


# --- Algorithm 1 ---------------------------------------------------------------------------------------------------

def test_reverse_recovers_the_codes_of_a_linear_generator(linear):
    G, A, z_true = linear
    eta = 1 / torch.linalg.eigvalsh(A.T @ A).max().item()
    res = reverse(G, G(z_true), steps=500, lr=eta, loss="l2", latent_dim=3)
    assert isinstance(res, tuple) and res[0] is res.z          # codes first, as other notebooks expect
    assert (res.z - z_true).abs().max() < 1e-8
    assert res.losses.shape == (501, 6) and res.stopped_by == "steps" and res.steps.tolist() == [500] * 6
    assert (res.losses[1:] <= res.losses[:-1] + 1e-12).all()   # GD below 2/L never increases a quadratic


def test_batched_rows_equal_rows_reversed_one_by_one(linear):
    G, A, z_true = linear
    z0 = 1e-3 * torch.randn(6, 3, dtype=torch.float64)
    for opt, lr in [("sgd", 0.01), ("adam", 0.05)]:
        batch = reverse(G, G(z_true), steps=30, lr=lr, z0=z0, optimizer=opt).z
        rows = torch.cat([reverse(G, G(z_true[i:i + 1]), steps=30, lr=lr, z0=z0[i:i + 1], optimizer=opt).z for i in range(6)])
        assert torch.allclose(batch, rows, atol=1e-12), opt


def test_loss_threshold_stops_each_row_on_its_own(linear):
    G, A, z_true = linear
    eta = 1 / torch.linalg.eigvalsh(A.T @ A).max().item()
    for stop in (1e-2, LossBelow(1e-2)):
        res = reverse(G, G(z_true), steps=1000, lr=eta, loss="l2", stop=stop, latent_dim=3)
        at_stop = res.losses[res.steps, torch.arange(6)]
        assert (at_stop <= 1e-2).all() and res.stopped_by == "loss"
        before = res.losses[(res.steps - 1).clamp(min=0), torch.arange(6)]
        assert ((res.steps == 0) | (before > 1e-2)).all()          # and not a step earlier
        assert res.steps.unique().numel() > 1                      # rows stop at different steps


def test_mmd_criterion_stops_the_batch_and_records_its_trace():
    # the generator is the identity on codes: real rows are data from N(3, 1), "generated" rows from N(0, 1);
    # reversal moves both from 0 towards their targets, so MMD grows until the criterion fires
    G = lambda z: z
    gen = torch.Generator().manual_seed(1)
    x = torch.cat([torch.randn(40, 2, generator=gen) + 3, torch.randn(40, 2, generator=gen)])
    stop = MMDStop(40, threshold=0.3, min_steps=2)
    res = reverse(G, x, steps=200, lr=0.05, stop=stop, latent_dim=2)
    assert res.stopped_by == "mmd" and res.mmd is not None and len(res.mmd) == res.steps.max() + 1
    assert res.mmd[-1] > 0.3 and (res.mmd[2:-1] <= 0.3).all()     # the first step past min_steps with MMD^2 > 0.3
    assert 2 <= res.steps.max() < 200 and res.steps.unique().numel() == 1
    never = reverse(G, x, steps=20, lr=0.05, stop=MMDStop(40, threshold=10.0), latent_dim=2)
    assert never.stopped_by == "steps" and never.mmd[-1] > never.mmd[0]


def test_reversal_of_a_random_conv_generator_cuts_the_loss_tenfold():
    X, _ = digits(16)
    set_seed(0)
    G = ConvGenerator(128, (1, 16, 16), channels=32).requires_grad_(False)
    curve = reverse(G, X[:16], steps=60, lr=10.0, generator=torch.Generator().manual_seed(1)).losses.mean(1)
    assert curve[-1] < curve[0] / 10 and curve[5] < curve[0] / 2


def test_reverse_works_inside_no_grad_and_leaves_generator_grads_alone():
    set_seed(0)
    G = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 8))
    x = G(torch.randn(5, 4)).detach()
    with torch.no_grad():
        res = reverse(G, x, steps=50, lr=0.5, latent_dim=4)
    assert res.losses[-1].mean() < res.losses[0].mean()
    assert all(p.grad is None for p in G.parameters())


# --- Proposition 1 -------------------------------------------------------------------------------------------------

def test_hessian_at_a_preimage_is_jtj_and_psd():
    set_seed(3)
    G = nn.Sequential(nn.Linear(4, 20), nn.Tanh(), nn.Linear(20, 7)).double()
    z_star = torch.randn(4, dtype=torch.float64)
    x = G(z_star).detach()
    H = torch.autograd.functional.hessian(lambda z: 0.5 * (G(z) - x).pow(2).sum(), z_star)
    J = torch.autograd.functional.jacobian(G, z_star)
    assert torch.allclose(H, J.T @ J, atol=1e-12)
    assert torch.linalg.eigvalsh(H).min() >= -1e-12


def test_prop1_needs_full_column_rank():
    "Positive definite at z* exactly when J has full column rank; a generator that ignores an input has a flat direction."
    set_seed(3)
    G = nn.Sequential(nn.Linear(4, 20), nn.Tanh(), nn.Linear(20, 7)).double()
    z_star = torch.randn(4, dtype=torch.float64)
    lam = torch.linalg.eigvalsh(torch.autograd.functional.jacobian(G, z_star).T @ torch.autograd.functional.jacobian(G, z_star))
    assert lam.min() > 1e-8 * lam.max()                                 # full column rank: positive definite
    mask = torch.tensor([1., 1., 1., 0.], dtype=torch.float64)
    J_flat = torch.autograd.functional.jacobian(lambda z: G(z * mask), z_star)
    assert torch.linalg.eigvalsh(J_flat.T @ J_flat).min().abs() < 1e-12  # rank 3 of 4: semidefinite only
    shifted = z_star + torch.tensor([0., 0., 0., 2.], dtype=torch.float64)
    assert torch.allclose(G(shifted * mask), G(z_star * mask))          # and a line of pre-images


def test_step_above_two_over_lambda_max_zigzags_and_below_converges(linear):
    "Gradient descent on a quadratic: the error along the top eigenvector is multiplied by 1 - eta * lambda_max per step."
    G, A, z_true = linear
    lam_max = torch.linalg.eigvalsh(A.T @ A).max().item()
    good = reverse(G, G(z_true), steps=200, lr=1.0 / lam_max, loss="l2", latent_dim=3)
    zig = reverse(G, G(z_true), steps=40, lr=1.9 / lam_max, loss="l2", latent_dim=3)
    bad = reverse(G, G(z_true), steps=40, lr=2.2 / lam_max, loss="l2", latent_dim=3)
    assert good.losses[-1].max() < 1e-10 and bad.losses[-1].mean() > bad.losses[1].mean()
    z_err = [reverse(G, G(z_true), steps=t, lr=1.9 / lam_max, loss="l2", latent_dim=3, generator=torch.Generator().manual_seed(0)).z - z_true
             for t in (30, 31)]
    top = torch.linalg.eigh(A.T @ A).eigenvectors[:, -1]
    assert ((z_err[0] @ top) * (z_err[1] @ top) < 0).all()              # the top component flips sign every step
    assert zig.losses[-1].mean() < zig.losses[0].mean()


# --- faults and bad input ------------------------------------------------------------------------------------------

def test_bad_input_names_the_argument(linear):
    G, A, z_true = linear
    x = G(z_true)
    with pytest.raises(ValueError, match=r"argument 'x': expected shape \(6, 12\)"): reverse(G, torch.randn(6, 13, dtype=torch.float64), latent_dim=3)
    with pytest.raises(ValueError, match="argument 'x'"): reverse(G, torch.full((6, 12), float("inf")), latent_dim=3)
    with pytest.raises(ValueError, match="argument 'steps'"): reverse(G, x, steps=0, latent_dim=3)
    with pytest.raises(ValueError, match="argument 'steps'"): reverse(G, x, steps=-3, latent_dim=3)
    with pytest.raises(ValueError, match="argument 'lr'"): reverse(G, x, lr=0.0, latent_dim=3)
    with pytest.raises(TypeError, match="argument 'latent_dim'"): reverse(G, x)
    with pytest.raises(ValueError, match="argument 'z0'"): reverse(G, x, z0=torch.zeros(5, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="argument 'optimizer'"): reverse(G, x, latent_dim=3, optimizer="lbfgs")
    with pytest.raises(TypeError, match="argument 'stop'"): reverse(G, x, latent_dim=3, stop="early")
    with pytest.raises(TypeError, match="argument 'G'"): reverse("G", x, latent_dim=3)
    with pytest.raises(ValueError, match="argument 'split'"): reverse(G, x, latent_dim=3, stop=MMDStop(5))


def test_generator_returning_nan_stops_with_the_codes_found_so_far(linear):
    G, A, z_true = linear
    calls = {"n": 0}
    def flaky(z):
        calls["n"] += 1
        return G(z) if calls["n"] <= 5 else G(z) * float("nan")
    z0 = torch.zeros(6, 3, dtype=torch.float64)
    with pytest.raises(ReversalError, match="non-finite values at step 5") as err:
        reverse(flaky, G(z_true), steps=50, lr=0.01, loss="l2", z0=z0)
    kept = err.value.result
    assert isinstance(kept, ReversalResult) and kept.stopped_by == "nonfinite"
    assert torch.isfinite(kept.z).all() and kept.steps.tolist() == [4] * 6 and kept.losses.shape == (5, 6)
    same = reverse(G, G(z_true), steps=4, lr=0.01, loss="l2", z0=z0)     # the codes are those of 4 clean steps
    assert torch.allclose(kept.z, same.z)


def test_kde_bandwidth_must_be_positive():
    for h in (0.0, -0.5):
        with pytest.raises(ValueError, match="argument 'bandwidth'"): LatentKDE(h)
    with pytest.raises(ValueError, match="argument 'rel_bandwidth'"): KDEGAN((1, 8, 8), rel_bandwidth=0.0)
    with pytest.raises(ValueError, match="argument 'background'"): LatentKDE(0.1, background=-0.1)


# --- the KDE prior with background ---------------------------------------------------------------------------------

def test_latent_kde_background_mixture():
    Z = torch.randn(50, 3, dtype=torch.float64)
    q = torch.randn(9, 3, dtype=torch.float64) * 2
    plain = LatentKDE(0.3).fit(Z)
    mixed = LatentKDE(0.3, background=0.25, background_std=3.0).fit(Z)
    bg = torch.distributions.Normal(0.0, 3.0).log_prob(q).sum(1)
    want = torch.logaddexp(math.log(0.75) + plain.log_prob(q), math.log(0.25) + bg)
    assert torch.allclose(mixed.log_prob(q), want, atol=1e-10)
    s = mixed.sample(20000, generator=torch.Generator().manual_seed(0))
    far = (torch.cdist(s, Z).min(1).values > 1.5).double().mean()
    assert 0.1 < far < 0.25     # about a quarter from the background, a few of which land near a code


def test_latent_kde_background_survives_save_load(tmp_path):
    kde = LatentKDE(0.2, background=0.3, background_std=2.0).fit(torch.randn(20, 2))
    back = LatentKDE.load(kde.save(tmp_path / "kde.pt"))
    q = torch.randn(5, 2)
    assert torch.equal(back.log_prob(q), kde.log_prob(q)) and back.background == 0.3


# --- the KDE-GAN ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_kdegan():
    X, _ = digits(8)
    set_seed(0)
    m = KDEGAN((1, 8, 8), latent_dim=6, hidden=(32, 32), bank=96, min_reversal_steps=2, max_reversal_steps=5, batch_size=32)
    return m.fit(X[:512], steps=6, progress=False), X


def test_kdegan_common_api(small_kdegan):
    m, X = small_kdegan
    assert m.codes.shape == (96, 6)
    assert m.sample(7).shape == (7, 1, 8, 8) and m.decode(torch.randn(3, 6)).shape == (3, 1, 8, 8)
    z = m.encode(X[:5])
    assert z.shape == (5, 6) and torch.equal(z, m.encode(X[:5]))           # deterministic given the seed
    lp = m.log_prob(X[:5])
    assert lp.shape == (5,) and torch.isfinite(lp).all()
    assert torch.allclose(lp, m.kde().log_prob(z))
    rs = [r["reversal_steps"] for r in m.history.rows if "reversal_steps" in r]
    assert len(rs) == 6 and all(2 <= s <= 5 for s in rs)
    capped = [r["reversal_capped"] for r in m.history.rows if "reversal_capped" in r]
    mmd = [r["latent_mmd"] for r in m.history.rows if "latent_mmd" in r]
    assert len(capped) == 6 and all(c in (0.0, 1.0) for c in capped)
    # the cap ended a reversal exactly when it ran max_reversal_steps without the test firing
    assert all(c == float(s == 5 and v <= m.mmd_threshold) for c, s, v in zip(capped, rs, mmd))
    assert m.typical_reversal_steps() == max(1, round(sum(rs) / len(rs)))


def test_kdegan_save_load_keeps_the_bank(small_kdegan, tmp_path):
    m, X = small_kdegan
    back = KDEGAN.load(m.save(tmp_path / "k.pt"))
    assert torch.equal(back.codes, m.codes) and back.config == m.config
    set_seed(4); a = m.sample(6)
    set_seed(4); b = back.sample(6)
    assert torch.equal(a, b)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError): KDEGAN.load(tmp_path / "junk.pt")


def test_kdegan_normal_prior_is_a_vanilla_gan():
    X, _ = digits(8)
    set_seed(0)
    m = KDEGAN((1, 8, 8), latent_dim=4, hidden=(16,), prior="normal").fit(X[:256], steps=3, progress=False)
    assert m.kde() is None and len(m.codes) == 0
    assert not any("reversal_steps" in r for r in m.history.rows)
    z = m.encode(X[:4], steps=3)
    lp = m.log_prob(X[:4], steps=3)
    assert torch.allclose(lp, -0.5 * z.pow(2).sum(1) - 2 * math.log(2 * math.pi))


def test_kdegan_fit_prior_rebuilds_the_bank(small_kdegan):
    m, X = small_kdegan
    import copy
    m2 = copy.deepcopy(m)
    m2.fit_prior(X[:40], steps=3)
    assert m2.codes.shape == (40, 6) and torch.allclose(m2.codes, m2.encode(X[:40], steps=3))


def test_kdegan_bad_input():
    with pytest.raises(TypeError, match="argument 'data_shape'"): KDEGAN("digits")
    with pytest.raises(TypeError, match="argument 'data_shape'"): KDEGAN((1, 0, 8))
    with pytest.raises(ValueError, match=r"\['kde', 'normal'\]"): KDEGAN((1, 8, 8), prior="uniform")
    with pytest.raises(ValueError, match="argument 'max_reversal_steps'"): KDEGAN((1, 8, 8), min_reversal_steps=9, max_reversal_steps=3)
    m = KDEGAN((1, 8, 8), latent_dim=4, hidden=(8,))
    with pytest.raises(ValueError, match="argument 'x'"): m.fit(torch.randn(20, 64), steps=1, progress=False)
    with pytest.raises(ValueError, match="argument 'x'"): m.encode(torch.randn(3, 1, 8, 9))
    with pytest.raises(ValueError, match="argument 'x'"): m.fit(torch.full((20, 1, 8, 8), float("nan")), steps=1, progress=False)


def test_kdegan_nan_generator_raises_reversal_error_with_codes():
    X, _ = digits(8)
    set_seed(0)
    m = KDEGAN((1, 8, 8), latent_dim=4, hidden=(8,), min_reversal_steps=1, max_reversal_steps=3)
    with torch.no_grad():
        for p in m.G.parameters(): p.fill_(float("nan"))
    with pytest.raises(ReversalError) as err:
        m.encode(X[:3], steps=5)
    assert torch.isfinite(err.value.result.z).all() and err.value.result.z.shape == (3, 4)


# --- helpers of the evaluation -------------------------------------------------------------------------------------

def test_cluster_separation():
    pts = torch.cat([torch.zeros(10, 2) + torch.randn(10, 2) * 0.01, torch.ones(10, 2) * 10 + torch.randn(10, 2) * 0.01])
    lab = torch.cat([torch.zeros(10), torch.ones(10)]).long()
    assert cluster_separation(pts, lab) > 100
    perm = lab[torch.randperm(20, generator=torch.Generator().manual_seed(0))]
    assert cluster_separation(pts, perm) < cluster_separation(pts, lab)
    with pytest.raises(ValueError, match="argument 'labels'"): cluster_separation(pts, lab[:5])


def test_knn_class_accuracy():
    gen = torch.Generator().manual_seed(0)
    pts = torch.cat([torch.randn(30, 3, generator=gen) * 0.1, torch.randn(30, 3, generator=gen) * 0.1 + 4,
                     torch.randn(30, 3, generator=gen) * 0.1 - 4])
    lab = torch.arange(3).repeat_interleave(30) + 5                     # labels need not start at 0
    assert knn_class_accuracy(pts, lab) == 1.0 and knn_class_accuracy(pts, lab, k=1) == 1.0
    shuffled = lab[torch.randperm(90, generator=gen)]
    assert knn_class_accuracy(pts, shuffled) < 0.6                     # chance is 1/3
    # leave-one-out: a point never votes for itself (two far-apart singletons are both misclassified with k = 1)
    assert knn_class_accuracy(torch.tensor([[0.], [10.], [10.1]]), torch.tensor([0, 1, 2]), k=1) == 0.0
    with pytest.raises(ValueError, match="argument 'k'"): knn_class_accuracy(pts, lab, k=90)
    with pytest.raises(ValueError, match="argument 'labels'"): knn_class_accuracy(pts, lab[:5])


def test_biased_numbers():
    X, y = digits(8)
    imgs, num = biased_numbers(X, y, 4000, seed=0)
    assert imgs.shape == (4000, 1, 8, 16) and num.min() >= 0 and num.max() <= 99
    tens = torch.bincount(num // 10, minlength=10).double()
    assert tens[9] / tens[0] > 8                                   # weight 20 vs 1
    big, big_num = biased_numbers(X, y, 40000, seed=3)
    d = torch.bincount(torch.cat([big_num // 10, big_num % 10]), minlength=10).double()
    assert abs(d[9] / d[0] - 20) < 3 and abs(d[1] / d[0] - (1 + 19 / 9)) < 0.5    # a 9 is 20 times as likely as a 0
    r_imgs, r_num = biased_numbers(X, y, 500, allowed=(6, 7, 8, 9), seed=1)
    assert set((r_num // 10).tolist()) <= {6, 7, 8, 9} and set((r_num % 10).tolist()) <= {6, 7, 8, 9}
    with pytest.raises(ValueError, match="argument 'allowed'"): biased_numbers(X, y, 5, allowed=(11,))
