"""Batched replicas (`fit_replicas`): every family that declares them trains K seeds as one computation that equals K
single runs; other models go to worker processes; bad input is refused naming the argument. And the fitted-model cache."""
import json
import os
import warnings
from pathlib import Path

import pytest
import torch

from invgen_lit.cagan import ACGAN, CAGAN
from invgen_lit.cgpgan import CGPGAN, CategoricalInfoGAN, ElasticInfoGAN
from invgen_lit.core import (DiagonalGaussian, GenerativeModel, ReplicaError, by_replica, cached_fit, fit_replicas,
                             replica_obstacle, set_seed, stack_replicas, unstack_replicas)
from invgen_lit.dlsgan import AEDLSGAN, DLSGAN, InfoGAN, MSEGAN, PosthocEncoderGAN
from invgen_lit.gan import GAN
from invgen_lit.invgan import InvGAN, RealNVP
from invgen_lit.iresnet import IResNet
from invgen_lit.ode import CNF
from invgen_lit.pvdgan import PVDGAN, VAEGAN
from invgen_lit.reversal import KDEGAN

H = (32, 32)
SEEDS = [11, 12, 13]


@pytest.fixture
def float64():
    "Exactness is checked in float64, where rounding cannot build up over 20 GAN steps (float32 rounds the batched and the single products differently)."
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def data(kind: str):
    g = torch.Generator().manual_seed(0)
    if kind == "2d": return (2 * torch.randn(256, 2, generator=g),)
    if kind == "6d": return (torch.randn(256, 6, generator=g),)
    if kind == "img": return (torch.rand(256, 1, 4, 4, generator=g) * 2 - 1,)
    if kind == "2d+y4": return 2 * torch.randn(256, 2, generator=g), torch.randint(0, 4, (256,), generator=g)
    if kind == "2d+y2": return 2 * torch.randn(256, 2, generator=g), torch.randint(0, 2, (256,), generator=g)


FAMILIES = {   # every MLP family the claims compare, with the data it trains on
    "GAN (04)": (lambda: GAN(2, hidden=H, r1=1.0), "2d"),
    "GAN wgan-gp (04)": (lambda: GAN(2, hidden=H, loss="wgan-gp"), "2d"),
    "KDE-GAN, normal prior (10)": (lambda: KDEGAN((6,), latent_dim=2, prior="normal", hidden=H), "6d"),
    "InvGAN (20)": (lambda: InvGAN(6, hidden=H, n_centres=8, kmeans_samples=200), "6d"),
    "RealNVP (20)": (lambda: RealNVP(6, n_layers=3, hidden=H), "6d"),
    "i-ResNet (40)": (lambda: IResNet(2, n_blocks=2, hidden=H), "2d"),
    "CAGAN (50)": (lambda: CAGAN(2, 4, latent_dim=2, hidden=H), "2d+y4"),
    "ACGAN (50)": (lambda: ACGAN(2, 4, latent_dim=2, hidden=H), "2d+y4"),
    "DLSGAN (51)": (lambda: DLSGAN(2, latent_dim=4, hidden=H, batch_size=16), "2d"),
    "DLSGAN images (51)": (lambda: DLSGAN((1, 4, 4), latent_dim=4, hidden=H, batch_size=16), "img"),
    "MSEGAN (51)": (lambda: MSEGAN(2, latent_dim=4, hidden=H, batch_size=16), "2d"),
    "InfoGAN (51)": (lambda: InfoGAN(2, latent_dim=4, hidden=H, batch_size=16), "2d"),
    "post-hoc encoder (51)": (lambda: PosthocEncoderGAN(2, latent_dim=4, hidden=H, batch_size=16), "2d"),
    "AEDLSGAN (51)": (lambda: AEDLSGAN(2, n_classes=2, latent_dim=4, hidden=H, batch_size=16), "2d+y2"),
    "PVDGAN (53)": (lambda: PVDGAN(2, latent_dim=4, hidden=H, batch_size=16), "2d"),
    "VAEGAN (53)": (lambda: VAEGAN(2, latent_dim=4, hidden=H, batch_size=16), "2d"),
    "CGPGAN (54)": (lambda: CGPGAN(2, 4, latent_dim=2, hidden=H), "2d"),
    "categorical InfoGAN (54)": (lambda: CategoricalInfoGAN(2, 4, latent_dim=2, hidden=H), "2d"),
}


def rel(a, b) -> float: return float((a.double() - b.double()).abs().max() / a.double().abs().max().clamp_min(1.0))

