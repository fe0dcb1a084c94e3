"""Tests of invgen_lit.metrics: each metric against a reference implementation (SciPy, scikit-learn,
scikit-image) or a closed form, statistical properties (unbiasedness, test level), the cached digit
feature net, and bad input (mismatched feature dims, 1-D where 2-D is expected, integer tensors, NaN)."""
import math

import numpy as np
import pytest
import scipy.linalg
import scipy.spatial
import scipy.stats
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

from invgen_lit import metrics as M
from invgen_lit.core import load_checkpoint


pytestmark = pytest.mark.usefixtures("one_thread")


def gen(seed):
    return torch.Generator().manual_seed(seed)


def randn(*shape, seed=0, g=None):
    return torch.randn(*shape, generator=g or gen(seed), dtype=torch.float64)


# ---------------------------------------------------------------------------------------------- MMD
def mmd2_loop(x, y, hs, paired=False):
    "Kilcher 2017 Eq. 3 (paired) and the two-sample U-statistic, as explicit double loops."
    k = lambda a, b: sum(math.exp(-sum((ai - bi) ** 2 for ai, bi in zip(a, b)) / (2 * h * h)) for h in hs)
    x, y = x.tolist(), y.tolist()
    m, n = len(x), len(y)
    if paired:
        return sum(k(x[i], x[j]) + k(y[i], y[j]) - k(x[i], y[j]) - k(x[j], y[i])
                   for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    syy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    return sxx + syy - 2 * sum(k(a, b) for a in x for b in y) / (m * n)


@pytest.mark.parametrize("hs", [[0.7], [0.2, 1.0, 5.0]])
def test_mmd2_matches_double_loop(hs):
    g = gen(0)
    x, y = randn(6, 3, g=g), randn(8, 3, g=g) + 0.4
    assert M.mmd2_unbiased(x, y, hs) == pytest.approx(mmd2_loop(x, y, hs), abs=1e-12)
    assert M.mmd2_unbiased(x, y[:6], hs, paired=True) == pytest.approx(mmd2_loop(x, y[:6], hs, paired=True), abs=1e-12)
    if len(hs) == 1:  # a number and a one-element list are the same kernel
        assert M.mmd2_unbiased(x, y, hs[0]) == pytest.approx(M.mmd2_unbiased(x, y, hs), abs=1e-15)


def test_mmd2_median_heuristic_is_the_default():
    g = gen(1)
    x, y = randn(10, 2, g=g), randn(13, 2, g=g)
    d = scipy.spatial.distance.pdist(torch.cat([x, y]).numpy())
    h = M.median_bandwidth(x, y)
    assert h == pytest.approx(float(np.quantile(d, 0.5, method="lower")), abs=1e-12)
    assert M.mmd2_unbiased(x, y) == pytest.approx(M.mmd2_unbiased(x, y, h), abs=1e-15)
    assert M.mmd2_unbiased(x, y, None) == pytest.approx(mmd2_loop(x, y, [h]), abs=1e-12)


def test_mmd2_symmetric_and_zero_for_identical_kernel_means():
    g = gen(2)
    x, y = randn(9, 2, g=g), randn(11, 2, g=g)
    assert M.mmd2_unbiased(x, y, 1.0) == pytest.approx(M.mmd2_unbiased(y, x, 1.0), abs=1e-14)
    # a sum of kernels gives the sum of the per-kernel MMDs (the estimator is linear in k)
    assert M.mmd2_unbiased(x, y, [0.5, 2.0]) == pytest.approx(M.mmd2_unbiased(x, y, 0.5) + M.mmd2_unbiased(x, y, 2.0), abs=1e-13)


def test_mmd2_unbiased_in_expectation_and_biased_version_is_not():
    g = gen(3)
    u, b = [], []
    for _ in range(150):
        x, y = randn(25, 2, g=g), randn(25, 2, g=g)
        u.append(M.mmd2_unbiased(x, y, 1.0))
        K = M.rbf_kernel(torch.cat([x, y]), torch.cat([x, y]), 1.0)
        b.append(float(K[:25, :25].mean() + K[25:, 25:].mean() - 2 * K[:25, 25:].mean()))
    u, b = np.array(u), np.array(b)
    se = u.std() / math.sqrt(len(u))
    assert abs(u.mean()) < 4 * se
    assert b.mean() > 10 * se


def test_mmd2_detects_shift():
    g = gen(4)
    same = M.mmd2_unbiased(randn(300, 2, g=g), randn(300, 2, g=g))
    diff = M.mmd2_unbiased(randn(300, 2, g=g), randn(300, 2, g=g) + 1.0)
    assert diff > 0.05 and abs(same) < 0.02


@pytest.mark.parametrize("paired", [False, True])
def test_permutation_null_matches_explicit_shuffles(paired):
    g = gen(5)
    z = randn(20, 2, g=g)
    K = M.rbf_kernel(z, z, 0.8)
    perms = torch.stack([torch.randperm(20, generator=g) for _ in range(6)])
    fast = M._mmd2_permuted(K, 10, perms, paired)
    slow = torch.tensor([M.mmd2_unbiased(z[p[:10]], z[p[10:]], 0.8, paired=paired) for p in perms], dtype=torch.float64)
    assert torch.allclose(fast, slow, atol=1e-12)


def test_permutation_test_level_power_and_reproducibility():
    g = gen(6)
    alpha, trials = 0.1, 60
    p = np.array([M.mmd_permutation_test(randn(30, 2, g=g), randn(30, 2, g=g), n_permutations=99, seed=t).p_value
                  for t in range(trials)])
    assert ((p > 0) & (p <= 1)).all() and (p >= 1 / 100).all()
    assert (p <= alpha).mean() <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / trials)
    x, y = randn(80, 2, g=g), randn(80, 2, g=g) + 0.8
    res = M.mmd_permutation_test(x, y, n_permutations=199, seed=1)
    assert res.p_value == pytest.approx(1 / 200)  # no shuffle reaches a large shift
    assert res.mmd2 == pytest.approx(M.mmd2_unbiased(x, y), abs=1e-15)
    assert len(res.null) == 199
    again = M.mmd_permutation_test(x, y, n_permutations=199, seed=1)
    assert torch.equal(res.null, again.null)
    assert M.mmd_permutation_test(x, y[:50], n_permutations=20).p_value > 0  # unequal sizes are fine unpaired


