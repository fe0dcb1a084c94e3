"Tests of invgen_lit.data: toy densities, the 6-D manifold, tables, digits, local loaders, corruptions."
import gzip
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from invgen_lit.core import set_seed
from invgen_lit.data import (AFHQ_CLASSES, CORRUPTIONS, LETTERS, TABLES, TOYS, Checkerboard, EightGaussians, GaussianClusters,
                             GaussianMixture2D, ImageFolder, Manifold6D, Pinwheel, Rings, TwoSpirals, adult_like,
                             adult_like_proba, corrupt, digits, grid_log_prob, histogram_tv, integrate, load_afhq,
                             letters, load_celeba, load_ffhq, load_mnist, load_uci, near_ood, photo_patches,
                             read_idx, table, toy)


# ---------------------------------------------------------------- toys: densities
@pytest.fixture(scope="module")
def toys():
    return {name: toy(name) for name in TOYS}


@pytest.mark.parametrize("name", list(TOYS))
def test_density_integrates_to_one_and_matches_samples(toys, name):
    d = toys[name]
    res = 80
    _, _, lp = grid_log_prob(d, res)
    x0, x1, y0, y1 = d.bounds
    cell = (x1 - x0) * (y1 - y0) / res**2
    p = lp.exp()
    assert abs(float(p.sum() * cell) - 1) < 3e-3, name
    # sampler and density agree: E_samples[log p] equals the integral of p log p (within 5 standard errors)
    x = d.sample(6000, seed=11)
    lx = d.log_prob(x).double()
    assert torch.isfinite(lx).all(), name
    neg_entropy = float(torch.where(p > 0, p * lp, torch.zeros_like(p)).sum() * cell)
    assert abs(float(lx.mean()) - neg_entropy) < 5 * float(lx.std()) / math.sqrt(len(x)) + 0.02, name
    # histogram of samples vs bin masses of the density: no worse than two independent histograms
    tv = histogram_tv(d, samples=x, bins=16, sub=2)
    h = lambda s: np.histogram2d(s[:, 1].numpy(), s[:, 0].numpy(), bins=16, range=[[y0, y1], [x0, x1]])[0] / len(s)
    tv_noise = 0.5 * np.abs(h(x) - h(d.sample(6000, seed=12))).sum()
    assert tv < 1.2 * tv_noise + 0.01, (name, tv, tv_noise)


def test_histogram_check_detects_a_wrong_density():
    x = GaussianClusters().sample(6000, seed=0)
    flipped = GaussianClusters(weights=[0.4, 0.3, 0.2, 0.1])
    assert histogram_tv(GaussianClusters(), samples=x, bins=16) < 0.08
    assert histogram_tv(flipped, samples=x, bins=16) > 0.25


@pytest.mark.parametrize("name", list(TOYS))
def test_mixture_of_conditionals_is_the_density(toys, name):
    d = toys[name]
    x, y = d.sample(300, return_labels=True, seed=3)
    cond = torch.stack([d.log_prob(x.double(), torch.full((len(x),), k)) for k in range(d.n_classes)], 1)
    mix = torch.logsumexp(cond + d.weights.log(), 1)
    torch.testing.assert_close(mix, d.log_prob(x.double()), rtol=0, atol=1e-9)
    assert y.dtype == torch.long and x.shape == (300, 2) and x.dtype == torch.float32
    assert y.min() >= 0 and y.max() < d.n_classes


def test_rings_closed_form_against_quadrature():
    r = Rings(radii=(0.5, 1.7), noise=0.2)
    x = torch.tensor([[0.1, 0.3], [1.5, -0.8], [3.0, 0.0]], dtype=torch.float64)
    th = (torch.arange(40000, dtype=torch.float64) + 0.5) / 40000 * 2 * math.pi
    u = torch.stack([th.cos(), th.sin()], 1)
    ref = sum(w * torch.exp(-((x[:, None] - rad * u[None]) ** 2).sum(-1) / (2 * 0.04)).mean(1) / (2 * math.pi * 0.04)
              for w, rad in zip(r.weights, r.radii))
    torch.testing.assert_close(r.log_prob(x), ref.log(), rtol=0, atol=1e-10)


