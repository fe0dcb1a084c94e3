"Tests for invgen_lit.images: networks by resolution, the image stream and its bad input, train_images (files, resume, refusals), features, data parallel."
import os
import signal

import pytest
import torch
from PIL import Image

from invgen_lit.core import Callback, CheckpointError, load_checkpoint, set_seed
from invgen_lit.data import ImageFolder
from invgen_lit.dlsgan import DLSGAN
from invgen_lit.images import (ImageBatches, RandomConvFeatures, THESIS_SETTINGS, channel_schedule, ddp_equivalence, features_of,
                               image_features, image_metrics, image_model, make_shapes_folder, save_image_grid, train_images)

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = dict(channels=[8, 8, 8, 8], latent_dim=4, batch_size=4)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_shapes_folder(tmp_path_factory.mktemp("shapes"), n=24, size=32, seed=0)


def tiny(method="dlsgan", **kw):
    set_seed(0)
    return image_model(method, 32, **(TINY | kw))


def test_channel_schedule_and_resolutions():
    assert channel_schedule(256) == [512, 512, 512, 512, 256, 128, 64]
    assert channel_schedule(64, base=32, max_channels=128) == [128, 128, 128, 64, 32]
    for bad in (48, 100, 4, 2048, 32.0):
        with pytest.raises((ValueError, TypeError), match="argument 'resolution'"): channel_schedule(bad)
    with pytest.raises(ValueError, match="argument 'resolution'"): image_model("dlsgan", 96)
    with pytest.raises(ValueError, match="argument 'method'"): image_model("stylegan2", 32)


@pytest.mark.parametrize("method", sorted(THESIS_SETTINGS))
def test_every_method_builds_at_image_scale_and_takes_a_step(method):
    m = tiny(method)
    assert m.data_shape == (3, 32, 32)
    out = m.train_step(torch.rand(4, 3, 32, 32) * 2 - 1)
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in out.values())
    assert m.sample(2).shape == (2, 3, 32, 32)


def test_stream_resumes_exactly_and_covers_an_epoch(folder):
    ds = ImageFolder(folder, 32)
    a = ImageBatches(ds, 5, seed=3)
    first_epoch = torch.cat([next(a)[0] for _ in range(5)])[:24]     # 24 images: 4.8 batches
    assert len({tuple(x.flatten().tolist()) for x in first_epoch}) == 24   # every image once in the epoch
    b = ImageBatches(ds, 5, seed=3)
    b.load_state_dict(a.state_dict())
    assert torch.equal(next(a)[0], next(b)[0])


def test_unreadable_files_and_mixed_sizes_are_handled_not_fatal(tmp_path):
    root = make_shapes_folder(tmp_path / "mixed", n=10, size=32, seed=1)
    Image.new("RGB", (50, 40), (200, 10, 10)).save(root / "wide.png")          # another size: cropped and resized
    (root / "broken.png").write_bytes(b"not an image")
    (root / "empty.jpg").write_bytes(b"")
    s = ImageBatches(ImageFolder(root, 32), 4, seed=0)
    xs = [next(s)[0] for _ in range(9)]                                          # three epochs
    assert all(x.shape == (4, 3, 32, 32) for x in xs)
    bad = {os.path.basename(p) for p, _ in s.skipped}
    assert bad == {"broken.png", "empty.jpg"} and all("could not be read" in why for _, why in s.skipped)


def test_misshapen_items_are_skipped_and_an_all_bad_set_is_refused():
    class Mixed(torch.utils.data.Dataset):
        def __len__(self): return 8
        def __getitem__(self, i): return torch.zeros(3, 16, 16) if i % 4 == 0 else torch.zeros(3, 32, 32)
    s = ImageBatches(Mixed(), 4, shape=(3, 32, 32))
    for _ in range(3): assert next(s)[0].shape == (4, 3, 32, 32)
    assert any("shape (3, 16, 16)" in why for _, why in s.skipped)
    class AllBad(Mixed):
        def __getitem__(self, i): raise OSError("disk gone")
    with pytest.raises(ValueError, match="argument 'data'"): next(ImageBatches(AllBad(), 4, shape=(3, 32, 32)))
    with pytest.raises(ValueError, match="argument 'data'"): ImageBatches(torch.zeros(0, 3, 32, 32), 4)
    with pytest.raises(TypeError, match="argument 'data'"): ImageBatches(42, 4)


def test_empty_folder_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(FileNotFoundError, match="argument 'root'"): ImageFolder(tmp_path / "empty", 32)


class KillAt(Callback):
    order = -20
    def __init__(self, step): self.at = step
    def after_step(self, loop):
        if loop.completed == self.at: os.kill(os.getpid(), signal.SIGTERM)


