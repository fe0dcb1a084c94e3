"""Properties and faults of invgen_lit.core: profiles, seeds, checks, checkpoints, the loop."""
import os
import signal

import pytest
import torch

from invgen_lit.core import (
    Batches, Callback, Checkpoint, CheckpointError, DiagonalGaussian, EMA, EMACallback, History,
    NonFiniteLossError, by_profile, check_choice, check_float, check_int, check_path, check_tensor,
    get_device, get_profile, load_checkpoint, save_checkpoint, set_seed,
)


@pytest.fixture
def X():
    g = torch.Generator().manual_seed(0)
    return torch.randn(512, 2, generator=g) * torch.tensor([0.5, 2.0]) + torch.tensor([1.0, -3.0])


class StopAt(Callback):
    "Press Ctrl-C (send SIGINT to ourselves) during step k, before the other callbacks of that step ran."
    order = -20
    def __init__(self, k): self.k = k
    def after_step(self, loop):
        if loop.completed == self.k: os.kill(os.getpid(), signal.SIGINT)


# profiles and devices ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["smoke", "docs", "full", " Smoke "])
def test_profiles_known(monkeypatch, name):
    monkeypatch.setenv("INVGEN_PROFILE", name)
    assert get_profile() == name.strip().lower()


def test_profile_unknown_names_choices(monkeypatch):
    monkeypatch.setenv("INVGEN_PROFILE", "quick")
    with pytest.raises(ValueError, match=r"INVGEN_PROFILE.*\['smoke', 'docs', 'full'\].*'quick'"):
        get_profile()


def test_profile_default_is_docs(monkeypatch):
    monkeypatch.delenv("INVGEN_PROFILE", raising=False)
    assert get_profile() == "docs"
    assert by_profile(smoke=1, docs=2, full=3) == 2


def test_by_profile_full_defaults_to_docs(monkeypatch):
    monkeypatch.setenv("INVGEN_PROFILE", "full")
    assert by_profile(smoke=1, docs=2) == 2 and by_profile(1, 2, 3) == 3


def test_device_override(monkeypatch):
    monkeypatch.setenv("INVGEN_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")
    monkeypatch.setenv("INVGEN_DEVICE", "banana")
    with pytest.raises(ValueError, match="INVGEN_DEVICE"):
        get_device()
    if not torch.cuda.is_available():
        monkeypatch.setenv("INVGEN_DEVICE", "cuda")
        with pytest.raises(ValueError, match="CUDA"):
            get_device()


def test_set_seed_repeats_and_validates():
    set_seed(5); a = torch.randn(4)
    set_seed(5); b = torch.randn(4)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="'seed'"):
        set_seed(-1)
    with pytest.raises(TypeError, match="'seed'"):
        set_seed(1.5)


# input checks -----------------------------------------------------------------------------------

def test_check_tensor_messages():
    with pytest.raises(TypeError, match=r"argument 'x': expected a torch.Tensor, received list"):
        check_tensor([1.0], "x")
    with pytest.raises(ValueError, match=r"argument 'x': expected shape \(n, 3\), received \(4, 2\)"):
        check_tensor(torch.zeros(4, 2), "x", shape=(None, 3))
    with pytest.raises(ValueError, match=r"expected 2 dimensions"):
        check_tensor(torch.zeros(4), "x", ndim=2)
    with pytest.raises(TypeError, match="floating-point"):
        check_tensor(torch.zeros(4, dtype=torch.long), "x")
    with pytest.raises(ValueError, match="NaN/inf"):
        check_tensor(torch.tensor([1.0, float("inf")]), "x")
    with pytest.raises(ValueError, match="at least 3 rows"):
        check_tensor(torch.zeros(2, 2), "x", min_rows=3)
    import numpy as np
    assert isinstance(check_tensor(np.zeros((3, 2), dtype=np.float32), "x"), torch.Tensor)


