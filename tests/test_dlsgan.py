"Tests for invgen_lit.dlsgan: the latent scale and trace, the encoder losses, the four inversion models' API, bad input."
import math

import pytest
import torch

from invgen_lit.data import GaussianClusters
from invgen_lit.dlsgan import (AEDLSGAN, DLSGAN, InfoGAN, LatentTrace, MSEGAN, PosthocEncoderGAN, dls_encoder_loss, info_encoder_loss,
                               latent_scale, mse_encoder_loss, scaled_entropy)

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = dict(latent_dim=6, hidden=(16, 16), batch_size=32, lr=1e-3)
MODELS = [DLSGAN, MSEGAN, InfoGAN, PosthocEncoderGAN]


@pytest.fixture(scope="module")
def X():
    return GaussianClusters().sample(1000, seed=0)


def test_latent_scale_normalises_and_ranks_like_the_variances():
    v = torch.tensor([0.5, 2.0, 0.0, 1.0])
    s = latent_scale(v)
    torch.testing.assert_close(s.pow(2).sum(), torch.tensor(4.0))
    assert s.argsort().tolist() == v.argsort().tolist() and s[2] == 0
    torch.testing.assert_close(latent_scale(v * 7.3), s)                  # only ratios matter
    with pytest.raises(ValueError, match="non-negative"): latent_scale(torch.tensor([1.0, -0.1]))


def test_entropy_lemma_and_its_maximum():
    s = latent_scale(torch.tensor([3.0, 1.0, 0.2]))
    assert scaled_entropy(s) == pytest.approx(scaled_entropy(torch.ones(3)) + float(s.log().sum()), abs=1e-6)
    assert scaled_entropy(torch.ones(3)) == pytest.approx(3 * 0.5 * math.log(2 * math.pi * math.e))
    assert scaled_entropy(torch.ones(3)) > scaled_entropy(s)


def test_trace_is_an_ema_of_the_squared_predictions():
    tr = LatentTrace(3, decay=0.9, init=1e-4)
    torch.testing.assert_close(tr.s, torch.ones(3))
    for _ in range(200): tr.update(torch.tensor([[2.0, 1.0, 0.0], [-2.0, -1.0, 0.0]]))
    torch.testing.assert_close(tr.v, torch.tensor([4.0, 1.0, 0.0]), atol=1e-3, rtol=1e-3)
    with pytest.raises(ValueError, match="z_pred"): tr.update(torch.zeros(2, 4))


def test_encoder_losses_match_their_equations():
    z, zp, lv = torch.randn(5, 3), torch.randn(5, 3), torch.randn(5, 3)
    torch.testing.assert_close(mse_encoder_loss(z, zp), ((z - zp) ** 2).mean())
    torch.testing.assert_close(info_encoder_loss(z, zp, lv), (lv + (z - zp) ** 2 / (lv.exp() + 1e-7)).mean())
    s = torch.tensor([0.0, 1.0, 2.0])
    torch.testing.assert_close(dls_encoder_loss(z, zp, s), (((z - zp) * s) ** 2).mean())
    torch.testing.assert_close(dls_encoder_loss(z, zp, torch.ones(3)), mse_encoder_loss(z, zp))


@pytest.mark.parametrize("cls", MODELS)
def test_api_fit_sample_encode_decode_score_save_load(cls, X, tmp_path):
    m = cls(2, **TINY).fit(X, steps=6, progress=False)
    z = torch.randn(5, 6)
    assert m.decode(z).shape == (5, 2) and m.sample(4).shape == (4, 2) and m.encode(X[:7]).shape == (7, 6)
    assert m.decode(m.encode(X[:3])).shape == (3, 2)
    assert m.latent_scale.shape == (6,) and m.latent_variance.shape == (6,)
    sc = m.score(X[:9])
    assert sc.shape == (9,) and torch.isfinite(sc).all()
    m2 = cls.load(m.save(tmp_path / "m.pt"))
    torch.testing.assert_close(m2.decode(z), m.decode(z))
    torch.testing.assert_close(m2.encode(X[:4]), m.encode(X[:4]))
    torch.testing.assert_close(m2.latent_variance, m.latent_variance)


