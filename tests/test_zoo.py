"""The contract every model meets (invgen_lit.zoo / invgen_lit.conformance), the command line's reach over the registry,
docstrings, file modes."""
import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import make_moons

from invgen_lit import zoo
from invgen_lit.cli import main
from invgen_lit.conformance import Probe, bad_inputs, conformance
from invgen_lit.core import DiagonalGaussian, set_seed

ROOT = Path(__file__).resolve().parents[1]
NAMES = list(zoo.CARDS)


@pytest.mark.parametrize("name", NAMES)
def test_every_registry_model_meets_the_contract(name):
    zoo.check_model(zoo.MODELS[name])


def test_the_report_names_each_check_and_measures_the_round_trip():
    r = conformance(zoo.MODELS["realnvp"])
    assert set(zoo_checks := [k for k in r if k not in ("bad_input", "round_trip")]) == set(__import__("invgen_lit.conformance").conformance.CHECKS)
    assert all(not str(r[k]).startswith("FAIL") for k in zoo_checks)
    assert float(r["round_trip"]) < 1e-4
    assert len(r["bad_input"]) >= 15 and all(v.count("\n") == 0 for v in r["bad_input"].values())


def test_a_class_that_breaks_the_contract_is_named_with_the_check():
    class FloatPredict(DiagonalGaussian):
        "predict returns floats, not class ids."
        def predict(self, x): return self.log_prob(x)
    with pytest.raises(AssertionError, match="FloatPredict fails check 'predict'"):
        zoo.check_model(FloatPredict, kind=zoo.POINTS)

    class OldName(DiagonalGaussian):
        "A constructor that still says dim."
        def __init__(self, dim=2): super().__init__(dim)
    with pytest.raises(AssertionError, match="check 'constructor'.*dim"):
        zoo.check_model(OldName, kind=zoo.POINTS)


@pytest.mark.parametrize("path", ["invgen_lit.ode.CNF", "invgen_lit.iresnet.IResNet", "invgen_lit.invgan.RealNVP",
                                  "invgen_lit.invgan.InvGAN", "invgen_lit.reversal.KDEGAN", "invgen_lit.jko.JKOFlow"])
def test_the_first_contact_classes_take_scikit_learn_float64(path):
    module, name = path.rsplit(".", 1)
    cls = getattr(__import__(module, fromlist=[name]), name)
    X = make_moons(200, noise=0.1, random_state=0)[0]
    m = cls(2).fit(X, steps=3, progress=False)
    assert m.global_step >= 3 or name == "JKOFlow"
    if hasattr(m, "encode"): assert m.encode(X[:5]).dtype == torch.float32


def _fingerprints(names) -> dict:
    "sha256 of the weights after a seeded 3-step fit, per registry name."
    out = {}
    for n in names:
        p = Probe(zoo.MODELS[n])
        set_seed(0)
        m = p.build().fit(*p.data, steps=3, progress=False)
        h = hashlib.sha256()
        for k, v in sorted(m.state_dict().items()):
            if isinstance(v, torch.Tensor): h.update(k.encode()); h.update(v.detach().cpu().contiguous().numpy().tobytes())
        out[n] = h.hexdigest()
    return out


def test_a_seed_gives_the_same_weights_in_a_fresh_process():
    names = [n for n in NAMES if n != "itgan"] + ["itgan"]
    code = ("import json, sys, torch; torch.set_num_threads(1); sys.path.insert(0, %r); from test_zoo import _fingerprints; "
            "print(json.dumps(_fingerprints(%r)))" % (str(Path(__file__).parent), names))
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "123"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    there = json.loads(r.stdout.strip().splitlines()[-1])
    threads = torch.get_num_threads(); torch.set_num_threads(1)
    try: here = _fingerprints(names)
    finally: torch.set_num_threads(threads)
    assert {n for n in names if there[n] != here[n]} == set()


def test_at_least_fifteen_kinds_of_bad_input_each_refused_in_one_line():
    kinds = set()
    for name in ("dlsgan", "cagan", "itgan"):
        p = Probe(zoo.MODELS[name])
        for case, call in bad_inputs(p).items():
            with pytest.raises((TypeError, ValueError)) as e: call()
            msg = str(e.value)
            assert "\n" not in msg and ("argument" in msg or ".fit" in msg), (name, case, msg)
            kinds.add(case.split(": ", 1)[1])
    assert len(kinds) >= 15, sorted(kinds)


# ---- the command line reaches every registry model ---------------------------------------------------------------
DATA = {zoo.POINTS: "two-moons", zoo.IMAGES: "digits", zoo.LABELLED_POINTS: "labelled-moons",
        zoo.LABELLED_IMAGES: "digits-labelled", zoo.TABLES: "adult-like"}


