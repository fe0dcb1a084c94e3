"Tests for invgen_lit.ignn: the mixture latent, ConditionalFlow (vectors and graphs), graph layers, baselines, bad input."
import math

import pytest
import torch

from invgen_lit.data import ThreeMoons
from invgen_lit.ignn import (ConditionalCouplingFlow, ConditionalFlow, ConditionalGAN, GraphLayer, GraphResidualNet,
                             MixtureLatent, check_adjacency, chebyshev_basis, hop_mask, min_separation)
from invgen_lit.core import set_seed
from invgen_lit.iresnet import FixedPointError

PATH3 = torch.tensor([[0., 1, 0], [1, 0, 1], [0, 1, 0]])


@pytest.fixture(scope="module")
def moons():
    torch.manual_seed(0)
    X, Y = ThreeMoons(weights=[0.6, 0.3, 0.1]).sample(800, return_labels=True, seed=0)
    return X, Y, ConditionalFlow(2, n_classes=3, n_blocks=4).fit(X, Y, steps=40, progress=False)


def test_latent_log_prob_and_posterior():
    torch.manual_seed(0)
    lat = MixtureLatent(3, 2, sigma=0.5)
    h, y = torch.randn(200, 1, 2), torch.randint(0, 3, (200, 1))
    ref = torch.distributions.Normal(lat.means[y[:, 0]], 0.5).log_prob(h[:, 0]).sum(1)
    torch.testing.assert_close(lat.log_prob(h, y), ref, atol=1e-5, rtol=1e-5)
    post = lat.log_posterior(h).exp()
    torch.testing.assert_close(post.sum(-1), torch.ones(200, 1))
    # a point at a mean is most probably of that class
    assert (lat.log_posterior(lat.means.detach()[:, None]).argmax(-1).flatten() == torch.arange(3)).all()


def test_separation_and_barrier():
    assert min_separation(2, 1.0, 500) == pytest.approx(2 * math.sqrt(2 * math.log(1000)))
    lat = MixtureLatent(3, 2, sigma=0.5)
    assert torch.isfinite(lat.barrier())
    d = torch.cdist(lat.means, lat.means)[torch.triu_indices(3, 3, 1).unbind()]
    assert (d > lat.separation).all()
    with torch.no_grad(): lat.means[2] = lat.means[1]
    assert lat.barrier() > 10


def test_radius_coverage():
    lat = MixtureLatent(2, 3, sigma=0.7)
    draws = lat.sample(torch.ones(50_000, 1, dtype=torch.long))
    cover = ((draws - lat.means[1]).norm(dim=-1) <= lat.radius(0.8)).float().mean()
    assert abs(cover - 0.8) < 0.01


def test_conditional_flow_api(moons, tmp_path):
    X, Y, m = moons
    torch.testing.assert_close(m.decode(m.encode(X)), X, atol=1e-4, rtol=0)
    p = m.predict_proba(X)
    assert p.shape == (800, 3) and torch.allclose(p.sum(1), torch.ones(800), atol=1e-5)
    assert m.sample(5, y=1).shape == (5, 2)
    assert m.sample(3, y=torch.tensor([0, 1, 2])).shape == (3, 2)
    lp = m.log_prob(X[:50], Y[:50])
    assert lp.shape == (50,) and torch.isfinite(lp).all()
    assert set(m.history.df.columns) >= {"L_g", "L_c", "W", "barrier"}
    # the prior follows the label frequencies
    freq = torch.bincount(Y, minlength=3).float() + 1
    torch.testing.assert_close(m.latent.log_prior.exp(), freq / freq.sum())
    path = m.save(tmp_path / "cf.pt")
    m2 = ConditionalFlow.load(path)
    torch.testing.assert_close(m2.log_prob(X[:50], Y[:50]), lp)
    assert m.prediction_set(X, 0.9).shape == (800, 3)
    assert m.confidence_region(0, 0.9, 50).shape == (50, 2)


