"Tests for invgen_lit.cagan: conditions, the ACGAN / CAGAN losses, mixed batches, the two models' API, bad input."
import math

import pytest
import torch
import torch.nn.functional as F

from invgen_lit.cagan import (ACGAN, CAGAN, MixingSchedule, acgan_d_loss, acgan_g_loss, adversarial_d_loss, bayes_posterior,
                              cagan_d_loss, cagan_g_loss, check_class_weights, check_label_sizes, check_multi_labels,
                              classification_loss, conditions, mixed_groups, mixing_share, near_boundary_fraction,
                              resample_classes, sample_labels)
from invgen_lit.core import Checkpoint
from invgen_lit.data import GaussianClusters

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = dict(hidden=(16, 16), latent_dim=4)


@pytest.fixture(scope="module")
def clusters():
    return GaussianClusters().sample(2000, return_labels=True, seed=0)


# --- conditions and labels ---

def test_conditions_concatenate_one_hots_and_binary_labels_take_two_entries():
    c = conditions(torch.tensor([[1, 0], [2, 1]]), (3, 2))
    assert c.tolist() == [[0, 1, 0, 1, 0], [0, 0, 1, 0, 1]]
    assert check_label_sizes([3, 2, 2]) == (3, 2, 2)


@pytest.mark.parametrize("bad,err,msg", [(1, ValueError, "at least 2 classes"), ([], TypeError, "n_classes"),
                                         (2.0, TypeError, "n_classes"), ([3, True], TypeError, "n_classes")])
def test_bad_label_sizes(bad, err, msg):
    with pytest.raises(err, match=msg): check_label_sizes(bad)


def test_labels_out_of_range_or_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match=r"labels in 0\.\.3, received values in 0\.\.4"):
        check_multi_labels(torch.tensor([0, 4]), (4,))
    with pytest.raises(ValueError, match=r"labels in 0\.\.3, received values in -1\.\.0"):
        check_multi_labels(torch.tensor([0, -1]), (4,))
    with pytest.raises(ValueError, match=r"\(n, 2\), one column per label"):
        check_multi_labels(torch.tensor([0, 1]), (4, 2))
    with pytest.raises(ValueError, match=r"y\[:, 1\]"):
        check_multi_labels(torch.tensor([[0, 2]]), (4, 2))
    with pytest.raises(TypeError, match="integer class ids"):
        check_multi_labels(torch.tensor([0.0, 1.0]), (4,))
    with pytest.raises(ValueError, match="expected shape"):
        check_multi_labels(torch.tensor([0, 1, 2]), (4,), n=2)


@pytest.mark.parametrize("w,msg", [([0.5, 0.5, 0.5, -0.5], "non-negative"), ([0.3, 0.3, 0.3, 0.3], "summing to 1"),
                                   ([0.5, 0.5], "4 weights"), ([float("nan")] * 4, "non-negative finite"),
                                   ("abcd", "expected a sequence of 4 numbers")])
def test_class_weights_that_are_not_a_distribution_are_refused(w, msg):
    with pytest.raises((ValueError, TypeError), match=msg): check_class_weights(w, (4,))
    with pytest.raises((ValueError, TypeError), match=msg): CAGAN(2, 4, class_weights=w, **TINY)


def test_class_weights_per_label_and_sampling_follow_them():
    ws = check_class_weights([[0.2, 0.8], [0.5, 0.25, 0.25]], (2, 3))
    y = sample_labels(20_000, ws, torch.Generator().manual_seed(0))
    assert y.shape == (20_000, 2)
    torch.testing.assert_close(y[:, 0].bincount().float() / 20_000, torch.tensor([0.2, 0.8]), atol=0.015, rtol=0)
    torch.testing.assert_close(y[:, 1].bincount().float() / 20_000, torch.tensor([0.5, 0.25, 0.25]), atol=0.015, rtol=0)
    with pytest.raises(ValueError, match="one weight vector per label"): check_class_weights([0.5, 0.5, 0.0], (2, 3))
    with pytest.raises(ValueError, match=r"class_weights\[0\]': expected 2 weights"): check_class_weights([0.5, 0.5], (2, 3))