# ------------------------------------------------------------------------------------ energy distance
def test_energy_distance_matches_scipy_in_1d():
    g = gen(7)
    a, b = randn(200, g=g), 0.3 + 1.5 * randn(150, g=g)
    ours = M.energy_distance(a[:, None], b[:, None])
    assert math.sqrt(ours) == pytest.approx(scipy.stats.energy_distance(a.numpy(), b.numpy()), abs=1e-10)


def test_energy_distance_definition_and_properties():
    g = gen(8)
    x, y = randn(30, 4, g=g), randn(20, 4, g=g) + 0.5
    cd = scipy.spatial.distance.cdist
    direct = 2 * cd(x, y).mean() - cd(x, x).mean() - cd(y, y).mean()
    assert M.energy_distance(x, y) == pytest.approx(direct, abs=1e-10)
    assert M.energy_distance(x, y) == pytest.approx(M.energy_distance(y, x), abs=1e-12)
    assert M.energy_distance(x + 3.0, y + 3.0) == pytest.approx(M.energy_distance(x, y), abs=1e-10)
    assert M.energy_distance(2 * x, 2 * y) == pytest.approx(2 * M.energy_distance(x, y), abs=1e-10)  # homogeneous of degree 1
    assert M.energy_distance(x, x) == 0.0
    assert M.energy_distance(x, y) > 0


# ------------------------------------------------------------------------------------ Frechet distance
def rand_cov(d, g):
    A = randn(d, d, g=g)
    return A @ A.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


def test_frechet_closed_forms():
    one = lambda v: torch.tensor([v], dtype=torch.float64)
    assert M.frechet_gaussians(one(1.0), one(4.0)[None], one(-1.0), one(0.25)[None]) == pytest.approx(4 + 1.5 ** 2, abs=1e-12)
    # commuting (diagonal) covariances: |mu1 - mu2|^2 + |S1^1/2 - S2^1/2|_F^2
    s1, s2 = torch.tensor([1.0, 4.0, 0.25], dtype=torch.float64), torch.tensor([9.0, 1.0, 1.0], dtype=torch.float64)
    mu1, mu2 = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    expected = 3 + float((s1.sqrt() - s2.sqrt()).square().sum())
    assert M.frechet_gaussians(mu1, torch.diag(s1), mu2, torch.diag(s2)) == pytest.approx(expected, abs=1e-12)