def test_scalar_checks():
    assert check_int(3, "n", min=0) == 3
    with pytest.raises(TypeError, match="'n'"): check_int(True, "n")
    with pytest.raises(ValueError, match=r"'n'.*received -2"): check_int(-2, "n", min=0)
    with pytest.raises(ValueError, match=r"'lr'.*\(0, None\)"): check_float(0.0, "lr", min=0, strict=True)
    with pytest.raises(TypeError, match="'lr'"): check_float(float("nan"), "lr")
    with pytest.raises(ValueError, match=r"'loss'.*\['ns', 'hinge'\].*'wgan'"): check_choice("wgan", "loss", ["ns", "hinge"])


def test_check_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"argument 'root'.*does not exist"):
        check_path(tmp_path / "nope", "root", kind="dir")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="is not a directory"):
        check_path(tmp_path / "f", "root", kind="dir")
    with pytest.raises(TypeError, match="'root'"):
        check_path(3, "root")


# checkpoints ------------------------------------------------------------------------------------

def test_checkpoint_round_trip(tmp_path):
    state = {"w": torch.arange(4.0), "nested": {"k": [1, 2.5, "s"]}}
    p = save_checkpoint(state, tmp_path / "sub" / "c.pt")
    back = load_checkpoint(p)
    assert torch.equal(back["w"], state["w"]) and back["nested"] == state["nested"]
    assert not [f for f in p.parent.iterdir() if f.name.endswith(".tmp")]


@pytest.mark.parametrize("content", [b"", b"garbage bytes", b"PK\x03\x04 truncated zip"])
def test_corrupt_checkpoint_refused(tmp_path, content):
    p = tmp_path / "bad.pt"
    p.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a readable invgen_lit checkpoint"):
        load_checkpoint(p)


def test_foreign_checkpoint_refused(tmp_path):
    torch.save({"state_dict": {"w": torch.ones(1)}}, tmp_path / "f.pt")
    with pytest.raises(CheckpointError, match="not written by invgen_lit"):
        load_checkpoint(tmp_path / "f.pt")


def test_pickled_code_refused(tmp_path):
    # an arbitrary object needs unpickling code: weights_only loading must refuse it
    torch.save({"format": "invgen_lit.checkpoint/1", "state": {"obj": Callback()}}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(tmp_path / "evil.pt")


def test_interrupted_write_keeps_old_checkpoint(tmp_path, monkeypatch):
    p = save_checkpoint({"v": 1}, tmp_path / "c.pt")

    def boom(*a, **k): raise OSError("disk full")
    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"v": 2}, p)
    monkeypatch.undo()
    assert load_checkpoint(p)["v"] == 1
    assert [f.name for f in tmp_path.iterdir()] == ["c.pt"]


def test_save_checkpoint_bad_state(tmp_path):
    with pytest.raises(TypeError, match="'state'"):
        save_checkpoint([1, 2], tmp_path / "c.pt")


def test_model_save_load_and_wrong_class(tmp_path, X):
    m = DiagonalGaussian(2, lr=0.1).fit(X, steps=30, progress=False)
    m.save(tmp_path / "m.pt")
    back = DiagonalGaussian.load(tmp_path / "m.pt")
    assert back.config == {"data_shape": 2, "lr": 0.1}
    z = torch.randn(5, 2)
    assert torch.equal(back.decode(z), m.decode(z))
    assert len(back.history) == 30 and back.global_step == 30

    class Other(DiagonalGaussian):
        pass
    with pytest.raises(CheckpointError, match="holds a 'DiagonalGaussian', not a 'Other'"):
        Other.load(tmp_path / "m.pt")


# batches, history, EMA --------------------------------------------------------------------------

def test_batches_cover_each_epoch():
    b = Batches(torch.arange(12.0), batch_size=4, seed=3)
    seen = torch.cat([next(b)[0] for _ in range(3)])
    assert sorted(seen.tolist()) == list(range(12))