def test_resample_classes_gives_the_requested_mix_from_the_right_rows():
    x = torch.arange(300.0)[:, None]
    y = torch.arange(300) % 3
    xb, yb = resample_classes(x, y, [0.6, 0.3, 0.1], 5000, seed=1)
    torch.testing.assert_close(yb.bincount().float() / 5000, torch.tensor([0.6, 0.3, 0.1]), atol=0.02, rtol=0)
    assert torch.equal(xb[:, 0].long() % 3, yb)                       # every row keeps its own label
    with pytest.raises(ValueError, match="summing to 1"): resample_classes(x, y, [0.6, 0.3, 0.3], 10)
    with pytest.raises(ValueError, match="no rows"): resample_classes(x[:2], torch.tensor([0, 2]), [0.4, 0.2, 0.4], 50)


# --- losses ---

def test_cagan_loss_is_the_sum_of_per_class_gans_up_to_a_constant():
    torch.manual_seed(0)
    ro, fo = torch.randn(32, 5), torch.randn(32, 5)
    cr, cf = conditions(torch.randint(5, (32,)), (5,)), conditions(torch.randint(5, (32,)), (5,))
    per_gan = sum(adversarial_d_loss(ro[:, i] * cr[:, i], fo[:, i] * cf[:, i]) for i in range(5))
    torch.testing.assert_close(cagan_d_loss(ro, cr, fo, cf), per_gan - 8 * math.log(2))
    gen = sum(F.softplus(-(fo[:, i] * cf[:, i])).mean() for i in range(5))
    torch.testing.assert_close(cagan_g_loss(fo, cf), gen - 4 * math.log(2))


def test_cagan_generator_gradient_reaches_only_the_active_output():
    fo = torch.randn(4, 3, requires_grad=True)
    cf = conditions(torch.tensor([0, 2, 2, 1]), (3,))
    cagan_g_loss(fo, cf).backward()
    assert torch.equal(fo.grad != 0, cf.bool())


def test_acgan_original_adds_the_fake_classification_term():
    torch.manual_seed(1)
    ro, fo = torch.randn(16, 4), torch.randn(16, 4)
    cr, cf = conditions(torch.randint(3, (16,)), (3,)), conditions(torch.randint(3, (16,)), (3,))
    orig = acgan_d_loss(ro, cr, fo, cf, revised=False)
    torch.testing.assert_close(orig, acgan_d_loss(ro, cr, fo, cf) + classification_loss(fo[:, 1:], cf))
    torch.testing.assert_close(acgan_g_loss(fo, cf, lambda_cls=3.0) - acgan_g_loss(fo, cf, lambda_cls=1.0),
                               2 * classification_loss(fo[:, 1:], cf))


def test_loss_shapes_are_checked():
    with pytest.raises(ValueError, match=r"shape \(B, 3\)"):
        cagan_d_loss(torch.randn(4, 2), torch.zeros(4, 3), torch.randn(4, 3), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="argument 'loss'"):
        cagan_g_loss(torch.randn(4, 3), torch.zeros(4, 3), loss="wasserstein")


# --- mixed batches ---

@pytest.mark.parametrize("bad,name", [(-0.1, "progress"), (1.2, "progress")])
def test_mixing_progress_outside_0_1_is_refused(bad, name):
    with pytest.raises(ValueError, match=name): mixing_share(bad)


@pytest.mark.parametrize("kw,name", [(dict(mix_ramp=1.5), "mix_ramp"), (dict(mix_ramp=-0.5), "mix_ramp"),
                                     (dict(mix_target=0.7), "mix_target"), (dict(mix_target=-0.1), "mix_target")])
def test_a_mixing_schedule_outside_its_range_is_refused(kw, name):
    with pytest.raises(ValueError, match=name): CAGAN(2, 4, mixed_batch=True, **kw, **TINY)


def test_mixing_share_ramps_linearly_then_holds():
    assert [mixing_share(p, ramp=0.4) for p in (0, 0.2, 0.4, 0.9)] == [0, 0.25, 0.5, 0.5]
    assert mixing_share(0.0, ramp=0.0) == 0.5


