"Tests of invgen_lit.gan: adversarial losses and penalties against closed forms, the GAN's training, save/load and bad input."
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from invgen_lit.core import CheckpointError, set_seed
from invgen_lit.data import GaussianClusters
from invgen_lit.metrics import energy_distance
from invgen_lit.gan import (ADVERSARIAL_LOSSES, GAN, gradient_penalty, grad_norm_sq, hinge_d_loss, hinge_g_loss, log_prob_threshold,
                            low_density_fraction, ns_d_loss, ns_g_loss, r1_penalty, r2_penalty, wgan_d_loss, wgan_g_loss)


pytestmark = pytest.mark.usefixtures("one_thread")


def _linear(w, b=0.0):
    lin = nn.Linear(len(w), 1)
    with torch.no_grad(): lin.weight.copy_(torch.tensor([w])); lin.bias.fill_(b)
    return lin


# --- losses --------------------------------------------------------------------------------------------------------

def test_ns_losses_closed_form():
    z = torch.zeros(10, 1)
    assert ns_d_loss(z, z).item() == pytest.approx(2 * math.log(2))
    assert ns_g_loss(z).item() == pytest.approx(math.log(2))
    a, b = torch.tensor([1.5, -0.5]), torch.tensor([0.3, 2.0])
    want = -(torch.sigmoid(a).log().mean() + (1 - torch.sigmoid(b)).log().mean())
    assert ns_d_loss(a, b).item() == pytest.approx(want.item(), rel=1e-6)
    assert ns_g_loss(b).item() == pytest.approx(-torch.sigmoid(b).log().mean().item(), rel=1e-6)
    # stable at extreme logits, where log(sigmoid) computed naively underflows to -inf
    assert torch.isfinite(ns_d_loss(torch.tensor([-200.]), torch.tensor([200.])))
    assert ns_d_loss(torch.tensor([-200.]), torch.tensor([200.])).item() == pytest.approx(400.)


def test_ns_generator_gradient_does_not_saturate():
    l = torch.tensor([-10.0], requires_grad=True)
    (g_ns,) = torch.autograd.grad(ns_g_loss(l), l)
    (g_mm,) = torch.autograd.grad(-F.softplus(l).mean(), l)  # the minimax generator loss
    assert g_ns.item() == pytest.approx(-1.0, abs=1e-4) and abs(g_mm.item()) < 1e-4


def test_wgan_and_hinge_losses():
    r, f = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([0.0, 3.0])
    assert wgan_d_loss(r, f).item() == pytest.approx(f.mean() - r.mean())
    assert wgan_g_loss(f).item() == pytest.approx(-1.5)
    assert hinge_g_loss(f).item() == pytest.approx(-1.5)
    want = (F.relu(1 - r).mean() + F.relu(1 + f).mean()).item()
    assert hinge_d_loss(r, f).item() == pytest.approx(want)
    assert hinge_d_loss(torch.full((3,), 1.0), torch.full((3,), -1.0)).item() == 0.0  # exactly on the margin
    assert set(ADVERSARIAL_LOSSES) == {"ns", "wgan-gp", "hinge"}


def test_losses_reject_bad_logits():
    with pytest.raises(ValueError, match="real_logits.*one logit per row"): ns_d_loss(torch.zeros(4, 2), torch.zeros(4))
    with pytest.raises(ValueError, match="fake_logits"): ns_g_loss(torch.zeros(2, 2, 2))
    with pytest.raises(TypeError, match="real_logits"): hinge_d_loss([0.0], torch.zeros(1))


# --- penalties -----------------------------------------------------------------------------------------------------

def test_gradient_penalty_linear_critic():
    set_seed(0)
    real, fake = torch.randn(32, 2), torch.randn(32, 2) * 3 + 1
    assert gradient_penalty(_linear([0.6, -0.8]), real, fake).item() == pytest.approx(0.0, abs=1e-10)
    assert gradient_penalty(_linear([3.0, 4.0]), real, fake).item() == pytest.approx(16.0, rel=1e-5)  # (5 - 1)^2
    with pytest.raises(ValueError, match="argument 'fake'"): gradient_penalty(_linear([1.0, 0.0]), real, fake[:5])