def test_batches_bad_input():
    with pytest.raises(ValueError, match=r"tensors\[1\].*12 rows"):
        Batches(torch.zeros(12), torch.zeros(11))
    with pytest.raises(ValueError, match="'batch_size'"):
        Batches(torch.zeros(12), batch_size=0)


def test_history_state_round_trip():
    h = History(); h.log(1, a=1.0); h.log(2, a=2.0, b=5.0)
    g = History(); g.load_state_dict(h.state_dict())
    assert g.rows == h.rows and list(g.df.columns) == ["step", "a", "b"]


def test_ema_converges_to_constant_weights():
    lin = torch.nn.Linear(3, 1); ema = EMA(lin, decay=0.9)
    with torch.no_grad(): lin.weight.fill_(2.0)
    for _ in range(200): ema.update(lin)
    assert torch.allclose(ema.module.weight, torch.full_like(lin.weight, 2.0), atol=1e-6)
    assert not any(p.requires_grad for p in ema.parameters())


# the loop -----------------------------------------------------------------------------------------

def test_fit_reaches_closed_form(X):
    set_seed(0)
    m = DiagonalGaussian(2).fit(X, steps=600, progress=False)
    assert torch.allclose(m.mu, X.mean(0), atol=0.1)
    assert torch.allclose(m.log_sigma.exp(), X.std(0), atol=0.1)


def test_fit_steps_default_from_profile(monkeypatch, X):
    monkeypatch.setenv("INVGEN_PROFILE", "smoke")
    m = DiagonalGaussian(2).fit(X, progress=False)
    assert m.global_step == DiagonalGaussian.steps_by_profile["smoke"]


def test_fit_uses_the_device_choice(monkeypatch, X):
    "fit places a CPU model on get_device(): INVGEN_DEVICE is read (and a CUDA request without CUDA is refused by name)."
    monkeypatch.setenv("INVGEN_DEVICE", "cpu")
    assert DiagonalGaussian(2).fit(X, steps=2, progress=False).device.type == "cpu"
    assert DiagonalGaussian(2).fit(X, steps=2, progress=False, device="cpu").device.type == "cpu"
    if not torch.cuda.is_available():
        monkeypatch.setenv("INVGEN_DEVICE", "cuda")
        with pytest.raises(ValueError, match="INVGEN_DEVICE"):
            DiagonalGaussian(2).fit(X, steps=2, progress=False)


def test_fit_bad_data():
    with pytest.raises(ValueError, match=r"argument 'x': expected shape \(n, 2\), received \(10, 3\)"):
        DiagonalGaussian(2).fit(torch.randn(10, 3), steps=1, progress=False)
    with pytest.raises(ValueError, match="'x'.*NaN"):
        DiagonalGaussian(2).fit(torch.full((10, 2), float("nan")), steps=1, progress=False)
    with pytest.raises(TypeError, match="expected training data"):
        DiagonalGaussian(2).fit(steps=1)


@pytest.mark.parametrize("stop_at", [7, 25, 33])
def test_resume_equals_uninterrupted(tmp_path, X, stop_at):
    ck = tmp_path / "run.pt"
    full_ema = EMACallback(decay=0.9)
    set_seed(1); full = DiagonalGaussian(2).fit(X, steps=50, callbacks=[full_ema], progress=False)
    set_seed(1); part = DiagonalGaussian(2)
    with pytest.raises(KeyboardInterrupt, match=f"after step {stop_at} of 50"):
        part.fit(X, steps=50, callbacks=[Checkpoint(ck, every=10), StopAt(stop_at), EMACallback(decay=0.9)], progress=False)
    assert load_checkpoint(ck)["loop_step"] == stop_at  # saved on interrupt, not only every 10 steps
    ema_cb = EMACallback(decay=0.9)
    set_seed(99)  # a different global RNG state must not matter: the checkpoint restores it
    resumed = DiagonalGaussian(2).fit(X, steps=50, callbacks=[Checkpoint(ck, every=10), ema_cb], progress=False)
    assert torch.equal(resumed.mu, full.mu) and torch.equal(resumed.log_sigma, full.log_sigma)
    assert resumed.history.rows == full.history.rows
    assert resumed.global_step == 50
    assert torch.equal(ema_cb.ema.module.mu, full_ema.ema.module.mu)  # the EMA resumed too