def test_frechet_matches_scipy_sqrtm_and_is_symmetric():
    g = gen(9)
    d = 6
    mu1, mu2, S1, S2 = randn(d, g=g), randn(d, g=g), rand_cov(d, g), rand_cov(d, g)
    ref = float((mu1 - mu2).square().sum()) + float(np.trace(S1.numpy() + S2.numpy() - 2 * scipy.linalg.sqrtm(S1.numpy() @ S2.numpy()).real))
    assert M.frechet_gaussians(mu1, S1, mu2, S2) == pytest.approx(ref, abs=1e-8)
    assert M.frechet_gaussians(mu2, S2, mu1, S1) == pytest.approx(ref, abs=1e-8)
    assert M.frechet_gaussians(mu1, S1, mu1, S1) == pytest.approx(0.0, abs=1e-10)


def test_frechet_distance_of_samples_approaches_closed_form():
    g = gen(10)
    d = 3
    mu1, mu2, S1, S2 = randn(d, g=g), randn(d, g=g), rand_cov(d, g), rand_cov(d, g)
    x = mu1 + randn(50_000, d, g=g) @ torch.linalg.cholesky(S1).T
    y = mu2 + randn(50_000, d, g=g) @ torch.linalg.cholesky(S2).T
    ref = M.frechet_gaussians(mu1, S1, mu2, S2)
    assert M.frechet_distance(x, y) == pytest.approx(ref, rel=0.05)
    assert M.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    mu, cov = M.gaussian_moments(x)
    assert torch.allclose(cov, torch.from_numpy(np.cov(x.numpy().T)), atol=1e-12)


# ------------------------------------------------------------------------------- precision and recall
def pr_reference(real, fake, k=3):
    def f(points, ref):
        r = NearestNeighbors(n_neighbors=k).fit(ref).kneighbors()[0][:, -1]
        return np.mean([any(np.linalg.norm(p - ref[j]) <= r[j] for j in range(len(ref))) for p in points])
    return f(fake.numpy(), real.numpy()), f(real.numpy(), fake.numpy())


@pytest.mark.parametrize("k", [1, 3, 5])
def test_precision_recall_matches_definition(k):
    g = gen(11)
    real, fake = randn(80, 2, g=g), 1.4 * randn(70, 2, g=g) + 0.3
    assert M.precision_recall(real, fake, k) == pytest.approx(pr_reference(real, fake, k), abs=1e-12)


def test_precision_recall_identity_and_truncation():
    g = gen(12)
    real = randn(1000, 2, g=g)
    assert M.precision_recall(real, real) == (1.0, 1.0)
    p_t, r_t = M.precision_recall(real, 0.25 * randn(1000, 2, g=g))
    p_w, r_w = M.precision_recall(real, 4.0 * randn(1000, 2, g=g))
    assert p_t > 0.9 and r_t < 0.5 and r_w > 0.9 and p_w < 0.5


# -------------------------------------------------------------------------------------------------- DCR
def test_dcr_matches_sklearn_and_is_zero_for_copies():
    g = gen(13)
    R, S = randn(200, 5, g=g), randn(120, 5, g=g)
    ref = NearestNeighbors(n_neighbors=1).fit(R.numpy()).kneighbors(S.numpy())[0][:, 0]
    per_row = M.dcr(S, R, reduction="none")
    assert per_row.shape == (120,) and torch.allclose(per_row, torch.from_numpy(ref), atol=1e-12)
    assert M.dcr(S, R) == pytest.approx(ref.mean(), abs=1e-12)
    assert M.dcr(S, R, reduction="median") == pytest.approx(float(torch.from_numpy(ref).median()), abs=1e-12)
    assert M.dcr(R, R) == 0.0
    assert M.dcr(R + 0.5, R) > M.dcr(R + 0.1, R) > 0


# ----------------------------------------------------------------------------------------- PSNR / SSIM
def images(seed, shape=(5, 1, 16, 16), noise=0.3):
    g = gen(seed)
    x = torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1
    return x, (x + noise * torch.randn(*shape, generator=g, dtype=torch.float64)).clamp(-1, 1)


