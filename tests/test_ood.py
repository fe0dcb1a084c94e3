"Tests for invgen_lit.ood: the OOD scores (Eq. 37, reconstruction, energy with ReAct), the two baselines, the OOD sets, the AUROC table, bad input."
import math

import pytest
import torch

from invgen_lit.data import CORRUPTIONS, digits, letters
from invgen_lit.dlsgan import DLSGAN, InfoGAN, MSEGAN
from invgen_lit.ood import (OOD_METHODS, THESIS_TABLE5, Autoencoder, Classifier, LRDecay, auroc_table, check_images, energy,
                            gaussian_nll, ood_sets, reconstruction_score, table_means)

pytestmark = pytest.mark.usefixtures("one_thread")
SHAPE = (1, 8, 8)
SMALL = dict(hidden=(32, 32), batch_size=32)


@pytest.fixture(scope="module")
def digits8():
    return digits(8)


@pytest.fixture(scope="module")
def autoencoder(digits8):
    torch.manual_seed(0)
    return Autoencoder(SHAPE, latent_dim=8, **SMALL).fit(digits8[0], steps=300, progress=False)


@pytest.fixture(scope="module")
def classifier(digits8):
    torch.manual_seed(0)
    return Classifier(SHAPE, **SMALL).fit(*digits8, steps=800, progress=False)


# --- Eq. 37 and the energy ---