def test_resume_refuses_other_model(tmp_path, X):
    ck = tmp_path / "run.pt"
    DiagonalGaussian(2).fit(X, steps=5, callbacks=[Checkpoint(ck)], progress=False)

    class Other(DiagonalGaussian):
        pass
    with pytest.raises(CheckpointError, match="holds a DiagonalGaussian run"):
        Other(2).fit(X, steps=5, callbacks=[Checkpoint(ck)], progress=False)


class Exploding(DiagonalGaussian):
    def train_step(self, x):
        out = super().train_step(x)
        if self.global_step >= 23: out["nll"] = torch.tensor(float("inf"))
        return out


def test_nan_guard_names_loss_and_keeps_checkpoint(tmp_path, X):
    ck = tmp_path / "run.pt"
    with pytest.raises(NonFiniteLossError, match=r"loss 'nll' became inf at step 23; the last good checkpoint is kept at"):
        Exploding(2).fit(X, steps=100, callbacks=[Checkpoint(ck, every=10)], progress=False)
    s = load_checkpoint(ck)
    assert s["loop_step"] == 20 and all(torch.isfinite(v).all() for v in s["model"].values())


def test_progress_bar_runs(X, capsys):
    DiagonalGaussian(2).fit(X, steps=5, progress=True)
    assert "DiagonalGaussian" in capsys.readouterr().err


def test_check_data_shape():
    from invgen_lit.core import check_data_shape
    assert check_data_shape(6) == (6,) and check_data_shape([1, 16, 16]) == (1, 16, 16)
    for bad in (0, "6", (1, 0), (), True, 2.5):
        with pytest.raises(TypeError, match="argument 'data_shape'"):
            check_data_shape(bad)


def test_check_tensor_runs_under_torch_func_transforms():
    "Values inside vmap/jacrev/jacfwd are not concrete: the finiteness check must step aside there, and only there."
    from torch.func import jacfwd, jacrev, vmap
    f = lambda x: check_tensor(x, "x") * 2
    x = torch.ones(3, 2)
    assert vmap(f)(x).shape == (3, 2)
    assert jacrev(f)(x[0]).shape == (2, 2) and jacfwd(f)(x[0]).shape == (2, 2)
    with pytest.raises(ValueError, match="finite"):
        f(torch.tensor([1.0, float("nan")]))


def test_check_vector_shape_names_the_model():
    from invgen_lit.core import check_vector_shape
    assert check_vector_shape(3, "M") == (3,) and check_vector_shape((8,), "M") == (8,)
    with pytest.raises(ValueError, match=r"argument 'data_shape': M works on vectors.*\(1, 4, 4\)"):
        check_vector_shape((1, 4, 4), "M")
    with pytest.raises(TypeError, match="data_shape"):
        check_vector_shape(0, "M")


def test_check_labels_accepts_ints_and_names_the_argument_when_it_refuses():
    from invgen_lit.core import check_labels
    assert check_labels(2, "y", 3, (4,)).tolist() == [2, 2, 2, 2]
    assert check_labels([0, 1, 2], "y", 3, (3,)).dtype == torch.long
    with pytest.raises(ValueError, match=r"argument 'Y': expected labels in 0\.\.2, received values in 0\.\.3"):
        check_labels(torch.tensor([0, 3]), "Y", 3, (2,))
    with pytest.raises(ValueError, match=r"argument 'y': expected shape \(3,\)"):
        check_labels(torch.tensor([0, 1]), "y", 3, (3,))
    with pytest.raises(TypeError, match="integer class ids"):
        check_labels(torch.tensor([True, False]), "y", 3, (2,))