def test_psnr_matches_skimage_and_closed_forms():
    x, y = images(14)
    sk = torch.tensor([peak_signal_noise_ratio(a.numpy(), b.numpy(), data_range=2.0) for a, b in zip(x, y)], dtype=torch.float64)
    assert torch.allclose(M.psnr(x, y, reduction="none"), sk, atol=1e-10)
    assert M.psnr(x, y) == pytest.approx(float(sk.mean()), abs=1e-10)
    assert M.psnr(x, x + 0.05) == pytest.approx(20 * math.log10(2 / 0.05), abs=1e-9)
    assert M.psnr(x, y, data_range=1.0) == pytest.approx(M.psnr(x, y) - 20 * math.log10(2), abs=1e-9)
    assert M.psnr(x, x) == math.inf
    assert M.psnr(x[:, 0], y[:, 0]) == pytest.approx(M.psnr(x, y), abs=1e-12)  # (n, H, W) is accepted


def test_ssim_matches_skimage_gray_and_color():
    x, y = images(15)
    sk = [structural_similarity(a[0].numpy(), b[0].numpy(), data_range=2.0, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False) for a, b in zip(x, y)]
    assert torch.allclose(M.ssim(x, y, reduction="none"), torch.tensor(sk, dtype=torch.float64), atol=1e-10)
    xc, yc = images(16, shape=(3, 3, 24, 20), noise=0.5)
    skc = [structural_similarity(a.numpy(), b.numpy(), data_range=2.0, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, channel_axis=0) for a, b in zip(xc, yc)]
    assert torch.allclose(M.ssim(xc, yc, reduction="none"), torch.tensor(skc, dtype=torch.float64), atol=1e-10)


def test_ssim_closed_forms():
    x, y = images(17)
    assert M.ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    assert torch.allclose(M.ssim(x, y, reduction="none"), M.ssim(y, x, reduction="none"), atol=1e-12)
    assert (M.ssim(x, y, reduction="none") < 1).all()
    c1 = (0.01 * 2.0) ** 2
    for a, b in [(0.3, -0.5), (0.0, 0.9), (-1.0, 1.0)]:
        const = lambda v: torch.full((2, 1, 12, 12), v, dtype=torch.float64)
        assert M.ssim(const(a), const(b)) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), abs=1e-12)
    # a constant offset c: equal variances and covariance = variance, so SSIM = mean of (2 mu (mu + c) + C1) / (mu^2 + (mu + c)^2 + C1)
    w = M.gaussian_window(11, 1.5)
    assert float(w.sum()) == pytest.approx(1.0) and torch.allclose(w, w.flip(0)) and int(w.argmax()) == 5
    mu = M._local_mean(x, w)
    expected = ((2 * mu * (mu + 0.2) + c1) / (mu ** 2 + (mu + 0.2) ** 2 + c1)).flatten(1).mean(1)
    assert torch.allclose(M.ssim(x, x + 0.2, reduction="none"), expected, atol=1e-12)


def test_ssim_refuses_images_smaller_than_the_window():
    with pytest.raises(ValueError, match="argument 'x'.*11 x 11"):
        M.ssim(torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8))
    assert M.ssim(torch.rand(2, 1, 8, 8, dtype=torch.float64), torch.rand(2, 1, 8, 8, dtype=torch.float64), win_size=7) < 1
    with pytest.raises(ValueError, match="argument 'size'.*odd"):
        M.ssim(torch.zeros(2, 1, 16, 16), torch.zeros(2, 1, 16, 16), win_size=10)


# ------------------------------------------------------------------------------------------------ AUROC
def test_auroc_matches_sklearn_with_ties():
    g = gen(18)
    s_in = torch.randn(300, generator=g).round(decimals=1)
    s_out = (torch.randn(200, generator=g) + 0.8).round(decimals=1)
    labels = np.r_[np.zeros(300), np.ones(200)]
    ref = roc_auc_score(labels, torch.cat([s_in, s_out]).numpy())
    assert M.auroc(s_in, s_out) == pytest.approx(ref, abs=1e-12)
    fpr, tpr, _ = M.roc_curve(s_in, s_out)
    assert float(torch.trapezoid(tpr, fpr)) == pytest.approx(ref, abs=1e-12)
    assert M.auroc(s_out, s_in) == pytest.approx(1 - ref, abs=1e-12)