def test_curve_quadrature_is_converged():
    a, b = TwoSpirals(), TwoSpirals(panel=1.0, order=14)
    x = a.sample(500, seed=0).double()
    torch.testing.assert_close(a.log_prob(x), b.log_prob(x), rtol=0, atol=1e-6)


def test_checkerboard_values():
    c = Checkerboard()
    lp = c.log_prob(torch.tensor([[-1.5, -1.5], [-0.5, -1.5], [5.0, 0.0]]))
    assert lp[0] == pytest.approx(-math.log(8)) and lp[1] == -math.inf and lp[2] == -math.inf
    x = c.sample(2000, seed=0)
    assert torch.isfinite(c.log_prob(x)).all()


def test_gaussian_clusters_defaults_and_custom():
    g = GaussianClusters()
    torch.testing.assert_close(g.centers, torch.tensor([[-1.0, 1.0], [0.0, -2.0], [1.0, -1.0], [2.0, 1.0]], dtype=torch.float64))
    torch.testing.assert_close(g.weights, torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64))
    assert g.std == 0.3 and g.n_classes == 4
    x, y = g.sample(40000, return_labels=True, seed=0)
    freq = torch.bincount(y, minlength=4).double() / len(y)
    assert (freq - g.weights).abs().max() < 0.01
    for k in range(4):
        assert (x[y == k].double().mean(0) - g.centers[k]).abs().max() < 0.03
        assert (x[y == k].double().std(0) - 0.3).abs().max() < 0.01
    # closed form at one point against torch.distributions
    pt = torch.tensor([[0.3, -0.2]], dtype=torch.float64)
    ref = torch.logsumexp(torch.stack([math.log(w) + torch.distributions.Normal(torch.tensor(c, dtype=torch.float64), 0.3).log_prob(pt[0]).sum()
                                       for w, c in zip([0.1, 0.2, 0.3, 0.4], GaussianClusters.CENTERS)]), 0)
    assert float(g.log_prob(pt)) == pytest.approx(float(ref), abs=1e-10)
    # custom centres and weights; custom centres without weights are uniform
    c = GaussianClusters(centers=[[0, 0], [3, 3]], weights=[0.25, 0.75], std=0.5)
    torch.testing.assert_close(c.weights, torch.tensor([0.25, 0.75], dtype=torch.float64))
    assert GaussianClusters(centers=[[0, 0], [1, 1], [2, 2]]).weights.tolist() == pytest.approx([1 / 3] * 3)
    y2 = c.sample(20000, return_labels=True, seed=1)[1]
    assert abs(float(y2.double().mean()) - 0.75) < 0.015
    assert GaussianClusters(weights=[0.4, 0.3, 0.2, 0.1]).weights[0] == pytest.approx(0.4)


def test_seeded_sampling_is_deterministic():
    for name in TOYS:
        d = toy(name)
        assert torch.equal(d.sample(50, seed=5), d.sample(50, seed=5))
        assert not torch.equal(d.sample(50, seed=5), d.sample(50, seed=6))
    g = EightGaussians()
    set_seed(2); a = g.sample(10)
    set_seed(2); b = g.sample(10)
    assert torch.equal(a, b)
    assert g.sample(0).shape == (0, 2)