def max_diff(a: GenerativeModel, b: GenerativeModel) -> float:
    "Largest difference (relative to the tensor's largest entry, when above 1) over weights, buffers and the optimisers' per-parameter states."
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    out = [rel(sa[k], sb[k]) for k in sa if torch.is_tensor(sa[k]) and sa[k].numel()]
    for name, oa in a.optimizers.items():
        ob = b.optimizers[name]
        for pa, pb in zip([p for g in oa.param_groups for p in g["params"]], [p for g in ob.param_groups for p in g["params"]]):
            for key, va in oa.state.get(pa, {}).items():
                vb = ob.state[pb][key]
                if torch.is_tensor(va) and va.numel(): out.append(rel(va, vb))
    return max(out)


BITWISE = {"GAN (04)", "GAN wgan-gp (04)", "KDE-GAN, normal prior (10)", "RealNVP (20)", "CAGAN (50)", "ACGAN (50)", "CGPGAN (54)",
           "categorical InfoGAN (54)"}


def check_family(family: str, tol: float):
    make, kind = FAMILIES[family]
    X = data(kind)
    reps = fit_replicas(make, SEEDS, *X, steps=20, verbose=False)
    assert reps.path == "batched", reps.reason
    for s, r in zip(SEEDS, reps):
        set_seed(s)
        single = make().fit(*X, steps=20, seed=s, progress=False)
        assert max_diff(single, r) <= tol, (family, s, max_diff(single, r))
        assert r.global_step == single.global_step and len(r.history) == len(single.history)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_batched_equals_single_runs(family):
    """Replica i equals set_seed(s_i); make_model().fit(..., seed=s_i) after 20 steps in float32: weights, buffers and Adam
    moments bit for bit for the GANs whose steps average only over rows; within a few units in the last place for those
    that also reduce a batch statistic (the traced latent variance of notebooks 51 and 53, InvGAN's batch moments)."""
    check_family(family, 0.0 if family in BITWISE else 2e-6)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_batched_equals_single_runs_float64(family, float64):
    "The same in float64, where the remaining rounding differences shrink to 1e-16."
    check_family(family, 1e-12)


def test_replicas_are_ordinary_models(tmp_path):
    "Each replica samples, saves and loads as usual, is independent of the others, and can train on."
    X = data("2d")[0]
    reps = fit_replicas(lambda: GAN(2, hidden=H), SEEDS, X, steps=10, verbose=False)
    assert [type(r) for r in reps] == [GAN] * 3 and reps.seeds == SEEDS
    set_seed(0); a = reps[0].sample(5)
    reps[0].save(tmp_path / "r0.pt")
    loaded = GAN.load(tmp_path / "r0.pt")
    set_seed(0); torch.testing.assert_close(loaded.sample(5), a)
    assert not torch.equal(reps[0].G.net[0].weight, reps[1].G.net[0].weight)   # different seeds, different weights
    reps[1].fit(X, steps=3, progress=False)                                      # resumes with its own optimiser state
    assert reps[1].global_step == 13 and reps[0].global_step == 10


def test_default_gan_bitwise_on_clusters():
    "The vanilla GAN with its own defaults (4 x 256, R2) on the Gaussian clusters of notebook 04: 5 seeds, bit for bit."
    from invgen_lit.data import GaussianClusters
    X = GaussianClusters().sample(1000, seed=0)
    reps = fit_replicas(lambda: GAN(2), [0, 1, 2, 3, 4], X, steps=20, verbose=False)
    for s, r in zip(range(5), reps):
        set_seed(s); single = GAN(2).fit(X, steps=20, seed=s, progress=False)
        assert max_diff(single, r) == 0, s


def test_worker_processes_for_other_models():
    "A family without batched replicas trains in worker processes, exactly like its single runs, and says so."
    X = data("2d")[0]
    make = lambda: DiagonalGaussian(2)
    reps = fit_replicas(make, [1, 2], X, steps=30, verbose=False)
    assert reps.path == ("processes" if (os.cpu_count() or 1) > 1 else "sequential") and "DiagonalGaussian" in reps.reason
    for s, r in zip([1, 2], reps):
        set_seed(s); single = make().fit(X, steps=30, seed=s, progress=False)
        assert max_diff(single, r) == 0
    kde = lambda: KDEGAN((6,), latent_dim=2, prior="kde", hidden=H, bank=64, max_reversal_steps=2, min_reversal_steps=1)
    reps = fit_replicas(kde, [1, 2], *data("6d"), steps=3, verbose=False)
    assert reps.path != "batched" and "MMD" in reps.reason