def test_auroc_hand_computed_cases():
    t = lambda *v: torch.tensor(v, dtype=torch.float64)
    assert M.auroc(t(0.0, 1.0), t(2.0, 3.0)) == 1.0
    assert M.auroc(t(2.0, 3.0), t(0.0, 1.0)) == 0.0
    assert M.auroc(t(1.0, 1.0), t(1.0)) == 0.5  # ties count one half
    assert M.auroc(t(0.0, 2.0), t(1.0, 2.0)) == pytest.approx((1 + 1.5) / 4)  # out 1 beats 0; out 2 beats 0 and ties 2


def test_roc_curve_ends_and_monotone():
    g = gen(19)
    fpr, tpr, thr = M.roc_curve(torch.randn(50, generator=g), torch.randn(40, generator=g))
    assert [float(v) for v in (fpr[0], tpr[0], fpr[-1], tpr[-1])] == [0.0, 0.0, 1.0, 1.0]
    assert (fpr.diff() >= 0).all() and (tpr.diff() >= 0).all() and (thr.diff() <= 0).all()


def test_auroc_threshold_set_hand_computed():
    # ID scores 0..19, thresholds every 10th sorted ID score = {0, 10}; OOD scores 5, 15, 25.
    # ROC points (0,0), (9/20, 2/3) [t=10], (19/20, 1) [t=0], (1,1): trapezoid area 37/60.
    s_in, s_out = torch.arange(20.0), torch.tensor([5.0, 15.0, 25.0])
    assert M.auroc_threshold_set(s_in, s_out) == pytest.approx(37 / 60, abs=1e-12)
    assert M.auroc(s_in, s_out) == pytest.approx(41 / 60, abs=1e-12)


@pytest.mark.parametrize("n_in,every", [(37, 10), (500, 10), (1000, 3)])
def test_auroc_threshold_set_within_bound_of_exact(n_in, every):
    g = gen(20)
    s_in, s_out = torch.randn(n_in, generator=g), torch.randn(300, generator=g) + 1
    fpr, _, _ = M.roc_curve(s_in, s_out, thresholds=s_in.sort().values[::every])
    gap = abs(M.auroc_threshold_set(s_in, s_out, every) - M.auroc(s_in, s_out))
    assert gap <= float(fpr.diff().max()) / 2 + 1e-12


# ---------------------------------------------------------------------------------- NLL and bits/dim
def test_bits_per_dim_closed_forms():
    D = 12
    assert M.bits_per_dim(D * math.log(2), D, n_bins=256, data_range=2.0) == pytest.approx(8.0, abs=1e-12)
    assert M.bits_per_dim(0.0, D, n_bins=256, data_range=1.0) == pytest.approx(8.0, abs=1e-12)
    assert M.bits_per_dim(D * math.log(2), D) == pytest.approx(1.0, abs=1e-12)
    assert M.bits_per_dim(D * math.log(17 / 2), D, n_bins=17) == pytest.approx(2 * math.log2(17 / 2), abs=1e-12)
    rows = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64) * D
    assert torch.allclose(M.bits_per_dim(rows, D), rows / (D * math.log(2)))
    assert M.nll(torch.tensor([-1.0, -3.0])) == pytest.approx(2.0)


def test_revised_bits_per_dim_equals_plain_for_a_flow_and_follows_ren_2020():
    g = gen(21)
    D = 8
    A = randn(D, D, g=g) + 3 * torch.eye(D, dtype=torch.float64)
    z = randn(40, D, g=g)
    x = z @ A.T
    log_px = torch.distributions.MultivariateNormal(torch.zeros(D, dtype=torch.float64), A @ A.T).log_prob(x)
    log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
    logdet = torch.logdet(A.T @ A).expand(40)
    assert torch.allclose(M.revised_bits_per_dim(log_pz, logdet, D, D), M.bits_per_dim(-log_px, D), atol=1e-9)
    # injective case: the formula of Ren 2020, Sec. 4.2, in bits
    assert M.revised_bits_per_dim(-6.0, 2.0, 3, 10) == pytest.approx((6.0 / 3 + 0.5 * 2.0 / 10) / math.log(2), abs=1e-12)