@pytest.mark.parametrize("bad, err, msg", [
    (lambda: GaussianClusters().sample(-1), ValueError, "'n'"),
    (lambda: GaussianClusters().sample(2.5), TypeError, "'n'"),
    (lambda: GaussianClusters(weights=[0.5, 0.5]), ValueError, "expected 4 weights"),
    (lambda: GaussianClusters(weights=[1, 2, 3, 4]), ValueError, "summing to 1"),
    (lambda: GaussianClusters(weights=[0.5, 0.6, -0.2, 0.1]), ValueError, "non-negative"),
    (lambda: GaussianClusters(weights="abcd"), TypeError, "'weights'"),
    (lambda: GaussianClusters(std=0), ValueError, "'std'"),
    (lambda: GaussianMixture2D(centers=[[0, 0, 0]]), ValueError, "'centers'"),
    (lambda: GaussianClusters().log_prob(torch.zeros(3, 3)), ValueError, "'x'"),
    (lambda: GaussianClusters().log_prob(torch.zeros(3, 2), torch.tensor([0, 1, 4])), ValueError, "'y'"),
    (lambda: Rings(radii=(1.0, -2.0)), ValueError, "'radii'"),
    (lambda: Pinwheel(arms=0), ValueError, "'arms'"),
    (lambda: TwoSpirals(noise=-0.1), ValueError, "'noise'"),
    (lambda: toy("moons"), ValueError, "two_moons"),
    (lambda: digits(28), ValueError, "'size'"),
    (lambda: digits("16"), ValueError, "'size'"),
    (lambda: Manifold6D(weights=[1, 1, 1, 0, 1, 1]), ValueError, "'weights'"),
    (lambda: Manifold6D().log_prob_from_z(torch.zeros(4, 3)), ValueError, "'z'"),
    (lambda: table("iris"), ValueError, "breast_cancer"),
])
def test_bad_arguments(bad, err, msg):
    with pytest.raises(err, match=msg.replace("(", r"\(").replace("[", r"\[")):
        bad()


# ---------------------------------------------------------------- 6-D manifold
def test_manifold_loglik_against_finite_differences():
    m = Manifold6D(weights=[0.5, 1.0, 2.0, 1.5, 0.7, -1.2])
    z = torch.randn(300, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    h = 1e-5
    Jfd = torch.stack([(m.g(z + h * e) - m.g(z - h * e)) / (2 * h) for e in torch.eye(2, dtype=torch.float64)], 2)
    torch.testing.assert_close(m.jacobian(z), Jfd, rtol=0, atol=1e-7)
    ref = torch.distributions.MultivariateNormal(torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64)).log_prob(z) \
        - 0.5 * torch.logdet(Jfd.transpose(1, 2) @ Jfd)
    torch.testing.assert_close(m.log_prob_from_z(z), ref, rtol=0, atol=1e-6)


def test_manifold_area_element_matches_a_triangulated_surface():
    # sqrt(det J^T J) is the area element: compare the summed area of a fine triangulation of g([-1,1]^2) with it
    m = Manifold6D()
    k = 121
    t = torch.linspace(-1, 1, k, dtype=torch.float64)
    zz = torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)
    P = m.g(zz).reshape(k, k, 6)

    def tri(a, b, c):
        u, v = b - a, c - a
        return 0.5 * ((u * u).sum(-1) * (v * v).sum(-1) - (u * v).sum(-1) ** 2).clamp(min=0).sqrt()

    area = (tri(P[:-1, :-1], P[1:, :-1], P[:-1, 1:]) + tri(P[1:, 1:], P[:-1, 1:], P[1:, :-1])).sum()
    c = (t[:-1] + t[1:]) / 2
    zc = torch.stack(torch.meshgrid(c, c, indexing="ij"), -1).reshape(-1, 2)
    J = m.jacobian(zc)
    integral = torch.linalg.det(J.transpose(1, 2) @ J).sqrt().sum() * (2 / (k - 1)) ** 2
    assert abs(float(area / integral) - 1) < 1e-3


def test_manifold_sampling_and_encoding():
    m = Manifold6D()
    x, z = m.sample(2000, return_z=True, seed=0)
    assert x.shape == (2000, 6) and z.shape == (2000, 2)
    assert abs(float((x.double() - m.g(z.double())).std()) - 0.1) < 0.005  # noise variance 0.01
    x0 = m.sample(500, noise=False, seed=1)
    _, z0 = m.sample(500, return_z=True, noise=False, seed=1)
    torch.testing.assert_close(m.encode(x0), z0, rtol=0, atol=1e-4)
    torch.testing.assert_close(m.log_prob(x0), m.log_prob_from_z(z0), rtol=0, atol=1e-3)
    # on noisy points, Gauss-Newton moves to a point of the manifold at least as close as the closed-form start
    r0 = (m.g(m.encode(x, steps=0).double()) - x.double()).norm(dim=1)
    r1 = (m.g(m.encode(x).double()) - x.double()).norm(dim=1)
    assert (r1 <= r0 + 1e-5).all() and r1.mean() < 0.9 * r0.mean()
    assert torch.equal(m.sample(5, seed=3), m.sample(5, seed=3))