def test_log_prob_matches_change_of_variables(moons):
    from invgen_lit.density import exact_logdet
    X, Y, m = moons
    x, y = X[:20], Y[:20]
    h = m.flow(x).reshape(20, 1, 2)
    ref = m.latent.log_prob(h, y[:, None]) + exact_logdet(m.flow, x)
    torch.testing.assert_close(m.log_prob(x, y), ref.detach(), atol=1e-4, rtol=1e-4)


def test_training_lowers_objective():
    torch.manual_seed(1)
    X, Y = ThreeMoons().sample(600, return_labels=True, seed=2)
    m = ConditionalFlow(2, n_classes=3, n_blocks=3).fit(X, Y, steps=150, progress=False)
    h = m.history.df
    assert h["L_g"].iloc[-20:].mean() < h["L_g"].iloc[:20].mean() - 0.2
    assert h["L_c"].iloc[-20:].mean() < h["L_c"].iloc[:20].mean()


def test_bad_input(moons):
    X, Y, m = moons
    with pytest.raises(ValueError, match="0..2"): m.fit(X, Y + 3, steps=1, progress=False)
    with pytest.raises(ValueError, match="one label row per data row"): m.fit(X, Y[:10], steps=1, progress=False)
    with pytest.raises(TypeError, match="integer class ids"): m.sample(3, y=torch.tensor([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="'y'"): m.sample(3, y=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="'X'"): m.encode(torch.randn(4, 3))
    with pytest.raises(ValueError, match="n_classes"): ConditionalFlow(2, n_classes=1)
    with pytest.raises(ValueError, match="data_shape"): ConditionalFlow((2, 2, 2), n_classes=2)


def test_graph_bad_input():
    with pytest.raises(ValueError, match=r"\(3, 3\)"): ConditionalFlow((3, 2), n_classes=2, adjacency=torch.ones(4, 4))
    with pytest.raises(ValueError, match="adjacency"): ConditionalFlow((3, 2), n_classes=2)
    with pytest.raises(ValueError, match="adjacency"): ConditionalFlow(2, n_classes=2, adjacency=PATH3)
    with pytest.raises(ValueError, match="symmetric"): check_adjacency(torch.triu(torch.ones(3, 3)), 3)
    with pytest.raises(ValueError, match="layer"): ConditionalFlow((3, 2), n_classes=2, adjacency=PATH3, layer="gcn")


def test_chebyshev_and_masks():
    T = chebyshev_basis(PATH3, 3)
    assert T.shape == (4, 3, 3)
    torch.testing.assert_close(T[0], torch.eye(3))
    torch.testing.assert_close(T[2], 2 * T[1] @ T[1] - T[0])
    ev = torch.linalg.eigvalsh(T[1])
    assert ev.min() >= -1 - 1e-5 and ev.max() <= 1 + 1e-5
    assert hop_mask(PATH3, 1).tolist() == [[True, True, False], [True, True, True], [False, True, True]]
    assert hop_mask(PATH3, 2).all()


def test_spectral_layer_equivariant_spatial_not():
    torch.manual_seed(0)
    P = torch.eye(3)[[2, 1, 0]]
    x = torch.randn(30, 3, 2)
    for kind, equivariant in (("chebnet", True), ("l3net", False)):
        layer = GraphLayer(PATH3, 2, 4, kind)
        gap = (layer(P @ x) - P @ layer(x)).abs().max()
        assert (gap < 1e-5) == equivariant, (kind, gap)
    net = GraphResidualNet(PATH3, 2, kind="l3net")
    assert net(torch.randn(5, 6)).abs().max() == 0  # output layer starts at zero: the block is the identity


def test_graph_flow_round_trip_and_predict():
    torch.manual_seed(0)
    Y = torch.randint(0, 2, (300, 3))
    X = torch.tensor([[-0.75, 0.0], [0.75, 0.0]])[Y] + 0.3 * torch.randn(300, 3, 2)
    m = ConditionalFlow((3, 2), n_classes=2, adjacency=PATH3, n_blocks=3, hidden=(16,)).fit(X, Y, steps=60, progress=False)
    torch.testing.assert_close(m.decode(m.encode(X)), X, atol=1e-4, rtol=0)
    assert m.predict_proba(X).shape == (300, 3, 2)
    assert (m.predict(X) == Y).float().mean() > 0.8
    assert m.sample(4, y=torch.tensor([[0, 1, 0]] * 4)).shape == (4, 3, 2)
    assert m.log_prob(X[:5], Y[:5]).shape == (5,)
    with pytest.raises(ValueError, match="'y'"): m.sample(4, y=torch.tensor([0, 1, 0]))


def test_fixed_point_failure_is_an_error(moons):
    _, _, m = moons
    m2 = ConditionalFlow(2, n_classes=3, n_blocks=2)
    with torch.no_grad():
        for p in m2.flow.parameters(): p.normal_(0, 3)
    with pytest.raises(FixedPointError, match="did not converge"):
        m2.decode(10 * torch.randn(200, 2))


@pytest.mark.parametrize("cls", [ConditionalGAN, ConditionalCouplingFlow])
def test_baselines(cls, tmp_path):
    torch.manual_seed(0)
    X, Y = ThreeMoons().sample(500, return_labels=True, seed=3)
    m = cls(2, n_classes=3).fit(X, Y, steps=30, progress=False)
    s = m.sample(10, y=2)
    assert s.shape == (10, 2) and torch.isfinite(s).all()
    m2 = cls.load(m.save(tmp_path / "b.pt"))
    z = torch.randn(4, m.latent_dim if hasattr(m, "latent_dim") else 2)
    torch.testing.assert_close(m2.decode(z, y=1), m.decode(z, y=1))
    with pytest.raises(ValueError, match="0..2"): m.sample(3, y=5)
    with pytest.raises(ValueError, match="data_shape"): cls((3, 2), n_classes=2)


def test_coupling_flow_is_exact():
    from invgen_lit.density import exact_logdet, standard_normal_log_prob
    torch.manual_seed(0)
    m = ConditionalCouplingFlow(2, n_classes=2, n_layers=4)
    with torch.no_grad():
        for p in m.parameters(): p.normal_(0, 0.3)
    x = torch.randn(50, 2)
    torch.testing.assert_close(m.decode(m.encode(x, y=1), y=1), x, atol=1e-5, rtol=0)
    c = torch.nn.functional.one_hot(torch.ones(50, dtype=torch.long), 2).float()
    ref = standard_normal_log_prob(m.encode(x, y=1)) + exact_logdet(lambda v: m._flow(v, c[: len(v)])[0], x)
    torch.testing.assert_close(m.log_prob(x, 1), ref, atol=1e-4, rtol=1e-4)


def test_score_is_minus_the_log_density_with_the_label_summed_out():
    from invgen_lit.data import toy
    set_seed(0)
    x, y = toy("three_moons").sample(200, return_labels=True, seed=0)
    m = ConditionalFlow(2, n_classes=3, n_blocks=2, hidden=(16, 16)).fit(x, y, steps=10, progress=False)
    lp = torch.stack([m.log_prob(x[:7], k) for k in range(3)], -1)
    torch.testing.assert_close(m.score(x[:7]), -torch.logsumexp(lp + m.latent.log_prior, -1), rtol=1e-5, atol=1e-5)


def test_the_coupling_flow_scores_with_the_classes_equally_likely():
    from invgen_lit.data import toy
    set_seed(0)
    x, y = toy("three_moons").sample(200, return_labels=True, seed=0)
    m = ConditionalCouplingFlow(2, n_classes=3, n_layers=2, hidden=(16, 16)).fit(x, y, steps=10, progress=False)
    p = torch.stack([m.log_prob(x[:7], k).exp() for k in range(3)], -1).mean(-1)
    torch.testing.assert_close(m.score(x[:7]), -p.log(), rtol=1e-4, atol=1e-4)