@pytest.mark.parametrize("make, why", [
    (lambda: CNF(2), "does not train as batched"),
    (lambda: KDEGAN((6,), latent_dim=2, prior="kde"), "per-replica number of steps"),
    (lambda: CAGAN(2, 4, latent_dim=2, mixed_batch=True), "mixed batches"),
    (lambda: CGPGAN(2, 4, codebook=True), "codebook"),
    (lambda: ElasticInfoGAN(2, 4), "parameters outside its layers"),
    (lambda: IResNet(2, lipschitz=0.9), "spectral normalisation"),
])
def test_obstacles_are_named(make, why):
    "A model that cannot be batched says why; asking for 'batched' anyway is a ReplicaError with that reason."
    assert why in replica_obstacle(make())
    with pytest.raises(ReplicaError, match=why):
        fit_replicas(make, [1, 2], torch.randn(64, 2), steps=1, parallel="batched", verbose=False)


def test_unsplittable_draw_is_refused():
    "A step whose random draw has no row per data row, or that uses the global generator otherwise, stops."
    class ScalarNoise(GAN):
        def train_step(self, x):
            torch.rand(())
            return super().train_step(x)
    with pytest.raises(ReplicaError, match="cannot be split"):
        fit_replicas(lambda: ScalarNoise(2, hidden=H), [1, 2], torch.randn(64, 2), steps=1, verbose=False)

    class Dropout(GAN):
        def train_step(self, x): return super().train_step(torch.nn.functional.dropout(x, 0.1))
    with pytest.raises(ReplicaError, match="global generator"):
        fit_replicas(lambda: Dropout(2, hidden=H), [1, 2], torch.randn(64, 2), steps=1, verbose=False)


@pytest.mark.parametrize("seeds, exc, words", [
    ([], ValueError, "at least one seed"),
    ([3, 4, 3], ValueError, "repeats: [3]"),
    ("123", TypeError, "list of ints"),
    ([1, -2], ValueError, "seeds[1]"),
    ([1, 2.5], TypeError, "seeds[1]"),
])
def test_bad_seeds(seeds, exc, words):
    with pytest.raises(exc) as e:
        fit_replicas(lambda: GAN(2, hidden=H), seeds, torch.randn(64, 2), steps=1, verbose=False)
    assert words in str(e.value) and "'seeds" in str(e.value)


def test_bad_arguments():
    X = torch.randn(64, 2)
    with pytest.raises(TypeError, match="'make_model'"): fit_replicas(GAN(2), [1], X)
    with pytest.raises(TypeError, match="GenerativeModel"): fit_replicas(lambda: 3, [1], X)
    with pytest.raises(TypeError, match="'seed'"): fit_replicas(lambda: GAN(2), [1, 2], X, seed=4)
    with pytest.raises(ValueError, match="'parallel'"): fit_replicas(lambda: GAN(2), [1, 2], X, parallel="gpu")
    with pytest.raises(ValueError, match="unfitted"):
        fit_replicas(lambda: GAN(2, hidden=H).fit(X, steps=1, progress=False), [1, 2], X, steps=1, verbose=False)
    with pytest.raises(ReplicaError, match="another architecture|other settings"):
        widths = iter([16, 32])
        fit_replicas(lambda: GAN(2, hidden=(next(widths),)), [1, 2], X, steps=1, parallel="batched", verbose=False)


def test_single_seed_is_the_single_run():
    X = data("2d")[0]
    (r,) = fit_replicas(lambda: GAN(2, hidden=H), [5], X, steps=5, verbose=False)
    set_seed(5); single = GAN(2, hidden=H).fit(X, steps=5, seed=5, progress=False)
    assert max_diff(single, r) == 0


def test_sweep_of_settings_goes_to_processes():
    "Replicas that differ in a setting (a sweep) share no step: they are trained apart, each exactly as its single run."
    X = data("2d")[0]
    grid = [1e-3, 3e-3]
    lrs = iter(grid)
    reps = fit_replicas(lambda: GAN(2, hidden=H, lr=next(lrs)), [1, 2], X, steps=10, verbose=False)
    assert reps.path != "batched" and "lr: 0.001 vs 0.003" in reps.reason
    for s, lr, r in zip([1, 2], grid, reps):
        set_seed(s); single = GAN(2, hidden=H, lr=lr).fit(X, steps=10, seed=s, progress=False)
        assert max_diff(single, r) == 0