# ---------------------------------------------------------------- tables
@pytest.mark.parametrize("name", list(TABLES))
def test_tables(name):
    tr, te = table(name)
    tr2, te2 = table(name)
    pd.testing.assert_frame_equal(tr, tr2); pd.testing.assert_frame_equal(te, te2)
    t = TABLES[name]["target"]
    assert t in tr.columns and tr.attrs["target"] == t
    assert abs(len(te) / (len(tr) + len(te)) - 0.2) < 0.01
    assert set(te[t]) <= set(tr[t])
    fr, fe = tr[t].value_counts(normalize=True), te[t].value_counts(normalize=True)
    assert (fr - fe).abs().max() < 0.02  # stratified
    for col in TABLES[name]["categorical"]:
        assert not pd.api.types.is_numeric_dtype(tr[col]) and isinstance(tr[col].iloc[0], str)
    assert not tr.isna().any().any()


def test_adult_like_process():
    a, b, c = adult_like(3000, seed=1), adult_like(3000, seed=1), adult_like(3000, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    big = adult_like(40000, seed=3)
    p = adult_like_proba(big)
    assert ((p > 0) & (p < 1)).all()
    assert abs(p.mean() - big.income.mean()) < 0.01  # income is drawn from the known probability
    # calibration in deciles of the true probability
    bins = pd.qcut(p, 10, labels=False)
    cal = pd.DataFrame({"p": p, "y": big.income, "b": bins}).groupby("b").mean()
    assert (cal.p - cal.y).abs().max() < 0.03
    assert big.age.between(17, 90).all() and big.hours_per_week.between(1, 99).all()
    with pytest.raises(ValueError, match="missing columns"):
        adult_like_proba(big.drop(columns=["age"]))


# ---------------------------------------------------------------- digits
def test_digits():
    from sklearn.datasets import load_digits
    X8, y8 = digits(8)
    assert X8.shape == (1797, 1, 8, 8) and y8.dtype == torch.long and set(y8.tolist()) == set(range(10))
    torch.testing.assert_close(X8[:, 0], torch.tensor(load_digits().images, dtype=torch.float32) / 8 - 1)
    for s in (16, 32):
        X, y = digits(s)
        assert X.shape == (1797, 1, s, s) and X.dtype == torch.float32 and torch.equal(y, y8)
        assert X.min() >= -1 and X.max() <= 1
        torch.testing.assert_close(X, F.interpolate(X8, size=(s, s), mode="bilinear", align_corners=False))
    X, _ = digits(16)
    X[0] = 5.0  # returned tensors are copies: the cache stays intact
    assert digits(16)[0].max() <= 1


# ---------------------------------------------------------------- MNIST
def _idx(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 8, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape) + arr.astype(np.uint8).tobytes()


def test_mnist_loader(tmp_path):
    rng = np.random.default_rng(0)
    imgs, labels = rng.integers(0, 256, (6, 28, 28)), np.array([5, 0, 4, 1, 9, 2])
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx(imgs))
    with gzip.open(tmp_path / "train-labels-idx1-ubyte.gz", "wb") as f: f.write(_idx(labels))
    (tmp_path / "t10k-images.idx3-ubyte").write_bytes(_idx(imgs[:2]))
    (tmp_path / "t10k-labels.idx1-ubyte").write_bytes(_idx(labels[:2]))
    X, y = load_mnist(tmp_path)
    assert X.shape == (6, 1, 28, 28) and y.tolist() == labels.tolist()
    torch.testing.assert_close(X[:, 0], torch.tensor(imgs, dtype=torch.float32) / 127.5 - 1)
    assert X.min() >= -1 and X.max() <= 1
    Xp, _ = load_mnist(tmp_path, pad=2)
    assert Xp.shape == (6, 1, 32, 32) and (Xp[:, :, :2] == -1).all()
    Xt, yt = load_mnist(tmp_path, train=False)
    assert Xt.shape == (2, 1, 28, 28) and yt.tolist() == [5, 0]