@pytest.mark.parametrize("batch,share", [(32, 0.5), (7, 0.3), (10, 0.0)])
def test_mixed_groups_partition_the_rows_with_the_right_composition(batch, share):
    g1, g2 = mixed_groups(batch, share, torch.Generator().manual_seed(0))
    assert len(g1) == len(g2) == batch
    assert torch.equal(torch.cat([g1, g2]).sort().values, torch.arange(2 * batch))
    k = round(share * batch)
    assert int((g1 >= batch).sum()) == k and int((g2 < batch).sum()) == k


def test_mixing_schedule_drives_the_share_during_fit(clusters):
    X, y = clusters
    m = CAGAN(2, 4, mixed_batch=True, minibatch_std=4, mix_ramp=0.5, **TINY).fit(X, y, steps=20, progress=False)
    share = m.history.df["fake_share"].tolist()
    assert share[0] == 0 and share[10] == pytest.approx(0.5) and share[-1] == pytest.approx(0.5)
    assert share[5] == pytest.approx(0.25)
    plain = CAGAN(2, 4, **TINY).fit(X, y, steps=3, progress=False)
    assert set(plain.history.df["fake_share"]) == {0.0}


def test_mixed_batches_feed_discriminator_batches_with_both_kinds(clusters):
    "With mixing the discriminator sees real and fake rows in every batch; without it, one kind per batch."
    X, y = clusters
    seen = []
    m = CAGAN(2, 4, mixed_batch=True, mix_ramp=0.0, **TINY)
    m.fake_share = 0.5
    orig = m.D.forward
    m.D.forward = lambda x: (seen.append(x.detach().clone()), orig(x))[1]
    fake = torch.full((8, 2), 100.0)                       # fakes are easy to spot
    m.discriminator_step(X[:8], m.conditions(y[:8]), fake, m.conditions(y[:8]))
    assert len(seen) == 2 and all(int((b[:, 0] == 100).sum()) == 4 for b in seen)
    seen.clear(); m.fake_share = 0.0
    m.discriminator_step(X[:8], m.conditions(y[:8]), fake, m.conditions(y[:8]))
    assert [int((b[:, 0] == 100).sum()) for b in seen] == [0, 8]


# --- models ---

@pytest.mark.parametrize("cls", [CAGAN, ACGAN])
def test_fit_sample_decode_save_load(cls, clusters, tmp_path):
    X, y = clusters
    m = cls(2, n_classes=4, **TINY).fit(X, y, steps=5, progress=False)
    assert m.sample(6, y=torch.tensor([0, 1, 2, 3, 0, 1])).shape == (6, 2)
    assert m.sample(3, y=2).shape == (3, 2) and m.sample(3).shape == (3, 2)
    m2 = cls.load(m.save(tmp_path / "m.pt"))
    z = torch.randn(4, 4)
    torch.testing.assert_close(m2.decode(z, y=1), m.decode(z, y=1))
    assert m2.history.df.shape == m.history.df.shape


def test_acgan_config_survives_save_load(tmp_path):
    a = ACGAN(2, 4, lambda_cls=7.5, class_weights=[0.1, 0.2, 0.3, 0.4], mixed_batch=True, minibatch_std=4, **TINY)
    b = ACGAN.load(a.save(tmp_path / "a.pt"))
    assert b.lambda_cls == 7.5 and b.mixed_batch and b.d_out == 5
    torch.testing.assert_close(b.class_weights[0], torch.tensor([0.1, 0.2, 0.3, 0.4]))
    with pytest.raises(Exception, match="holds a 'ACGAN', not a 'CAGAN'"): CAGAN.load(tmp_path / "a.pt")


def test_multi_label_cagan_images_and_conv_backbone():
    X, y = torch.rand(64, 1, 8, 8) * 2 - 1, torch.stack([torch.randint(10, (64,)), torch.randint(2, (64,))], 1)
    m = CAGAN((1, 8, 8), n_classes=[10, 2], **TINY)
    assert m.d_out == 12
    m.fit(X, y, steps=2, progress=False)
    assert m.sample(3, y=torch.tensor([[1, 0], [2, 1], [9, 1]])).shape == (3, 1, 8, 8)
    conv = ACGAN((1, 8, 8), n_classes=10, backbone="conv", channels=8, minibatch_std=4, latent_dim=4)
    conv.fit(X, y[:, 0], steps=2, progress=False)
    assert conv.sample(2, y=3).shape == (2, 1, 8, 8)
    with pytest.raises(ValueError, match="'conv' needs image data_shape"): CAGAN(2, 4, backbone="conv")