# ----------------------------------------------------------------------- digit feature net and the FDD
@pytest.fixture(scope="module")
def feature_cache(tmp_path_factory):
    d = tmp_path_factory.mktemp("invgen_cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("INVGEN_CACHE", str(d))
    yield d
    mp.undo()


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("INVGEN_CACHE", str(tmp_path / "c"))
    assert M.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("INVGEN_CACHE")
    assert M.cache_dir() == M.Path.home() / ".cache" / "invgen_lit"


def test_digit_features_trained_cached_and_accurate(feature_cache):
    net = M.digit_features(16)
    files = list(feature_cache.glob("digit_features_size16_seed0_*.pt"))
    assert len(files) == 1 and load_checkpoint(files[0])["class"] == "DigitFeatures"
    assert net.test_accuracy > 0.9
    M._FEATURE_NETS.clear()  # forget the in-memory copy: the next call must load the file
    again = M.digit_features(16)
    assert again is not net and again.test_accuracy == net.test_accuracy
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    assert M.digit_features(16) is again  # memoised


def test_digit_feature_training_is_deterministic():
    a, b = M.train_digit_features(8, seed=3, steps=25), M.train_digit_features(8, seed=3, steps=25)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    c = M.train_digit_features(8, seed=4, steps=25)
    assert not torch.equal(a.head[1].weight, c.head[1].weight)


def test_corrupt_cache_file_is_retrained(feature_cache):
    path = feature_cache / f"digit_features_size8_seed0_steps{M.DigitFeatures.train_steps}.pt"
    path.write_bytes(b"garbage")
    net = M.digit_features(8)
    assert load_checkpoint(path)["class"] == "DigitFeatures" and net.test_accuracy > 0.8


def test_frechet_digit_distance_orders_noise_and_mode_dropping(feature_cache):
    from invgen_lit.data import digits
    X, y = digits(16)
    perm = torch.randperm(len(X), generator=gen(22))
    A, B, yB = X[perm[:800]], X[perm[800:]], y[perm[800:]]
    net = M.digit_features(16)
    halves = M.frechet_digit_distance(A, B)
    assert halves == pytest.approx(M.frechet_distance(net.features(A), net.features(B)), abs=1e-12)
    noisy = [M.frechet_digit_distance(A, (B + s * torch.randn(B.shape, generator=gen(23))).clamp(-1, 1)) for s in (0.2, 0.6)]
    assert halves < noisy[0] < noisy[1]
    assert M.frechet_digit_distance(A, B[yB < 5]) > 5 * halves
    assert net.features(A[:7]).shape == (7, 64)


# --------------------------------------------------------------------------------------------- bad input
X2, Y3 = torch.randn(10, 2), torch.randn(10, 3)
NAN = torch.randn(10, 2)
NAN[3, 1] = float("nan")
INT = torch.ones(10, 2, dtype=torch.long)
ROW_METRICS = [
    ("mmd2_unbiased", lambda a, b: M.mmd2_unbiased(a, b), ("x", "y")),
    ("mmd_permutation_test", lambda a, b: M.mmd_permutation_test(a, b, n_permutations=5), ("x", "y")),
    ("energy_distance", lambda a, b: M.energy_distance(a, b), ("x", "y")),
    ("frechet_distance", lambda a, b: M.frechet_distance(a, b), ("feat_x", "feat_y")),
    ("precision_recall", lambda a, b: M.precision_recall(a, b), ("real", "fake")),
    ("dcr", lambda a, b: M.dcr(a, b), ("synthetic", "real")),
]


@pytest.mark.parametrize("name,f,args", ROW_METRICS, ids=[m[0] for m in ROW_METRICS])
def test_row_metrics_refuse_bad_input(name, f, args):
    with pytest.raises(ValueError, match=f"argument '{args[1]}'.*2 features"):
        f(X2, Y3)  # mismatched feature dimensions
    with pytest.raises(ValueError, match=f"argument '{args[0]}'.*2 dimensions"):
        f(torch.randn(10), X2)  # 1-D where (n, d) is expected
    with pytest.raises(TypeError, match=f"argument '{args[1]}'.*floating"):
        f(X2, INT)
    with pytest.raises(ValueError, match=f"argument '{args[0]}'.*NaN"):
        f(NAN, X2)
    with pytest.raises(TypeError, match=f"argument '{args[0]}'.*torch.Tensor"):
        f([[0.0, 1.0]] * 10, X2)


def test_bad_bandwidths_and_options():
    with pytest.raises(ValueError, match="argument 'bandwidth'"):
        M.mmd2_unbiased(X2, X2 + 1, -1.0)
    with pytest.raises(ValueError, match="argument 'bandwidth'"):
        M.mmd2_unbiased(X2, X2 + 1, [])
    with pytest.raises(ValueError, match=r"argument 'bandwidth\[1\]'"):
        M.mmd2_unbiased(X2, X2 + 1, [1.0, 0.0])
    with pytest.raises(ValueError, match="paired=True"):
        M.mmd2_unbiased(X2, X2[:7], paired=True)
    with pytest.raises(ValueError, match="median distance 0"):
        M.mmd2_unbiased(torch.zeros(5, 2), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="argument 'n_permutations'"):
        M.mmd_permutation_test(X2, X2, n_permutations=0)
    with pytest.raises(ValueError, match="argument 'real'.*at least 4 rows"):
        M.precision_recall(X2[:3], X2, k=3)
    with pytest.raises(ValueError, match="argument 'reduction'"):
        M.dcr(X2, X2, reduction="sum")
    with pytest.raises(ValueError, match="argument 'mu2'"):
        M.frechet_gaussians(torch.zeros(2), torch.eye(2), torch.zeros(3), torch.eye(2))


def test_image_metrics_refuse_bad_input():
    x = torch.rand(2, 1, 16, 16)
    for f in (M.psnr, M.ssim):
        with pytest.raises(ValueError, match="argument 'y'.*shape"):
            f(x, torch.rand(2, 1, 16, 15))
        with pytest.raises(ValueError, match="argument 'x'.*dimensions"):
            f(torch.rand(16, 16), torch.rand(16, 16))
        with pytest.raises(TypeError, match="argument 'y'.*floating"):
            f(x, (x * 255).to(torch.uint8))
        bad = x.clone(); bad[0, 0, 0, 0] = float("nan")
        with pytest.raises(ValueError, match="argument 'x'.*NaN"):
            f(bad, x)
        with pytest.raises(ValueError, match="argument 'data_range'"):
            f(x, x, data_range=0.0)
    with pytest.raises(ValueError, match="argument 'x'.*digit images"):
        M.frechet_digit_distance(torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16))
    with pytest.raises(ValueError, match="argument 'y'"):
        M.frechet_digit_distance(torch.rand(4, 1, 16, 16), torch.rand(4, 1, 8, 8))