def test_dlsgan_decodes_from_the_scaled_latent_and_others_do_not(X):
    d = DLSGAN(2, **TINY).fit(X, steps=30, progress=False)
    z = torch.randn(4, 6)
    torch.testing.assert_close(d.decode(z), d.G_ema(z * d.latent_scale))
    assert not torch.allclose(d.latent_scale, torch.ones(6))              # the trace has moved s
    m = MSEGAN(2, **TINY).fit(X, steps=30, progress=False)
    torch.testing.assert_close(m.latent_scale, torch.ones(6))
    torch.testing.assert_close(m.decode(z), m.G_ema(z))


def test_score_is_eq_37():
    m = MSEGAN(2, **TINY)
    m.global_step = 1
    m.trace.v.copy_(torch.tensor([1.0, 0.5, 0.1, 1.0, 1.0, 1.0]))
    x = torch.randn(3, 2)
    z, v = m.encode(x), m.trace.v
    ref = -torch.distributions.Normal(0.0, v.sqrt()).log_prob(z).sum(1)
    torch.testing.assert_close(m.score(x), ref)


def test_posthoc_trains_the_gan_then_the_encoder(X):
    m = PosthocEncoderGAN(2, **TINY).fit(X, steps=5, encoder_steps=7, progress=False)
    h = m.history.df
    assert m.global_step == 12
    assert h["enc_e"].notna().sum() == 7 and h["d_adv"].notna().sum() == 5


def test_enc_in_g_false_keeps_l_enc_out_of_the_generator_loss(X):
    m = DLSGAN(2, enc_in_g=False, **TINY).fit(X, steps=3, progress=False)
    assert "enc_g" in m.history.df


@pytest.mark.parametrize("kw,err,msg", [(dict(latent_dim=0), ValueError, "latent_dim"), (dict(latent_dim=1.5), TypeError, "latent_dim"),
                                        (dict(lambda_enc=-1.0), ValueError, "lambda_enc"), (dict(trace_decay=2.0), ValueError, "trace_decay"),
                                        (dict(betas=(0.5,)), TypeError, "betas")])
def test_bad_constructor_arguments(kw, err, msg):
    with pytest.raises(err, match=msg): DLSGAN(2, **({"hidden": (8,)} | kw))


def test_bad_input_is_refused(X):
    m = DLSGAN(2, **TINY)
    with pytest.raises(RuntimeError, match="call fit first"): m.score(X[:3])
    with pytest.raises(ValueError, match="argument 'X'"): m.fit(torch.randn(10, 3), steps=1, progress=False)
    with pytest.raises(ValueError, match="argument 'z'"): m.decode(torch.randn(3, 5))
    with pytest.raises(ValueError, match="argument 'x'"): m.encode(torch.randn(3, 4))
    img = DLSGAN((1, 8, 8), latent_dim=4, hidden=(8,))
    with pytest.raises(ValueError, match=r"images in \[-1, 1\]"): img.fit(torch.rand(10, 1, 8, 8) * 4, steps=1, progress=False)
    with pytest.raises(ValueError, match="argument 'X'"): img.fit(torch.rand(10, 1, 16, 16), steps=1, progress=False)


def test_conv_backbone_on_images():
    x = torch.rand(16, 1, 8, 8) * 2 - 1
    m = InfoGAN((1, 8, 8), latent_dim=4, backbone="conv", channels=8, batch_size=8).fit(x, steps=2, progress=False)
    assert m.encode(x[:3]).shape == (3, 4) and m.sample(2).shape == (2, 1, 8, 8)