def test_gradient_penalty_uses_interpolates():
    # D(x) = 0.5 ||x||^2 has gradient x: with eps fixed, GP = mean (||eps r + (1-eps) f|| - 1)^2
    D = lambda x: 0.5 * x.pow(2).sum(1)
    real, fake = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    eps = torch.tensor([[0.25]])
    assert gradient_penalty(D, real, fake, eps=eps).item() == pytest.approx((0.5 - 1) ** 2, rel=1e-5)


def test_r1_r2_linear_and_quadratic():
    set_seed(0)
    w = [0.5, -2.0, 1.0]
    x = torch.randn(40, 3)
    assert r1_penalty(_linear(w, 3.0), x).item() == pytest.approx(sum(v * v for v in w), rel=1e-6)
    assert r2_penalty(_linear(w), x * 10).item() == pytest.approx(sum(v * v for v in w), rel=1e-6)
    A = torch.tensor([[1.0, 2.0, 0.0], [2.0, -1.0, 0.5], [0.0, 0.5, 3.0]])  # symmetric: grad of x^T A x / 2 is A x
    D = lambda x: 0.5 * ((x @ A) * x).sum(1)
    assert r1_penalty(D, x).item() == pytest.approx((x @ A).pow(2).sum(1).mean().item(), rel=1e-5)
    # on images the gradient norm runs over all non-batch dims
    img = torch.randn(4, 1, 3, 3)
    assert r1_penalty(lambda x: x.flatten(1).sum(1, keepdim=True), img).item() == pytest.approx(9.0)


def test_penalties_are_differentiable_in_discriminator_weights():
    lin = _linear([1.0, 2.0])
    r1_penalty(lin, torch.randn(8, 2)).backward()
    torch.testing.assert_close(lin.weight.grad, 2 * lin.weight.detach())


def test_penalty_bad_input():
    with pytest.raises(TypeError, match="argument 'D'"): r1_penalty(None, torch.randn(3, 2))
    with pytest.raises(TypeError, match="argument 'fake'"): r2_penalty(_linear([1.0]), [[1.0]])
    with pytest.raises(ValueError, match="requires_grad"): grad_norm_sq(torch.zeros(3), torch.zeros(3, 2))


# --- the low-density measure ---------------------------------------------------------------------------------------

def test_low_density_fraction_of_true_samples_is_q():
    toy = GaussianClusters()
    tau = log_prob_threshold(toy.log_prob, toy.sample(50_000, seed=0), q=0.05)
    frac = low_density_fraction(toy.sample(20_000, seed=1), toy.log_prob, tau)
    assert abs(frac - 0.05) < 0.006                                        # binomial sd ~ 0.0015
    bridge = torch.stack([torch.linspace(-1, 2, 100), torch.linspace(1, 1, 100)], 1)[40:60]  # between (-1,1) and (2,1)
    assert low_density_fraction(bridge, toy.log_prob, tau) == 1.0
    with pytest.raises(ValueError, match="argument 'q'"): log_prob_threshold(toy.log_prob, bridge, q=1.0)


# --- the GAN -------------------------------------------------------------------------------------------------------

def test_gan_fit_reduces_energy_distance_and_raises_likelihood_of_fakes():
    toy = GaussianClusters()
    X = toy.sample(5000, seed=0)
    set_seed(0)
    gan = GAN(2, latent_dim=2, hidden=(64, 64, 64), ema=0.0)
    s0 = gan.sample(2000)
    gan.fit(X, steps=400, progress=False)
    s1 = gan.sample(2000)
    ed0, ed1 = energy_distance(s0, X[:2000]), energy_distance(s1, X[:2000])
    lp0, lp1 = toy.log_prob(s0).mean().item(), toy.log_prob(s1).mean().item()
    assert ed1 < ed0 / 5, (ed0, ed1)
    assert lp1 > lp0 + 2, (lp0, lp1)
    assert len(gan.history) == 400 and {"d_loss", "g_loss", "r2"} <= set(gan.history.df.columns)