def test_train_writes_its_files_and_a_killed_run_resumes_exactly(folder, tmp_path, capsys):
    ds = ImageFolder(folder, 32)
    straight = train_images(tiny(), ds, tmp_path / "a", steps=6, checkpoint_every=2, sample_every=3, metrics_every=3, metrics_rows=8,
                            features="random", progress=False)
    names = {p.name for p in (tmp_path / "a").iterdir()}
    assert {"checkpoint.pt", "model.pt", "history.csv", "metrics.csv", "samples"} <= names
    assert sorted(p.name for p in (tmp_path / "a" / "samples").iterdir()) == ["step_0000003.png", "step_0000006.png"]
    metrics = (tmp_path / "a" / "metrics.csv").read_text().splitlines()
    assert metrics[0].startswith("step,features,fd,precision,recall,fake_psnr") and len(metrics) == 3 and "random-conv" in metrics[1]
    assert DLSGAN.load(tmp_path / "a" / "model.pt").global_step == 6
    with pytest.raises(KeyboardInterrupt):
        train_images(tiny(), ds, tmp_path / "b", steps=6, checkpoint_every=100, sample_every=100, progress=False, callbacks=[KillAt(4)])
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["loop_step"] == 4
    capsys.readouterr()
    resumed = train_images(tiny(), ds, tmp_path / "b", steps=6, checkpoint_every=100, sample_every=100, progress=False)
    assert "resuming from step 4 of 6" in capsys.readouterr().out
    assert resumed.global_step == 6 and list(resumed.history.df.step) == [1, 2, 3, 4, 5, 6]
    for (k, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), k


def test_checkpoints_of_another_method_or_resolution_are_refused(folder, tmp_path):
    ds = ImageFolder(folder, 32)
    train_images(tiny(), ds, tmp_path / "run", steps=2, progress=False)
    with pytest.raises(CheckpointError, match="holds a DLSGAN run, not a PVDGAN"):
        train_images(tiny("pvdgan"), ds, tmp_path / "run", steps=3, progress=False)
    set_seed(0)
    other = image_model("dlsgan", 16, channels=[8, 8, 8], latent_dim=4, batch_size=4)
    with pytest.raises(CheckpointError, match=r"data_shape \[3, 32, 32\] \(this run: \[3, 16, 16\]\)"):
        train_images(other, ImageFolder(folder, 16), tmp_path / "run", steps=3, progress=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="argument 'out'"): train_images(tiny(), ds, tmp_path / "file", steps=1, progress=False)


def test_features_random_is_fixed_and_torchscript_files_load(tmp_path, monkeypatch):
    x = torch.rand(6, 3, 32, 32) * 2 - 1
    assert torch.equal(features_of(RandomConvFeatures(), x), features_of(image_features("random"), x))
    assert features_of(RandomConvFeatures(1), x[:, :1]).shape == (6, 512)

    class Net(torch.nn.Module):
        def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
            return x.float().flatten(1)[:, :5] if return_features else x.float().sum((1, 2, 3))
    torch.jit.script(Net()).save(str(tmp_path / "inception-2015-12-05.pt"))
    monkeypatch.setenv("INVGEN_INCEPTION", str(tmp_path / "inception-2015-12-05.pt"))
    net = image_features("auto")
    assert net.name.startswith("inception") and features_of(net, x).shape == (6, 5)
    assert float(features_of(net, x).max()) > 1                                  # fed uint8 in [0, 255]
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="argument 'features'"): image_features(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError, match="argument 'features'"): image_features(tmp_path / "missing.pt")
    with pytest.raises(TypeError, match="argument 'features'"): image_features(3)


def test_image_metrics_for_models_with_and_without_encode(folder):
    real = ImageFolder(folder, 32).tensors()[:12]
    m = image_metrics(tiny(), real, RandomConvFeatures(), n=12)
    assert set(m) == {"fd", "precision", "recall", "fake_psnr", "fake_ssim", "real_psnr", "real_ssim"}
    assert set(image_metrics(tiny("cgpgan", n_categories=3), real, RandomConvFeatures(), n=12)) == {"fd", "precision", "recall"}


def test_save_image_grid(tmp_path):
    p = save_image_grid(torch.zeros(10, 3, 8, 8), tmp_path / "g" / "grid.png", nrow=4)
    assert Image.open(p).size == (32, 24)
    assert Image.open(save_image_grid(torch.zeros(3, 1, 8, 8), tmp_path / "one.png")).mode == "L"


def test_two_processes_take_the_step_of_one(tmp_path):
    "torchrun, gloo, 2 CPU processes of batch 4 against 1 process of batch 8: the same weights after a step."
    folder = make_shapes_folder(tmp_path / "ddp", n=32, size=16, seed=3)
    gap = ddp_equivalence(folder, tmp_path / "work", steps=1)
    control = ddp_equivalence(folder, tmp_path / "control", steps=1, average=False)   # without the gradient average
    assert gap < 1e-4 and control > 100 * gap, (gap, control)
