"""The `invgen` command driven as a user drives it: the installed console script, in a subprocess, smoke profile.

Covered: the console script and `--version`; `--help` of every subcommand; `list`; `train` on 2-D points and on digit
images (the files it writes, `model.pt` loading with `DLSGAN.load`); `sample`, `encode`, `score`, `eval`; bad input
(status 2, one line naming the argument, no traceback); a run killed with SIGTERM keeps its last step and the same
command resumes it with nothing lost or counted twice; a run of another method or data set on the same DIR is refused.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from invgen_lit import __version__
from invgen_lit.core import load_checkpoint
from invgen_lit.dlsgan import DLSGAN

INVGEN = Path(sys.executable).parent / "invgen"
ENV = {**os.environ, "INVGEN_PROFILE": "smoke", "OMP_NUM_THREADS": "1"}
SUBCOMMANDS = ("list", "train", "sample", "encode", "score", "eval")
# the methods the command must offer (JKO-iFlow trains block by block and cannot resume from a Checkpoint: left out)
EXPECTED_METHODS = {"gaussian", "gan", "kdegan", "invgan", "realnvp", "autoencoder", "cnf", "itgan", "iresnet", "ignn",
                    "conditional-gan", "conditional-flow", "jko", "cagan", "acgan", "dlsgan", "msegan", "infogan", "posthoc-gan",
                    "aedlsgan", "pvdgan", "vaegan", "cgpgan", "categorical-infogan", "elastic-infogan", "ood-autoencoder",
                    "classifier"}
EXPECTED_DATA = {"gaussian-clusters", "8gaussians", "two-moons", "three-moons", "rings", "checkerboard", "pinwheel",
                 "two-spirals", "swiss-roll", "manifold6d", "labelled-clusters", "labelled-moons", "digits", "digits-labelled",
                 "adult-like", "breast-cancer", "wine", "mnist", "folder", "ffhq", "afhq", "celeba"}
RUN_FILES = ("checkpoint.pt", "model.pt", "history.csv", "config.json", "samples.png")
PNG = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.usefixtures("one_thread")


def invgen(*args, timeout: float = 180) -> subprocess.CompletedProcess:
    "Run the installed `invgen` script with `args` in the smoke profile; capture its output."
    return subprocess.run([str(INVGEN), *map(str, args)], env=ENV, capture_output=True, text=True, timeout=timeout)


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0, f"status {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r


def assert_usage_error(r: subprocess.CompletedProcess, *fragments: str):
    "Status 2, exactly one line on stderr containing every fragment, no traceback anywhere."
    assert r.returncode == 2, f"status {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for f in fragments: assert f in lines[0], f"{f!r} not in {lines[0]!r}"


# --- the script itself -------------------------------------------------------------------------------------------------
def test_console_script_is_installed_and_registered():
    from importlib.metadata import entry_points
    assert INVGEN.is_file() and os.access(INVGEN, os.X_OK), f"{INVGEN} missing: pip install -e . after setting console_scripts"
    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "invgen"]
    assert ep.value == "invgen_lit.cli:main"
    r = ok(invgen("--version"))
    assert r.stdout.strip() == f"invgen {__version__} (invgen_lit)"


def test_top_level_help_names_every_subcommand():
    r = ok(invgen("--help"))
    for cmd in SUBCOMMANDS: assert cmd in r.stdout, cmd


@pytest.mark.parametrize("cmd", SUBCOMMANDS)
def test_help_of_every_subcommand(cmd):
    r = ok(invgen(cmd, "--help"))
    assert r.stdout.startswith(f"usage: invgen {cmd}") and r.stderr == ""
    assert len(r.stdout.splitlines()) > 5  # a description and the options, not just a usage line


def test_train_help_documents_every_option():
    out = ok(invgen("train", "--help")).stdout
    for opt in ("METHOD", "--data", "--out", "--steps", "--profile", "--batch-size", "--seed", "--checkpoint-every",
                "--data-root", "--latent-dim", "--no-progress", "checkpoint.pt", "model.pt", "history.csv", "config.json",
                "samples.png", "resum", "SIGTERM", "130"):
        assert opt in out, opt


def test_list_names_every_method_and_data_set():
    lines = ok(invgen("list")).stdout.splitlines()
    methods = {l.split()[1]: l for l in lines if l.startswith("method ")}
    data = {l.split()[1]: l for l in lines if l.startswith("data ")}
    assert set(methods) == EXPECTED_METHODS
    assert set(data) == EXPECTED_DATA
    for line in [*methods.values(), *data.values()]: assert len(line.split()) >= 5, line  # a description on every line
    assert "images" in methods["dlsgan"] and "images" not in methods["cnf"]
    assert "encode" in methods["dlsgan"] and "encode" not in methods["gan"]
    js = json.loads(ok(invgen("list", "--json")).stdout)
    assert set(js["methods"]) == EXPECTED_METHODS and set(js["data"]) == EXPECTED_DATA
    assert js["methods"]["dlsgan"]["class"] == "invgen_lit.dlsgan.DLSGAN"


# --- training ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "dls_toy"
    r = ok(invgen("train", "dlsgan", "--data", "gaussian-clusters", "--out", out, "--steps", 12, "--checkpoint-every", 4, "--no-progress"))
    return out, r


def test_train_points_writes_the_run(toy_run):
    out, r = toy_run
    assert r.stdout.startswith("training dlsgan on gaussian-clusters (2,) for 12 steps"), r.stdout
    assert "Traceback" not in r.stderr
    for f in RUN_FILES: assert (out / f).is_file(), f
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["method"], cfg["data"], cfg["steps"], cfg["checkpoint_every"], cfg["profile"]) == ("dlsgan", "gaussian-clusters", 12, 4, "smoke")
    assert cfg["data_shape"] == [2]
    m = DLSGAN.load(out / "model.pt")
    assert isinstance(m, DLSGAN) and m.data_shape == (2,) and m.global_step == 12
    assert load_checkpoint(out / "checkpoint.pt")["loop_step"] == 12
    h = pd.read_csv(out / "history.csv")
    assert h["step"].tolist() == list(range(1, 13)) and {"d_adv", "g_adv", "enc_g"} <= set(h.columns)
    assert (out / "samples.png").read_bytes()[:8] == PNG
    assert not list(out.glob(".*.tmp"))


def test_train_digits_writes_the_run(tmp_path):
    out = tmp_path / "dls_digits"
    ok(invgen("train", "dlsgan", "--data", "digits", "--out", out, "--steps", 4, "--no-progress"))
    for f in RUN_FILES: assert (out / f).is_file(), f
    m = DLSGAN.load(out / "model.pt")
    assert m.data_shape == (1, 16, 16) and m.global_step == 4
    assert m.sample(3).shape == (3, 1, 16, 16)
    assert json.loads((out / "config.json").read_text())["data_shape"] == [1, 16, 16]
    assert (out / "samples.png").read_bytes()[:8] == PNG


def test_sample_encode_score_eval(toy_run, tmp_path):
    out, _ = toy_run
    model = DLSGAN.load(out / "model.pt")
    ok(invgen("sample", out, "-n", 40, "--out", tmp_path / "x.csv", "--seed", 3))
    x = torch.tensor(pd.read_csv(tmp_path / "x.csv").to_numpy(), dtype=torch.float32)
    assert x.shape == (40, 2)
    torch.manual_seed(3)
    assert torch.allclose(x, model.sample(40), atol=1e-5)  # the command draws what the model draws with that seed

    ok(invgen("encode", out, "--input", tmp_path / "x.csv", "--out", tmp_path / "z.pt"))
    z = torch.load(tmp_path / "z.pt", weights_only=True)
    assert z.shape == (40, 16) and torch.allclose(z, model.encode(x), atol=1e-5)

    torch.save(x, tmp_path / "x.pt")
    ok(invgen("score", out, "--input", tmp_path / "x.pt", "--out", tmp_path / "s.csv"))
    s = pd.read_csv(tmp_path / "s.csv")
    assert list(s.columns) == ["score"] and len(s) == 40
    assert torch.allclose(torch.tensor(s["score"].to_numpy(), dtype=torch.float32), model.score(x), atol=1e-3)

    r = ok(invgen("eval", out, "-n", 200))
    ev = pd.read_csv(out / "eval.csv")
    assert ev["metric"].tolist() == ["mmd2", "log_p_samples"]
    assert ev["model"].notna().all() and ev["reference"].notna().all()
    assert abs(ev.loc[0, "reference"]) < ev.loc[0, "model"]  # 12 steps: worse than real data against real data
    assert "mmd2" in r.stdout and "log_p_samples" in r.stdout


# --- bad input --------------------------------------------------------------------------------------------------------
def test_bad_input_exits_2_naming_the_argument(toy_run, tmp_path):
    out, _ = toy_run
    a_file = tmp_path / "a_file"; a_file.write_text("x")
    cases = [
        (("train", "stylegan", "--data", "gaussian-clusters", "--out", tmp_path / "r"), ("argument METHOD", "expected one of", "'stylegan'")),
        (("train", "dlsgan", "--data", "cifar10", "--out", tmp_path / "r"), ("argument --data", "expected one of", "'cifar10'")),
        (("train", "dlsgan", "--data", "mnist", "--out", tmp_path / "r"), ("argument --data-root", "expected a directory", "received nothing")),
        (("train", "dlsgan", "--data", "mnist", "--data-root", tmp_path / "nowhere", "--out", tmp_path / "r"),
         ("argument --data-root", "expected an existing directory", "does not exist")),
        (("train", "dlsgan", "--data", "digits", "--out", a_file), ("argument --out", "expected a directory", "an existing file")),
        (("train", "dlsgan", "--data", "digits", "--out", tmp_path / "r", "--steps", 0), ("argument --steps", "expected an integer >= 1", "'0'")),
        (("sample", out, "-n", 0, "--out", tmp_path / "s.pt"), ("argument -n", "expected an integer >= 1", "'0'")),
        (("sample", out, "--out", tmp_path / "s.txt"), ("argument --out", "expected a file ending in .pt, .csv, .png", "s.txt")),
        (("eval", tmp_path / "nowhere"), ("argument DIR", "expected an existing directory", "does not exist")),
    ]
    for argv, fragments in cases:
        assert_usage_error(invgen(*argv), *fragments)
    assert not (tmp_path / "r").exists()  # nothing was started


def test_encode_on_a_model_without_encode(tmp_path, toy_run):
    from invgen_lit.gan import GAN
    (tmp_path / "gan").mkdir()
    GAN(2).save(tmp_path / "gan" / "model.pt")
    x = tmp_path / "x.pt"; torch.save(torch.randn(5, 2), x)
    assert_usage_error(invgen("encode", tmp_path / "gan", "--input", x, "--out", tmp_path / "z.pt"),
                       "argument DIR", "gan model", "has no encode", "dlsgan", "received gan")
    assert not (tmp_path / "z.pt").exists()


def test_another_method_or_data_set_on_the_same_dir_is_refused(toy_run):
    out, _ = toy_run
    before = {f: (out / f).stat().st_mtime_ns for f in RUN_FILES}
    assert_usage_error(invgen("train", "gan", "--data", "gaussian-clusters", "--out", out),
                       "argument METHOD", "holds a run of 'dlsgan'", "received 'gan'")
    assert_usage_error(invgen("train", "dlsgan", "--data", "two-moons", "--out", out),
                       "argument --data", "'gaussian-clusters'", "received 'two-moons'")
    # without config.json, core's own check refuses the checkpoint of another class
    cfg = (out / "config.json").read_text()
    (out / "config.json").unlink()
    try:
        assert_usage_error(invgen("train", "msegan", "--data", "gaussian-clusters", "--out", out),
                           "argument METHOD", "holds a DLSGAN run", "received 'msegan'")
    finally:
        (out / "config.json").write_text(cfg)
    assert {f: (out / f).stat().st_mtime_ns for f in RUN_FILES if f != "config.json"} == {f: t for f, t in before.items() if f != "config.json"}


# --- interruption and resume -----------------------------------------------------------------------------------------
def test_sigterm_keeps_the_last_step_and_the_same_command_resumes(tmp_path):
    out, steps = tmp_path / "long", 1000  # 6-10 s of training on one thread of this machine
    argv = [str(INVGEN), "train", "dlsgan", "--data", "gaussian-clusters", "--out", str(out), "--steps", str(steps),
            "--checkpoint-every", "25", "--no-progress"]
    proc = subprocess.Popen(argv, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (out / "checkpoint.pt").exists():
            assert proc.poll() is None and time.time() < deadline, "no checkpoint appeared"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None: proc.kill()
    assert proc.returncode == 130, (proc.returncode, stdout, stderr)
    assert "Traceback" not in stderr
    kept = load_checkpoint(out / "checkpoint.pt")["loop_step"]
    assert 0 < kept < steps
    assert f"interrupted: the checkpoint {out / 'checkpoint.pt'} holds step {kept}" in stderr, stderr
    assert not (out / "model.pt").exists()  # a killed run leaves its checkpoint, not a half-trained model

    r = ok(subprocess.run(argv, env=ENV, capture_output=True, text=True, timeout=180))
    assert r.stdout.startswith(f"resuming from step {kept} of {steps}"), r.stdout
    m = DLSGAN.load(out / "model.pt")
    assert m.global_step == steps
    h = pd.read_csv(out / "history.csv")
    assert h["step"].tolist() == list(range(1, steps + 1))  # every step once: none lost, none counted twice
    assert load_checkpoint(out / "checkpoint.pt")["loop_step"] == steps


# --- image folders: notebook 60's trainer behind `train` -----------------------------------------------------------------
def _folder_args(pics, out, steps, resolution=16):
    return ["train", "dlsgan", "--data", "folder", "--data-root", pics, "--resolution", resolution, "--width", 8, "--latent-dim", 8,
            "--batch-size", 8, "--no-progress", "--out", out, "--steps", steps]


@pytest.fixture(scope="module")
def pics(tmp_path_factory):
    from invgen_lit.images import make_shapes_folder
    root = make_shapes_folder(tmp_path_factory.mktemp("pics"), n=32, size=24, seed=0)   # 24 px: resized to 16
    (root / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


def test_train_on_an_image_folder_resumes_and_evaluates(pics, tmp_path):
    r = ok(invgen(*_folder_args(pics, tmp_path / "run", 3)))
    assert "skipped 1 unreadable" in r.stdout and "broken.jpg" in (tmp_path / "run" / "skipped.csv").read_text()
    for f in RUN_FILES: assert (tmp_path / "run" / f).is_file(), f
    assert json.loads((tmp_path / "run" / "config.json").read_text())["resolution"] == 16
    r = ok(invgen(*_folder_args(pics, tmp_path / "run", 5)))
    assert r.stdout.count("resuming from step 3 of 5") == 1
    assert DLSGAN.load(tmp_path / "run" / "model.pt").global_step == 5
    r = ok(invgen("eval", tmp_path / "run", "-n", 12, "--features", "random"))
    assert "fd" in r.stdout and (tmp_path / "run" / "eval.csv").is_file()


def test_image_folder_bad_input(pics, tmp_path):
    assert_usage_error(invgen(*_folder_args(pics, tmp_path / "a", 2, resolution=48)), "argument --resolution", "power of two")
    (tmp_path / "empty").mkdir()
    assert_usage_error(invgen("train", "dlsgan", "--data", "folder", "--data-root", tmp_path / "empty", "--out", tmp_path / "b"),
                       "argument --data-root")
    assert_usage_error(invgen("train", "dlsgan", "--data", "ffhq", "--out", tmp_path / "c"), "argument --data-root")
    assert_usage_error(invgen("train", "gan", "--data", "folder", "--data-root", pics, "--out", tmp_path / "d"), "argument")
    ok(invgen(*_folder_args(pics, tmp_path / "e", 2)))
    assert_usage_error(invgen(*_folder_args(pics, tmp_path / "e", 4, resolution=32)), "argument --out", "data_shape")


def test_torchrun_two_processes_through_the_command(pics, tmp_path):
    "The command as a data-parallel job: torchrun starts two CPU processes (gloo), rank 0 writes the run."
    torchrun = Path(sys.executable).parent / "torchrun"
    r = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", str(INVGEN), *map(str, _folder_args(pics, tmp_path / "ddp", 2))],
                       env=ENV, capture_output=True, text=True, timeout=300)
    ok(r)
    assert r.stdout.count("training dlsgan on folder") == 1                  # one process speaks
    assert DLSGAN.load(tmp_path / "ddp" / "model.pt").global_step == 2
