"Tests for invgen_lit.pvdgan: Eq. 19-21, 38-39, the pass count of Algorithm 4, the models' API, bad input."
import copy

import pytest
import torch

from invgen_lit.data import digits
from invgen_lit.dlsgan import DLSGAN
from invgen_lit.pvdgan import PVDGAN, VAEGAN, perceptual_loss, prior_loss, pvd_latent, vae_latent

pytestmark = pytest.mark.usefixtures("one_thread")
SHAPE = (1, 8, 8)
TINY = dict(latent_dim=6, hidden=(24, 24), batch_size=16, lr=1e-3)


@pytest.fixture(scope="module")
def X():
    return digits(8)[0][:400]


def test_prior_loss_is_twice_the_kl_plus_one():
    mu, lv = torch.randn(300, 4), torch.randn(300, 4)
    kl = torch.distributions.kl_divergence(torch.distributions.Normal(mu, (0.5 * lv).exp()), torch.distributions.Normal(0.0, 1.0))
    torch.testing.assert_close(prior_loss(mu, lv), 2 * kl.mean() + 1)
    assert prior_loss(torch.zeros(2, 3), torch.zeros(2, 3)) == pytest.approx(1.0)
    assert prior_loss(torch.full((2, 3), 0.3), torch.zeros(2, 3)) > 1.0


def test_eq_19_and_eq_38_give_the_intended_distributions():
    torch.manual_seed(0)
    zx = vae_latent(torch.full((100_000, 1), -1.0), torch.full((100_000, 1), 0.0), torch.randn(100_000, 1))
    assert float(zx.mean()) == pytest.approx(-1.0, abs=0.02) and float(zx.std()) == pytest.approx(1.0, abs=0.02)
    v = torch.tensor([0.9, 0.3, 0.0, 1.1])
    zx = pvd_latent(torch.randn(100_000, 4) * v.sqrt(), v, torch.randn(100_000, 4))
    torch.testing.assert_close(zx.var(0)[:3], torch.ones(3), atol=0.03, rtol=0)
    assert torch.equal(pvd_latent(torch.ones(2, 4), torch.full((4,), 2.0), torch.randn(2, 4)), torch.ones(2, 4))  # max(1 - v, 0)


def test_perceptual_loss_and_its_shape_check():
    a, b = torch.randn(5, 7), torch.randn(5, 7)
    torch.testing.assert_close(perceptual_loss(a, b), (a - b).pow(2).mean())
    with pytest.raises(ValueError, match="argument 'features_fake'"): perceptual_loss(a, b[:, :3])


def _forward_calls(model, x):
    counts = {}
    nets = {"G": model.G, "D": model.D} | ({"E": model.E} if hasattr(model, "E") else {})
    hs = [m.register_forward_hook(lambda *a, k=k: counts.__setitem__(k, counts.get(k, 0) + 1)) for k, m in nets.items()]
    model.train_step(x)
    for h in hs: h.remove()
    return counts


def test_pvdgan_makes_exactly_dlsgans_passes_and_vaegan_one_more_encoder_pass(X):
    dls, pvd, vae = (_forward_calls(cls(SHAPE, **TINY), X[:16]) for cls in (DLSGAN, PVDGAN, VAEGAN))
    assert pvd == dls
    assert vae["E"] == 1 and vae["G"] == dls["G"] and vae["D"] == dls["D"]


def test_pvdgan_generator_batch_is_half_z_x(X, monkeypatch):
    torch.manual_seed(0)
    m = PVDGAN(SHAPE, **TINY)
    m.trace.v.fill_(1.0)                                  # sqrt(max(1 - v, 0)) = 0: z_x is E_l(x) exactly
    x = X[:16]
    z_r = m._split(copy.deepcopy(m.D)(x))[1][:8].detach()  # the real latents of line 4, before D's update
    seen = []
    real_generate = m.generate
    monkeypatch.setattr(m, "generate", lambda z, use_ema=False: (seen.append(z.detach().clone()), real_generate(z, use_ema))[1])
    m.train_step(x)
    assert len(seen) == 2 and seen[1].shape == (16, 6)
    torch.testing.assert_close(seen[1][:8], z_r)          # line 11: the first half from Z_x
    assert not torch.allclose(seen[1][8:], z_r)           # line 12: the second from Z


@pytest.mark.parametrize("cls", [PVDGAN, VAEGAN])
def test_api_fit_encode_decode_save_load(cls, X, tmp_path):
    torch.manual_seed(0)
    m = cls(SHAPE, **TINY).fit(X, steps=30, progress=False)
    z = m.encode(X[:5])
    assert z.shape == (5, 6) and m.decode(z).shape == (5, *SHAPE) and m.sample(4).shape == (4, *SHAPE)
    assert torch.isfinite(m.score(X[:5])).all() and m.latent_variance.shape == (6,)
    assert "rec" in m.history.df.columns and torch.isfinite(torch.tensor(m.history.df["rec"].to_numpy())).all()
    back = cls.load(m.save(tmp_path / "m.pt"))
    torch.testing.assert_close(back.encode(X[:5]), z)
    torch.testing.assert_close(back.decode(z), m.decode(z))


def test_vaegan_encoder_update_is_eq_24_only(X):
    "The encoder's gradient is that of lambda_rec L_rec + lambda_prr L_prr: with lambda_rec = 0, of L_prr alone."
    torch.manual_seed(0)
    m = VAEGAN(SHAPE, lambda_rec=0.0, lambda_prr=1.0, **TINY)
    x = X[:16]
    E_before = copy.deepcopy(m.E)
    mu, lv = E_before(x[:8]).split(6, 1)
    want = torch.autograd.grad(prior_loss(mu, lv), list(E_before.parameters()))
    m.train_step(x)
    for p, w in zip(m.E.parameters(), want): torch.testing.assert_close(p.grad, w)   # no adversarial part leaks in


def test_bad_input(X):
    with pytest.raises(ValueError, match="argument 'lambda_rec'"): PVDGAN(SHAPE, lambda_rec=-1.0)
    with pytest.raises(ValueError, match="argument 'lambda_prr'"): VAEGAN(SHAPE, lambda_prr=-1.0)
    with pytest.raises(ValueError, match="argument 'latent_dim'"): PVDGAN(SHAPE, latent_dim=0)
    with pytest.raises(RuntimeError, match="untrained"): VAEGAN(SHAPE, **TINY).score(X[:3])
    m = PVDGAN(SHAPE, **TINY)
    with pytest.raises(ValueError, match=r"argument 'X'.*\[-1, 1\]"): m.fit(X * 3, steps=1, progress=False)
    with pytest.raises(ValueError, match="argument 'x'"): m.encode(torch.zeros(2, 1, 16, 16))