def test_by_replica_layout():
    from invgen_lit import core
    core._ACTIVE_REPLICAS = core._Replicas([1, 2], [torch.get_rng_state()] * 2)
    try:
        x = torch.arange(8.)[:, None]
        assert by_replica(x)[0, :, 0].tolist() == [0, 2, 4, 6]
        with pytest.raises(ReplicaError): by_replica(torch.arange(3.)[:, None])
    finally:
        core._ACTIVE_REPLICAS = None


# --- the fitted-model cache -------------------------------------------------------------------------------------------

def test_cache_hit_and_miss(tmp_path):
    X = data("2d")[0]
    a = cached_fit(lambda: GAN(2, hidden=H), X, steps=5, cache=tmp_path)
    b = cached_fit(lambda: GAN(2, hidden=H), X, steps=5, cache=tmp_path)
    assert not a.cache_hit and b.cache_hit and b.fit_seconds == pytest.approx(a.fit_seconds)
    assert max_diff(a, b) == 0
    for other in (dict(seed=1), dict(steps=6), dict(batch_size=32)):
        kw = dict(steps=5) | other
        assert not cached_fit(lambda: GAN(2, hidden=H), X, cache=tmp_path, **kw).cache_hit, other
    assert not cached_fit(lambda: GAN(2, hidden=H, r1=0.5), X, steps=5, cache=tmp_path).cache_hit    # a setting
    assert not cached_fit(lambda: GAN(2, hidden=H), X + 1e-3, steps=5, cache=tmp_path).cache_hit      # the data
    set_seed(0); single = GAN(2, hidden=H).fit(X, steps=5, seed=0, progress=False)
    assert max_diff(single, a) == 0                                                                   # the same run


def test_cache_refuses_damaged_or_foreign_entries(tmp_path):
    X = data("2d")[0]
    make = lambda: DiagonalGaussian(2)
    cached_fit(make, X, steps=5, cache=tmp_path)
    (pt,) = tmp_path.glob("*.pt")
    pt.write_bytes(pt.read_bytes()[:50])                                  # truncated: a run killed while writing
    with pytest.warns(UserWarning, match="cannot be read"):
        m = cached_fit(make, X, steps=5, cache=tmp_path)
    assert not m.cache_hit
    (meta,) = tmp_path.glob("*.json")
    info = json.loads(meta.read_text()); info["version"] = "invgen_lit 0.0.1 source 000000000000 torch 1.0"
    meta.write_text(json.dumps(info))                                     # written by other code
    with pytest.warns(UserWarning, match="fitted by other code"):
        m = cached_fit(make, X, steps=5, cache=tmp_path)
    assert not m.cache_hit
    assert cached_fit(make, X, steps=5, cache=tmp_path).cache_hit         # re-written: good again


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else False, reason="root writes anywhere")
def test_cache_folder_not_writable(tmp_path):
    ro = tmp_path / "ro"; ro.mkdir(); ro.chmod(0o500)
    try:
        with pytest.warns(UserWarning, match="not writable"):
            m = cached_fit(lambda: DiagonalGaussian(2), torch.randn(50, 2), steps=2, cache=ro)
        assert not m.cache_hit and m.global_step == 2
    finally:
        ro.chmod(0o700)


def test_cache_folder_is_a_file(tmp_path):
    f = tmp_path / "file"; f.write_text("x")
    with pytest.warns(UserWarning, match="not writable"):
        m = cached_fit(lambda: DiagonalGaussian(2), torch.randn(50, 2), steps=2, cache=f)
    assert m.global_step == 2


def test_cache_bad_input(tmp_path):
    with pytest.raises(TypeError, match="'make_model'"): cached_fit(3, torch.randn(5, 2), cache=tmp_path)
    with pytest.raises(TypeError, match="GenerativeModel"): cached_fit(lambda: "x", torch.randn(5, 2), cache=tmp_path)
    with pytest.raises(TypeError, match="cannot key"): cached_fit(lambda: DiagonalGaussian(2), object(), cache=tmp_path)
    with pytest.raises(TypeError, match="callbacks"): cached_fit(lambda: DiagonalGaussian(2), torch.randn(5, 2), callbacks=[], cache=tmp_path)


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    from invgen_lit.core import cache_dir
    monkeypatch.setenv("INVGEN_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("INVGEN_CACHE")
    monkeypatch.chdir(Path(__file__).parents[1] / "nbs")
    assert cache_dir() == Path(__file__).parents[1] / ".invgen_cache"