def test_mnist_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mnist(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte\[\.gz\]"):
        load_mnist(tmp_path)
    bad = tmp_path / "bad"; bad.mkdir()
    (bad / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x0d\x03" + bytes(20))
    (bad / "train-labels-idx1-ubyte").write_bytes(_idx(np.zeros(2)))
    with pytest.raises(ValueError, match="magic bytes") as e:
        load_mnist(bad)
    assert str(bad / "train-images-idx3-ubyte") in str(e.value)
    (bad / "train-images-idx3-ubyte").write_bytes(_idx(np.zeros((3, 4, 4)))[:-5])
    with pytest.raises(ValueError, match="header announces shape"):
        load_mnist(bad)
    (bad / "train-images-idx3-ubyte").write_bytes(_idx(np.zeros((3, 4, 4))))
    with pytest.raises(ValueError, match="labels"):
        load_mnist(bad)  # 3 images, 2 labels
    assert read_idx(bad / "train-labels-idx1-ubyte").shape == (2,)


# ---------------------------------------------------------------- image folders
def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr, np.uint8)).save(path)


def test_image_folder_crop_resize_and_range(tmp_path):
    wide = np.zeros((20, 60, 3), np.uint8); wide[:, 20:40] = 255  # only the central square is white
    _png(tmp_path / "ffhq/00000/a.png", wide)
    _png(tmp_path / "ffhq/00001/b.png", np.full((50, 30, 3), 0, np.uint8))
    (tmp_path / "ffhq/notes.txt").write_text("not an image")
    ds = load_ffhq(tmp_path / "ffhq", size=16)
    assert len(ds) == 2 and isinstance(ds, torch.utils.data.Dataset)
    x = ds[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    torch.testing.assert_close(x, torch.ones(3, 16, 16))
    torch.testing.assert_close(ds[1], -torch.ones(3, 16, 16))
    assert ds.tensors().shape == (2, 3, 16, 16) and ds.tensors(limit=1).shape == (1, 3, 16, 16)
    _png(tmp_path / "celeba/img_align_celeba/000001.jpg", np.random.default_rng(0).integers(0, 256, (218, 178, 3)))
    c = load_celeba(tmp_path / "celeba", size=32)[0]
    assert c.shape == (3, 32, 32) and c.min() >= -1 and c.max() <= 1


def test_afhq_labels_and_errors(tmp_path):
    for split in ("train", "val"):
        for k, c in enumerate(AFHQ_CLASSES):
            for i in range(k + 1):
                _png(tmp_path / "afhq" / split / c / f"{i}.jpg", np.full((8, 8, 3), 40 * k, np.uint8))
    ds = load_afhq(tmp_path / "afhq", size=8)
    assert len(ds) == 6 and ds.classes == list(AFHQ_CLASSES)
    x, y = ds.tensors()
    assert y.tolist() == [0, 1, 1, 2, 2, 2] and x.shape == (6, 3, 8, 8)
    xi, yi = ds[3]
    assert yi == 2 and xi.shape == (3, 8, 8)
    assert len(load_afhq(tmp_path / "afhq/val", size=8, split=None)) == 6
    # only 'dog' present: labels keep the fixed mapping
    _png(tmp_path / "only_dog/dog/a.png", np.zeros((8, 8, 3)))
    assert load_afhq(tmp_path / "only_dog", size=8).tensors()[1].tolist() == [1]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="class subfolders") as e:
        load_afhq(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(e.value)
    with pytest.raises(FileNotFoundError, match="expected image files"):
        ImageFolder(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_ffhq(tmp_path / "missing")
    (tmp_path / "broken").mkdir(); (tmp_path / "broken/x.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="could not be read as an image") as e:
        ImageFolder(tmp_path / "broken")[0]
    assert "x.png" in str(e.value)


# ---------------------------------------------------------------- UCI
def test_uci_power_miniboone(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "power").mkdir()
    np.save(tmp_path / "power/data.npy", rng.normal(size=(300, 8)))
    d = load_uci("power", tmp_path)  # found in the subfolder named after the set
    assert {k: tuple(v.shape) for k, v in d.items()} == {"train": (243, 6), "val": (27, 6), "test": (30, 6)}
    both = torch.cat([d["train"], d["val"]]).double()
    torch.testing.assert_close(both.mean(0), torch.zeros(6, dtype=torch.float64), rtol=0, atol=1e-5)
    torch.testing.assert_close(both.std(0, unbiased=False), torch.ones(6, dtype=torch.float64), rtol=0, atol=1e-5)
    d2 = load_uci("POWER", tmp_path / "power/data.npy")
    assert all(torch.equal(d[k], d2[k]) for k in d)  # deterministic (fixed shuffle and jitter)
    np.save(tmp_path / "mb.npy", rng.normal(size=(100, 43)))
    m = load_uci("miniboone", tmp_path / "mb.npy")
    assert m["train"].shape == (81, 43) and m["test"].shape == (10, 43)


def test_uci_gas_and_bsds(tmp_path):
    rng = np.random.default_rng(1)
    s = rng.normal(size=(200, 4))
    df = pd.DataFrame({"Time": np.arange(200.0), "Meth": rng.random(200), "Eth": rng.random(200),
                       "S1": s[:, 0], "S1b": s[:, 0] + 1e-3 * rng.normal(size=200), "S2": s[:, 1], "S3": s[:, 2], "S4": s[:, 3]})
    df.to_pickle(tmp_path / "ethylene_CO.pickle")
    g = load_uci("gas", tmp_path)
    assert g["train"].shape[1] == 4  # S1 and S1b are 0.99+ correlated: one is dropped
    assert sum(len(v) for v in g.values()) == 200
    np.savez(tmp_path / "BSDS300.npz", train=rng.normal(size=(50, 63)), validation=rng.normal(size=(10, 63)), test=rng.normal(size=(20, 63)))
    b = load_uci("bsds300", tmp_path)
    assert b["train"].shape == (50, 63) and b["val"].shape == (10, 63) and b["test"].shape == (20, 63)
    try:
        import h5py
    except ImportError:
        (tmp_path / "h5").mkdir(); (tmp_path / "h5/BSDS300.hdf5").write_bytes(b"\x89HDF")
        with pytest.raises(ImportError, match="h5py.*BSDS300.npz"):
            load_uci("bsds300", tmp_path / "h5")
    else:
        with h5py.File(tmp_path / "BSDS300.hdf5", "w") as h:
            for k in ("train", "validation", "test"): h[k] = rng.normal(size=(5, 63))
        assert load_uci("bsds300", tmp_path / "BSDS300.hdf5")["val"].shape == (5, 63)


def test_uci_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_uci("power", tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="expected data.npy") as e:
        load_uci("power", tmp_path)
    assert str(tmp_path) in str(e.value)
    np.save(tmp_path / "data.npy", np.zeros((50, 5)))
    with pytest.raises(ValueError, match=r"\(N, 8\)") as e:
        load_uci("power", tmp_path)
    assert "data.npy" in str(e.value)
    (tmp_path / "junk.npy").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable .npy"):
        load_uci("miniboone", tmp_path / "junk.npy")
    (tmp_path / "ethylene_CO.pickle").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable pandas pickle"):
        load_uci("gas", tmp_path)
    pd.DataFrame({"a": [1.0, 2.0]}).to_pickle(tmp_path / "g2.pickle")
    with pytest.raises(ValueError, match="'Meth', 'Eth', 'Time'"):
        load_uci("gas", tmp_path / "g2.pickle")
    np.savez(tmp_path / "BSDS300.npz", train=np.zeros((3, 63)))
    with pytest.raises(ValueError, match="'train', 'validation', 'test'"):
        load_uci("bsds300", tmp_path / "BSDS300.npz")
    with pytest.raises(ValueError, match="'power'"):
        load_uci("cifar", tmp_path)


# ---------------------------------------------------------------- corruptions
@pytest.fixture(scope="module")
def imgs():
    return digits(16)[0][:6]


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_corruptions_shape_range_determinism(imgs, kind):
    a = corrupt(imgs, kind, seed=4)
    assert a.shape == imgs.shape and a.dtype == imgs.dtype
    assert a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, corrupt(imgs, kind, seed=4))
    assert (a - imgs).abs().mean() > 0.01
    if kind != "canny_edges":  # the only corruption with no randomness
        assert not torch.equal(a, corrupt(imgs, kind, seed=5))
    torch.testing.assert_close(corrupt(imgs, kind, 0.3, seed=4), 0.3 * a + 0.7 * imgs)
    assert torch.equal(corrupt(imgs, kind, 0.0, seed=4), imgs)  # near-OOD intensity 0 is the input
    one = corrupt(imgs[0], kind, seed=4)  # a single (C, H, W) image
    assert one.shape == imgs[0].shape
    rgb = corrupt(torch.rand(2, 3, 32, 32) * 2 - 1, kind, seed=0)
    assert rgb.shape == (2, 3, 32, 32) and rgb.min() >= -1 and rgb.max() <= 1


def test_corruption_specifics(imgs):
    e = corrupt(imgs, "canny_edges")
    assert set(e.unique().tolist()) <= {-1.0, 1.0} and (e == 1).any()
    u = (corrupt(imgs, "impulse_noise", seed=0) - imgs).ne(0).double().mean()
    assert 0.08 < float(u) < 0.16
    s = corrupt(imgs, "stripe", seed=0)
    changed_cols = (s != imgs).any(dim=2)[:, 0]  # (n, W)
    assert (changed_cols.sum(1) <= 3).all()  # a band of round(4 * 16/28) = 2 columns
    sn = corrupt(imgs, "shot_noise", seed=0)
    assert abs(float(sn.mean() - imgs.mean())) < 0.03  # Poisson noise is unbiased


def test_near_ood_and_bad_input(imgs):
    far = -imgs
    torch.testing.assert_close(near_ood(imgs, far, 0.1), 0.1 * far + 0.9 * imgs)
    assert torch.equal(near_ood(imgs, far, 0.0), imgs) and torch.equal(near_ood(imgs, far, 1.0), far)
    with pytest.raises(ValueError, match="'x_ood'"):
        near_ood(imgs, far[:2], 0.5)
    with pytest.raises(ValueError, match="'kind'"):
        corrupt(imgs, "frost")
    with pytest.raises(ValueError, match="'intensity'"):
        corrupt(imgs, "fog", 1.5)
    with pytest.raises(ValueError, match=r"values in \[-1, 1\]"):
        corrupt(imgs * 3, "fog")
    with pytest.raises(ValueError, match="'x'"):
        corrupt(torch.zeros(16, 16), "fog")


# --- offline OOD families (letters, photo patches) ---

@pytest.mark.parametrize("family", [letters, photo_patches])
def test_families_shape_range_and_determinism(family):
    x = family(40, 16, seed=2)
    assert x.shape == (40, 1, 16, 16) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1 and x.std() > 0.2
    assert torch.equal(x, family(40, 16, seed=2)) and not torch.equal(x, family(40, 16, seed=3))
    assert family(0, 16).shape == (0, 1, 16, 16)
    assert family(3, 32).shape == (3, 1, 32, 32)


@pytest.mark.parametrize("family", [letters, photo_patches])
def test_families_share_the_digits_grey_levels(family):
    levels = (family(30, 8, seed=0) + 1) * 8          # at 8 x 8: the digits' 0..16 levels
    torch.testing.assert_close(levels, levels.round(), atol=1e-4, rtol=0)


def test_letters_are_white_on_black_like_the_digits():
    x = letters(200, 16, seed=0)
    border = torch.cat([x[..., 0, :], x[..., -1, :]], -1)
    assert border.mean() < -0.9 and x.amax((1, 2, 3)).median() > 0.5  # dark background, bright strokes
    assert not any(ch in LETTERS for ch in "OIlSZBGgqbo")              # none that read as digits


@pytest.mark.parametrize("family", [letters, photo_patches])
def test_families_bad_input(family):
    with pytest.raises(ValueError, match="argument 'n'"): family(-1)
    with pytest.raises(ValueError, match="argument 'size'"): family(2, size=2)
    with pytest.raises(ValueError, match="argument 'seed'"): family(2, seed=-1)