def test_dlsgan_concentrates_the_scale_on_the_dimensions_a_2d_toy_needs():
    "Claim-sized check (~25 s): on 2-D clusters from 8 latents, DLSGAN's L_enc falls far below MSEGAN's and two s_i dominate."
    torch.manual_seed(0)
    X = GaussianClusters().sample(10_000, seed=0)
    kw = dict(latent_dim=8, hidden=(64, 64, 64), batch_size=64, lr=1e-3)
    d = DLSGAN(2, **kw).fit(X, steps=1500, progress=False)
    m = MSEGAN(2, **kw).fit(X, steps=1500, progress=False)
    l_d, l_m = d.history.df["enc_g"].tail(200).mean(), m.history.df["enc_g"].tail(200).mean()
    assert l_d < 0.5 * l_m and l_m > 0.6, (l_d, l_m)
    s = d.latent_scale.sort(descending=True).values
    assert s[:2].pow(2).sum() > 0.6 * 8, s                               # most of sum s_i^2 = d_z sits on two dimensions


# --- AEDLSGAN ---

@pytest.fixture(scope="module")
def labelled(X):
    return X, (X[:, 0] > 0.5).long()


def test_aedlsgan_fake_conditions_follow_the_fixed_classifier(labelled, tmp_path):
    X, y = labelled
    a = AEDLSGAN(2, n_classes=3, **TINY).fit(X, y, steps=8, progress=False)
    w0 = a.w.clone()
    a.fit(X, y, steps=4, progress=False)
    torch.testing.assert_close(a.w, w0)                                   # the classifier is never trained
    z = torch.randn(50, 6)
    c = a.fake_condition(z)
    assert torch.equal(c.argmax(1), ((z * a.latent_scale) @ a.w + a.b).argmax(1)) and torch.equal(c.sum(1), torch.ones(50))
    assert a.d_out == 3 + 6
    b = AEDLSGAN.load(a.save(tmp_path / "a.pt"))
    torch.testing.assert_close(b.w, a.w)
    torch.testing.assert_close(b.edit(X[:3], 0.5), a.edit(X[:3], 0.5))


def test_aedlsgan_edit_sets_the_score_and_moves_only_along_the_classifier(labelled):
    X, y = labelled
    a = AEDLSGAN(2, n_classes=2, **TINY).fit(X, y, steps=10, progress=False)
    z = a.encode(X[:5])
    m = a.latent_scale * (a.w[:, 1] - a.w[:, 0])
    for target in (-1.0, 0.0, 1.0):
        z_new = z + (target - a.attribute_score(z))[:, None] * math.sqrt(6) * m / m.pow(2).sum()
        torch.testing.assert_close(a.attribute_score(z_new), torch.full((5,), target), atol=1e-4, rtol=0)
        delta = z_new - z
        assert torch.allclose(delta - (delta @ m)[:, None] * m / m.pow(2).sum(), torch.zeros_like(delta), atol=1e-5)
    assert a.edit(X[:5], 1.0).shape == (5, 2)


def test_aedlsgan_bad_input(labelled):
    X, y = labelled
    a = AEDLSGAN(2, n_classes=2, **TINY)
    with pytest.raises(ValueError, match="one label per row"): a.fit(X[:10], y[:9], steps=1, progress=False)
    with pytest.raises(ValueError, match=r"labels in 0\.\.1"): a.fit(X[:10], y[:10] + 2, steps=1, progress=False)
    with pytest.raises(ValueError, match="two different classes"): a.edit(X[:2], 0.5, source=0, target=0)
    with pytest.raises(ValueError, match="target"): a.edit(X[:2], 0.5, target=2)
    with pytest.raises(ValueError, match="n_classes"): AEDLSGAN(2, n_classes=1)


def test_an_encoder_head_of_the_wrong_width_is_named(X):
    "A discriminator replaced by one whose output does not match 1 + latent_dim is refused with the widths."
    m = DLSGAN(2, **TINY)
    m.D = torch.nn.Sequential(torch.nn.Linear(2, 5))
    with pytest.raises(ValueError, match=r"expected 7 outputs per row \(1 adversarial \+ 6 latent\), received shape \(3, 5\)"):
        m.encode(X[:3], use_ema=False)
    with pytest.raises(ValueError, match="discriminator/encoder head"): m.fit(X, steps=1, progress=False)