def test_score_metrics_refuse_bad_input():
    s = torch.rand(20)
    for f in (M.auroc, M.auroc_threshold_set, M.roc_curve):
        with pytest.raises(ValueError, match="argument 'scores_in'.*1 dimensions"):
            f(s[:, None], s)
        with pytest.raises(TypeError, match="argument 'scores_out'.*floating"):
            f(s, torch.arange(5))
        bad = s.clone(); bad[2] = float("nan")
        with pytest.raises(ValueError, match="argument 'scores_out'.*NaN"):
            f(s, bad)
        with pytest.raises(ValueError, match="argument 'scores_in'.*at least 1 rows"):
            f(torch.zeros(0), s)
    with pytest.raises(ValueError, match="argument 'every'"):
        M.auroc_threshold_set(s, s, every=0)


def test_bits_and_nll_refuse_bad_input():
    with pytest.raises(ValueError, match="argument 'dims'"):
        M.bits_per_dim(1.0, 0)
    with pytest.raises(TypeError, match="argument 'nll_nats'"):
        M.bits_per_dim("1.0", 3)
    with pytest.raises(TypeError, match="argument 'nll_nats'"):
        M.bits_per_dim(float("nan"), 3)
    with pytest.raises(ValueError, match="argument 'n_bins'"):
        M.bits_per_dim(1.0, 3, n_bins=1)
    with pytest.raises(ValueError, match="argument 'logdet_jtj'"):
        M.revised_bits_per_dim(torch.zeros(3), torch.zeros(4), 2, 5)
    with pytest.raises(ValueError, match="argument 'log_prob'.*1 dimensions"):
        M.nll(torch.zeros(3, 2))
    with pytest.raises(TypeError, match="argument 'log_prob'.*floating"):
        M.nll(torch.zeros(3, dtype=torch.long))