def test_fit_refuses_bad_labels(clusters):
    X, y = clusters
    m = CAGAN(2, 4, **TINY)
    with pytest.raises(ValueError, match="one label row per data row"): m.fit(X[:10], y[:9], steps=1, progress=False)
    with pytest.raises(ValueError, match=r"labels in 0\.\.3"): m.fit(X[:10], y[:10] + 4, steps=1, progress=False)
    with pytest.raises(ValueError, match=r"labels in 0\.\.3"): m.sample(2, y=torch.tensor([0, 7]))
    with pytest.raises(ValueError, match="argument 'X'"): m.fit(torch.randn(10, 3), y[:10], steps=1, progress=False)
    with pytest.raises(ValueError, match="original ACGAN"): ACGAN(2, 4, lambda_cls=2.0, revised=False)


def test_checkpoint_resume_keeps_the_mixing_schedule(clusters, tmp_path):
    "An interrupted mixed run resumes with the share the schedule gives at the resumed step."
    X, y = clusters
    ck = tmp_path / "run.pt"
    torch.manual_seed(0)
    a = CAGAN(2, 4, mixed_batch=True, **TINY)
    a.fit(X, y, steps=10, progress=False, callbacks=[Checkpoint(ck, every=5)])
    b = CAGAN(2, 4, mixed_batch=True, **TINY)
    b.fit(X, y, steps=10, progress=False, callbacks=[Checkpoint(ck)])   # already complete: resumes at the end
    assert b.fake_share == pytest.approx(0.5) and b.global_step == 10


def test_acgan_keeps_pushing_data_like_fakes_off_the_boundary_and_cagan_does_not():
    "Fig. 3's argument: with fakes distributed like the data, ACGAN's push points away from the Bayes boundary; CAGAN's is small."
    torch.manual_seed(0)
    toy = GaussianClusters()
    X, y = toy.sample(4000, return_labels=True, seed=0)
    Xf, yf = toy.sample(4000, return_labels=True, seed=1)
    models = {"acgan": ACGAN(2, 4, hidden=(64, 64), latent_dim=4), "cagan": CAGAN(2, 4, hidden=(64, 64), latent_dim=4)}
    for _ in range(200):
        i, j = torch.randint(len(X), (64,)), torch.randint(len(Xf), (64,))
        for m in models.values(): m.discriminator_step(X[i], m.conditions(y[i]), Xf[j], m.conditions(yf[j]))
    xe, ye = toy.sample(3000, return_labels=True, seed=2)
    logp = lambda v: bayes_posterior(toy, v).gather(1, ye[:, None]).log()[:, 0]
    grad = torch.stack([(logp(xe + 1e-3 * e) - logp(xe - 1e-3 * e)) / 2e-3 for e in torch.eye(2)], 1)
    near = grad.norm(dim=1) > 0.5
    assert int(near.sum()) > 20
    push = {k: m.generator_push(xe[near], ye[near]) for k, m in models.items()}
    assert F.cosine_similarity(push["acgan"], grad[near], dim=1).mean() > 0.5
    assert push["cagan"].norm(dim=1).mean() < 0.3 * push["acgan"].norm(dim=1).mean()


def test_bayes_posterior_and_near_boundary_fraction():
    toy = GaussianClusters()
    centres = torch.tensor(GaussianClusters.CENTERS)
    post = bayes_posterior(toy, centres)
    assert torch.equal(post.argmax(1), torch.arange(4)) and (post.max(1).values > 0.99).all()
    midpoint = (centres[1:2] + centres[2:3]) / 2
    assert near_boundary_fraction(midpoint, toy) == 1.0 and near_boundary_fraction(centres, toy) == 0.0
    with pytest.raises(ValueError, match="threshold"): near_boundary_fraction(centres, toy, threshold=1.5)