@pytest.mark.parametrize("loss,keys", [("ns", {"r2"}), ("wgan-gp", {"gp"}), ("hinge", {"r1", "r2"})])
def test_gan_losses_train_finite(loss, keys):
    set_seed(0)
    gan = GAN(2, loss=loss, hidden=(16, 16), r1=1.0 if loss == "hinge" else 0.0)
    gan.fit(torch.randn(256, 2), steps=10, progress=False)
    df = gan.history.df
    assert keys <= set(df.columns) and df.drop(columns="step").notna().all().all()
    if loss == "wgan-gp": assert "r2" not in df.columns and gan.r2 == 0.0


def test_gan_ema_tracks_generator():
    set_seed(0)
    gan = GAN(2, hidden=(8,), ema=0.5)
    z = torch.randn(5, 2)
    before = gan.decode(z).detach()
    gan.fit(torch.randn(64, 2), steps=3, progress=False)
    assert not torch.equal(gan.decode(z), gan.decode(z, use_ema=False))
    assert not torch.equal(gan.decode(z), before)
    no_ema = GAN(2, hidden=(8,), ema=0.0)
    assert no_ema.G_ema is None and torch.equal(no_ema.decode(z), no_ema.decode(z, use_ema=False))


def test_gan_save_load_round_trip(tmp_path):
    set_seed(0)
    gan = GAN(2, latent_dim=3, hidden=(16, 16), loss="hinge", r1=0.5).fit(torch.randn(128, 2), steps=4, progress=False)
    z = torch.randn(10, 3)
    back = GAN.load(gan.save(tmp_path / "gan.pt"))
    assert back.config == gan.config and back.global_step == 4 and len(back.history) == 4
    assert torch.equal(back.decode(z), gan.decode(z))
    assert torch.equal(back.decode(z, use_ema=False), gan.decode(z, use_ema=False))
    # the optimiser state comes back too, so training continues identically
    set_seed(5); a = gan.fit(torch.randn(128, 2), steps=2, progress=False, seed=1).decode(z, use_ema=False)
    set_seed(5); b = back.fit(torch.randn(128, 2), steps=2, progress=False, seed=1).decode(z, use_ema=False)
    torch.testing.assert_close(a, b)
    torch.save({"x": 1}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError): GAN.load(tmp_path / "foreign.pt")


def test_gan_bad_arguments():
    with pytest.raises(ValueError, match=r"argument 'loss'.*\['ns', 'wgan-gp', 'hinge'\].*'lsgan'"): GAN(2, loss="lsgan")
    with pytest.raises(ValueError, match="argument 'r1'"): GAN(2, r1=-1.0)
    with pytest.raises(TypeError, match="argument 'betas'"): GAN(2, betas=0.9)
    with pytest.raises(TypeError, match="argument 'data_shape'"): GAN(0)
    gan = GAN(2, hidden=(8,))
    with pytest.raises(ValueError, match=r"argument 'x'.*\(n, 2\)"): gan.fit(torch.randn(50, 3), steps=1, progress=False)
    with pytest.raises(ValueError, match=r"argument 'x'.*dimensions"): gan.fit(torch.randn(50), steps=1, progress=False)
    with pytest.raises(ValueError, match="argument 'x'.*NaN"): gan.fit(torch.full((50, 2), float("nan")), steps=1, progress=False)
    with pytest.raises(ValueError, match=r"argument 'z'.*\(n, 2\)"): gan.decode(torch.randn(4, 5))
    with pytest.raises(ValueError, match="argument 'n'"): gan.sample(-1)