def test_gaussian_nll_is_the_negative_log_density_and_orders_the_thesis_example():
    v = torch.tensor([1.0, 0.5, 0.1])
    z = torch.tensor([[0.1, -0.2, 0.3], [-0.3, 0.2, -0.1]])      # Sec. 3.3: x_a scores higher than x_b
    s = gaussian_nll(z, v)
    assert s[0] > s[1]
    torch.testing.assert_close(s, -torch.distributions.Normal(0.0, v.sqrt()).log_prob(z).sum(1))
    with pytest.raises(ValueError, match="argument 'v'.*positive"): gaussian_nll(z, torch.tensor([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="argument 'v'"): gaussian_nll(z, torch.ones(4))


def test_energy_formula_limits_and_bad_temperature():
    lg = torch.tensor([[4.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    torch.testing.assert_close(energy(lg, 2.0), -2.0 * torch.logsumexp(lg / 2.0, 1))
    assert energy(lg)[0] < energy(lg)[1]                              # confident = lower energy
    torch.testing.assert_close(energy(lg, 1e-4), -lg.max(1).values, atol=2e-4, rtol=0)
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="argument 'temperature'"): energy(lg, bad)


# --- the reconstruction score ---

class _Identity:
    "A stand-in model: encode/decode the identity (or zeros), trained."
    data_shape, device, global_step = SHAPE, torch.device("cpu"), 1
    def __init__(self, zero=False): self.zero = zero
    def encode(self, x): return x.flatten(1)
    def decode(self, z): return torch.zeros(len(z), *SHAPE) if self.zero else z.view(-1, *SHAPE)


def test_reconstruction_score_is_the_per_row_pixel_mse(digits8):
    x = digits8[0][:20]
    assert torch.equal(reconstruction_score(_Identity(), x), torch.zeros(20))
    torch.testing.assert_close(reconstruction_score(_Identity(zero=True), x), x.pow(2).flatten(1).mean(1))


def test_reconstruction_score_refuses_untrained_models_and_bad_images(digits8):
    m = _Identity(); m.global_step = 0
    with pytest.raises(RuntimeError, match="untrained"): reconstruction_score(m, digits8[0][:4])
    with pytest.raises(ValueError, match="argument 'x'.*shape"): reconstruction_score(_Identity(), torch.zeros(4, 1, 16, 16))
    with pytest.raises(ValueError, match=r"argument 'x'.*\[-1, 1\]"): reconstruction_score(_Identity(), digits8[0][:4] * 200)
    with pytest.raises(ValueError, match="argument 'x'"): check_images(torch.zeros(0, *SHAPE), "x", SHAPE)


# --- the autoencoder ---

def test_autoencoder_learns_and_scores_by_reconstruction(autoencoder, digits8):
    X = digits8[0]
    h = autoencoder.history.df["mse"]
    assert h.iloc[-20:].mean() < 0.5 * h.iloc[:20].mean()
    assert float(autoencoder.score(X).mean()) < float((X - X.mean(0)).pow(2).mean())   # beats the mean image
    z = autoencoder.encode(X[:5])
    assert z.shape == (5, 8) and autoencoder.decode(z).shape == (5, *SHAPE)
    torch.testing.assert_close(autoencoder.score(X[:5]), reconstruction_score(autoencoder, X[:5]))


def test_autoencoder_save_load_and_bad_input(autoencoder, digits8, tmp_path):
    X = digits8[0]
    back = Autoencoder.load(autoencoder.save(tmp_path / "ae.pt"))
    torch.testing.assert_close(back.score(X[:10]), autoencoder.score(X[:10]))
    with pytest.raises(ValueError, match=r"argument 'X'.*\[-1, 1\]"): Autoencoder(SHAPE).fit((X + 1) * 8, steps=1, progress=False)
    with pytest.raises(ValueError, match="argument 'X'"): Autoencoder(SHAPE).fit(X.flatten(1), steps=1, progress=False)
    with pytest.raises(ValueError, match="argument 'latent_dim'"): Autoencoder(SHAPE, latent_dim=0)
    with pytest.raises(RuntimeError, match="untrained"): Autoencoder(SHAPE).score(X[:3])
    with pytest.raises(TypeError, match="argument 'betas'"): Autoencoder(SHAPE, betas=0.9)


def test_lr_decay_reaches_its_total_factor(digits8):
    m = Autoencoder(SHAPE, latent_dim=4, lr=1e-3, **SMALL).fit(digits8[0], steps=50, callbacks=[LRDecay(0.25)], progress=False)
    assert m.optimizers["ae"].param_groups[0]["lr"] == pytest.approx(0.25e-3, rel=1e-6)
    with pytest.raises(ValueError, match="argument 'total'"): LRDecay(0.0)
    with pytest.raises(ValueError, match="argument 'total'"): LRDecay(1.5)


# --- the classifier, energy and ReAct ---

def test_classifier_learns_the_digits(classifier, digits8):
    X, y = digits8
    assert classifier.accuracy(X, y) > 0.8
    assert classifier.predict(X[:7]).shape == (7,)


def test_react_thresholds_are_the_training_activation_quantiles(classifier, digits8):
    X = digits8[0]
    h = torch.cat([classifier._forward(c)[1] for c in X.split(512)]).flatten().detach()
    for p in (0.5, 0.85, 0.95):
        assert classifier.react_threshold(p) == pytest.approx(float(torch.quantile(h, p)), abs=0.02 * float(h.std()))
    assert classifier.react_threshold(1.0) == pytest.approx(float(h.max()), rel=1e-5)
    ts = [classifier.react_threshold(p) for p in (0.2, 0.5, 0.9, 1.0)]
    assert ts == sorted(ts)


def test_react_clips_only_below_one(classifier, digits8):
    x = digits8[0][:64]
    assert torch.equal(classifier.logits(x, 1.0), classifier.logits(x))
    with torch.no_grad(): _, h = classifier._forward(x, clip=classifier.react_threshold(0.5))
    assert float(h.max()) <= classifier.react_threshold(0.5) + 1e-6
    assert not torch.allclose(classifier.logits(x, 0.5), classifier.logits(x))
    torch.testing.assert_close(classifier.energy_score(x, 10.0, 0.9), energy(classifier.logits(x, 0.9), 10.0))
    torch.testing.assert_close(classifier.score(x), classifier.energy_score(x))


def test_classifier_save_load_keeps_the_react_quantiles(classifier, digits8, tmp_path):
    back = Classifier.load(classifier.save(tmp_path / "clf.pt"))
    assert back.react_threshold(0.9) == pytest.approx(classifier.react_threshold(0.9))
    torch.testing.assert_close(back.energy_score(digits8[0][:9], 1.0, 0.85), classifier.energy_score(digits8[0][:9], 1.0, 0.85))


def test_classifier_bad_input(classifier, digits8):
    X, y = digits8
    for p in (0.0, 1.2, -0.1):
        with pytest.raises(ValueError, match="argument 'percentile'"): classifier.energy_score(X[:3], 1.0, p)
    with pytest.raises(RuntimeError, match="untrained"): Classifier(SHAPE).energy_score(X[:3])
    with pytest.raises(RuntimeError, match="untrained"): Classifier(SHAPE).react_threshold(0.9)
    with pytest.raises(ValueError, match="one label per row"): Classifier(SHAPE).fit(X, y[:-1], steps=1, progress=False)
    with pytest.raises(ValueError, match="argument 'y'"): Classifier(SHAPE, n_classes=3).fit(X, y, steps=1, progress=False)
    with pytest.raises(ValueError, match=r"argument 'x'.*\[-1, 1\]"): classifier.energy_score(X[:3] + 5)
    with pytest.raises(ValueError, match="argument 'n_classes'"): Classifier(SHAPE, n_classes=1)


# --- Eq. 37 on the GANs (bad input the issue names) ---

@pytest.mark.parametrize("cls", [DLSGAN, InfoGAN, MSEGAN])
def test_gan_scores_refuse_bad_images_and_untrained_models(cls, digits8):
    X = digits8[0]
    with pytest.raises(RuntimeError, match="untrained"): cls(SHAPE, latent_dim=4, **SMALL).score(X[:3])
    with pytest.raises(ValueError, match="argument 'latent_dim'"): cls(SHAPE, latent_dim=0)
    m = cls(SHAPE, latent_dim=4, **SMALL).fit(X, steps=3, progress=False)
    assert m.score(X[:5]).shape == (5,) and torch.isfinite(m.score(X[:5])).all()
    torch.testing.assert_close(m.score(X[:5]), gaussian_nll(m.encode(X[:5]), m.latent_variance))
    with pytest.raises(ValueError, match=r"argument 'x'.*\[-1, 1\]"): m.score((X[:5] + 1) * 127.5)
    with pytest.raises(ValueError, match="argument 'x'.*shape"): m.score(torch.zeros(5, 1, 16, 16))
    assert reconstruction_score(m, X[:5]).shape == (5,)


# --- OOD sets and the AUROC table ---

def test_ood_sets_follow_sec_4_3_1(digits8):
    x = digits8[0][:20]
    fam = {"letters": letters(30, 8, seed=0)}
    sets = ood_sets(x, fam, intensity=0.1, seed=3)
    assert list(sets)[:len(CORRUPTIONS) + 1] == [("near", k) for k in (*CORRUPTIONS, "letters")]
    assert len(sets) == 2 * (len(CORRUPTIONS) + 1)
    for kind in CORRUPTIONS:                                          # a corrupted image is mixed into its own original
        torch.testing.assert_close(sets[("near", kind)], 0.9 * x + 0.1 * sets[("far", kind)])
    assert torch.equal(sets[("far", "letters")], fam["letters"][:20])
    mixed = (sets[("near", "letters")] - 0.1 * fam["letters"][:20]) / 0.9   # a family image is mixed into some ID image
    assert all(any(torch.allclose(m, xi, atol=1e-5) for xi in x) for m in mixed)
    again = ood_sets(x, fam, intensity=0.1, seed=3)
    assert all(torch.equal(again[k], sets[k]) for k in sets)


def test_ood_sets_bad_input(digits8):
    x = digits8[0][:10]
    with pytest.raises(ValueError, match="expected at least 10 images"): ood_sets(x, {"letters": letters(4, 8)})
    with pytest.raises(ValueError, match="argument 'families\\['letters'\\]'"): ood_sets(x, {"letters": letters(10, 16)})
    with pytest.raises(ValueError, match="argument 'x_id'"): ood_sets(x * 4)
    with pytest.raises(ValueError, match="argument 'x_id'"): ood_sets(x[:, 0])
    with pytest.raises(ValueError, match="argument 'intensity'"): ood_sets(x, intensity=0.0)


def test_auroc_table_values_layout_and_missing_scores():
    s_in = torch.arange(100.0)
    tab = auroc_table({"good": s_in, "bad": s_in},
                      {("near", "a"): {"good": s_in + 1000, "bad": s_in - 1000}, ("far", "b"): {"good": s_in + 1000, "bad": s_in.clone()}})
    assert tab.loc[("near", "a"), "good"] == 100 and tab.loc[("near", "a"), "bad"] == 0
    assert tab.loc[("far", "b"), "bad"] == pytest.approx(50)
    assert list(table_means(tab).index) == ["near", "far"] and tab.index.names == ["OOD", "set"]
    coarse = auroc_table({"good": s_in}, {("far", "b"): {"good": s_in + 1000}}, every=10)
    assert coarse.iloc[0, 0] == pytest.approx(100 * (1 - 9 / 200))          # the thesis's threshold set caps the area
    with pytest.raises(KeyError, match="missing \\['bad'\\]"): auroc_table({"good": s_in, "bad": s_in}, {("far", "b"): {"good": s_in}})


def test_thesis_table5_transcription():
    assert THESIS_TABLE5.shape == (24, 15) and list(THESIS_TABLE5.columns) == OOD_METHODS
    assert THESIS_TABLE5.loc[("near", "shot_noise"), "DLSGAN NLL"] == 50.68
    assert THESIS_TABLE5.loc[("far", "KMNIST"), "Energy t=10.0 p=1.0"] == 92.01
    m = table_means(THESIS_TABLE5)
    assert m.loc["near"].idxmax() == "DLSGAN NLL" and m.loc["far"].idxmax() == "AE Rec"   # as the thesis's text reads it
    assert THESIS_TABLE5.min().min() >= 47 and THESIS_TABLE5.max().max() <= 100