def test_invgen_list_names_every_registry_entry(capsys):
    assert main(["list", "--json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert list(js["methods"]) == NAMES
    for n, c in zoo.CARDS.items(): assert js["methods"][n]["verbs"] == list(c.verbs)
    shown = set(js["data"])
    for c in zoo.CARDS.values(): assert DATA[c.kinds[0]] in shown


@pytest.mark.parametrize("name", NAMES)
def test_invgen_train_every_registry_name(name, tmp_path, capsys):
    card = zoo.CARDS[name]
    out = tmp_path / name
    status = main(["train", name, "--data", DATA[card.kinds[0]], "--out", out, "--steps", 3, "--no-progress", "--profile", "smoke"])
    assert status == 0, capsys.readouterr().err
    assert (out / "model.pt").is_file() and (out / "config.json").is_file()
    capsys.readouterr()


def test_the_verbs_on_the_command_line(tmp_path, capsys):
    args = ["--steps", 3, "--no-progress", "--profile", "smoke"]
    assert main(["train", "cnf", "--data", "two-moons", "--out", tmp_path / "cnf", *args]) == 0
    assert main(["sample", tmp_path / "cnf", "-n", 7, "--out", tmp_path / "x.csv"]) == 0
    for verb, col in (("encode", 2), ("log-prob", 1), ("score", 1)):
        assert main([verb, tmp_path / "cnf", "--input", tmp_path / "x.csv", "--out", tmp_path / f"{verb}.csv"]) == 0, verb
        assert pd.read_csv(tmp_path / f"{verb}.csv").shape == (7, col)
    assert main(["decode", tmp_path / "cnf", "--input", tmp_path / "encode.csv", "--out", tmp_path / "back.csv"]) == 0
    back, x = pd.read_csv(tmp_path / "back.csv").to_numpy(), pd.read_csv(tmp_path / "x.csv").to_numpy()
    assert np.abs(back - x).max() < 1e-3                                # decode(encode(x)) through the files
    # a conditional model takes the labels of its rows
    assert main(["train", "ignn", "--data", "labelled-moons", "--out", tmp_path / "ignn", *args]) == 0
    pd.DataFrame({"y": [0, 1, 2, 0, 1, 2, 0]}).to_csv(tmp_path / "y.csv", index=False)
    assert main(["log-prob", tmp_path / "ignn", "--input", tmp_path / "x.csv", "--out", tmp_path / "lp.csv"]) == 2
    assert "argument --labels" in capsys.readouterr().err
    assert main(["log-prob", tmp_path / "ignn", "--input", tmp_path / "x.csv", "--labels", tmp_path / "y.csv",
                 "--out", tmp_path / "lp.csv"]) == 0
    # a table model reads and writes CSV tables
    assert main(["train", "itgan", "--data", "adult-like", "--out", tmp_path / "itgan", *args]) == 0
    assert main(["sample", tmp_path / "itgan", "-n", 5, "--out", tmp_path / "rows.csv"]) == 0
    assert main(["encode", tmp_path / "itgan", "--input", tmp_path / "rows.csv", "--out", tmp_path / "z.csv"]) == 0
    assert main(["decode", tmp_path / "itgan", "--input", tmp_path / "z.csv", "--out", tmp_path / "rows2.csv"]) == 0
    assert list(pd.read_csv(tmp_path / "rows2.csv").columns) == list(pd.read_csv(tmp_path / "rows.csv").columns)
    assert main(["eval", tmp_path / "itgan", "-n", 50]) == 0


def test_a_csv_file_is_a_data_set(tmp_path, capsys):
    from invgen_lit.data import adult_like
    adult_like(300, seed=2).to_csv(tmp_path / "mine.csv", index=False)
    assert main(["train", "itgan", "--data", tmp_path / "mine.csv", "--out", tmp_path / "run", "--steps", 2, "--no-progress"]) == 0
    assert main(["train", "itgan", "--data", tmp_path / "missing.csv", "--out", tmp_path / "run2"]) == 2
    assert "argument --data" in capsys.readouterr().err


def test_an_unwritable_out_gets_one_line(tmp_path, capsys):
    locked = tmp_path / "locked"; locked.mkdir(); locked.chmod(0o500)
    targets = ["/proc/forbidden"] + ([] if os.geteuid() == 0 else [locked / "run"])
    for target in targets:
        assert main(["train", "gan", "--data", "two-moons", "--out", target, "--steps", 1]) == 2
        err = capsys.readouterr().err.strip()
        assert "--out" in err and "\n" not in err and "Traceback" not in err


def test_written_files_follow_the_umask(tmp_path, capsys):
    old = os.umask(0o022)
    try:
        path = DiagonalGaussian(2).save(tmp_path / "g.pt")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        assert main(["train", "gaussian", "--data", "two-moons", "--out", tmp_path / "run", "--steps", 2, "--no-progress"]) == 0
        for f in ("model.pt", "checkpoint.pt", "history.csv", "config.json", "samples.png"):
            assert stat.S_IMODE((tmp_path / "run" / f).stat().st_mode) == 0o644, f
        os.umask(0o077)
        assert stat.S_IMODE(DiagonalGaussian(2).save(tmp_path / "private.pt").stat().st_mode) == 0o600
    finally: os.umask(old)


def test_every_public_object_has_a_docstring():
    sys.path.insert(0, str(ROOT / "tools"))
    from missing_docstrings import missing
    assert missing() == []


def test_the_readme_shows_the_registry_verbs_table():
    assert zoo.verbs_markdown() in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("cls_path, old, new", [("invgen_lit.core.DiagonalGaussian", "dim", "data_shape"),
                                                ("invgen_lit.gan.GAN", "data_dim", "data_shape"),
                                                ("invgen_lit.invgan.RealNVP", "dim", "data_shape")])
def test_files_saved_under_a_renamed_argument_still_load(tmp_path, cls_path, old, new):
    from invgen_lit.core import load_checkpoint, save_checkpoint
    module, name = cls_path.rsplit(".", 1)
    cls = getattr(__import__(module, fromlist=[name]), name)
    m = cls(2)
    path = m.save(tmp_path / "m.pt")
    s = load_checkpoint(path)
    s["config"][old] = s["config"].pop(new)                     # what the file held before the rename
    save_checkpoint(s, path)
    back = cls.load(path)
    assert back.data_shape == (2,)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), back.state_dict().values()))
