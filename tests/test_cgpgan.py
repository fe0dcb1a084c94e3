"Tests for invgen_lit.cgpgan: Eq. 45 and 48, the prior's guard, Algorithm 5's losses, the API, bad input."
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from invgen_lit.cgpgan import CGPGAN, CategoricalInfoGAN, ElasticInfoGAN, argmax_onehot, classifier_gradient_penalty, prob_normalize
from invgen_lit.data import GaussianClusters

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = dict(hidden=(16, 16), batch_size=32)


@pytest.fixture(scope="module")
def X():
    return GaussianClusters().sample(1000, seed=0)


def test_prob_normalize_makes_the_batch_average_uniform():
    c = torch.softmax(torch.randn(50, 7) * 4, 1)
    n = prob_normalize(c)
    torch.testing.assert_close(n.mean(0), torch.full((7,), 1 / 7))
    torch.testing.assert_close(n.sum(1), torch.ones(50))
    torch.testing.assert_close(n - c, (n - c)[:1].expand_as(c))          # one shift for the whole batch
    with pytest.raises(ValueError, match="argument 'c'"): prob_normalize(torch.ones(5))


def test_argmax_onehot():
    assert torch.equal(argmax_onehot(torch.tensor([[0.2, 0.5, 0.3], [0.9, 0.05, 0.05]])), torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))


class _Logistic(nn.Module):
    def __init__(self, a): super().__init__(); self.a = nn.Parameter(torch.tensor(a))
    def forward(self, x): return torch.cat([torch.zeros_like(x), self.a * x], 1)


def test_gradient_penalty_closed_form_and_its_gradient_flattens_q():
    x, c = torch.linspace(-2, 2, 11)[:, None], F.one_hot(torch.arange(11) % 2, 2).float()
    Q = _Logistic(3.0)
    p = torch.softmax(Q(x), 1)
    pc = (p * c).sum(1)
    want = (2 * (1 - pc) * p[:, 0] * p[:, 1] * 3.0).pow(2).mean()
    got = classifier_gradient_penalty(Q, x, c)
    torch.testing.assert_close(got, want)
    got.backward()                                                       # differentiable in Q's weights (create_graph)
    assert Q.a.grad is not None and Q.a.grad > 0                         # lowering the slope lowers the penalty here


def test_prior_stays_uniform_while_normalising_then_moves(X):
    m = CGPGAN(2, n_categories=4, normalize_steps=3, prior_decay=0.5, **TINY)
    one = F.one_hot(torch.zeros(64, dtype=torch.long), 4).float()
    for _ in range(3):
        m.update_prior(m.real_conditions(one)[0]); m.global_step += 1
    torch.testing.assert_close(m.prior, torch.full((4,), 0.25))          # the guard against early collapse
    m.update_prior(m.real_conditions(one)[0])
    assert m.prior[0] > 0.6 and float(m.prior.sum()) == pytest.approx(1.0)


def test_training_keeps_the_prior_a_distribution_and_uniform_early(X):
    torch.manual_seed(0)
    m = CGPGAN(2, n_categories=5, normalize_steps=100, **TINY).fit(X, steps=20, progress=False)
    torch.testing.assert_close(m.prior, torch.full((5,), 0.2), atol=1e-5, rtol=0)
    assert {"d_adv", "cls", "cgp", "g_adv", "r2"} <= set(m.history.df.columns)
    m2 = CGPGAN(2, n_categories=5, normalize_steps=0, prior_decay=0.9, **TINY).fit(X, steps=20, progress=False)
    assert float(m2.prior.sum()) == pytest.approx(1.0, abs=1e-5) and (m2.prior >= 0).all()


def test_generator_loss_has_no_classification_term(X, monkeypatch):
    "Eq. 44: CGPGAN's generator sees only the CAGAN loss; InfoGAN's also the classifier's (Sec. 2.4's conflict)."
    torch.manual_seed(0)
    m = CGPGAN(2, n_categories=3, **TINY)
    q_before = [p.clone() for p in m.Q.parameters()]
    calls = []
    orig = m.Q.forward
    monkeypatch.setattr(m.Q, "forward", lambda x: (calls.append(x.requires_grad), orig(x))[1])
    m.train_step(X[:32])
    assert len(calls) == 3                      # Q on real rows, on fakes, and inside the penalty; never in the G step
    assert any(not torch.equal(a, b) for a, b in zip(q_before, m.Q.parameters()))


@pytest.mark.parametrize("codebook", [False, True])
def test_api_and_save_load(X, codebook, tmp_path):
    torch.manual_seed(0)
    m = CGPGAN(2, n_categories=4, codebook=codebook, code_dim=3, **TINY).fit(X, steps=10, progress=False)
    assert m.sample(6).shape == (6, 2) and m.predict(X[:7]).shape == (7,) and m.predict_proba(X[:3]).shape == (3, 4)
    z, c = torch.randn(4, 2), torch.tensor([0, 1, 2, 3])
    back = CGPGAN.load(m.save(tmp_path / "m.pt"))
    torch.testing.assert_close(back.decode(z, c), m.decode(z, c))
    torch.testing.assert_close(back.prior, m.prior)
    assert (m.codebook is not None) == codebook


def test_infogan_keeps_its_prior_and_trains_g_on_the_classifier(X):
    torch.manual_seed(0)
    m = CategoricalInfoGAN(2, 4, prior=[0.1, 0.2, 0.3, 0.4], **TINY).fit(X, steps=10, progress=False)
    torch.testing.assert_close(m.prior, torch.tensor([0.1, 0.2, 0.3, 0.4]))
    assert "g_cls" in m.history.df.columns
    counts = torch.bincount(m.sample_categories(20_000, torch.Generator().manual_seed(0)), minlength=4) / 20_000
    torch.testing.assert_close(counts, torch.tensor([0.1, 0.2, 0.3, 0.4]), atol=0.01, rtol=0)


def test_bad_input(X):
    with pytest.raises(ValueError, match="argument 'n_categories'"): CGPGAN(2, n_categories=1)
    with pytest.raises(ValueError, match="argument 'lambda_cgp'"): CGPGAN(2, lambda_cgp=-0.1)
    with pytest.raises(ValueError, match="argument 'prior_decay'"): CGPGAN(2, prior_decay=1.5)
    m = CGPGAN(2, n_categories=3, **TINY)
    with pytest.raises(ValueError, match="argument 'x'"): m.predict(torch.zeros(4, 3))        # data of the wrong width
    with pytest.raises(ValueError, match="argument 'X'"): m.fit(torch.zeros(10, 3), steps=1, progress=False)
    with pytest.raises(ValueError, match="argument 'c'"): m.decode(torch.randn(2, 2), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="argument 'prior'"): CategoricalInfoGAN(2, 3, prior=[0.5, 0.6, -0.1])


def test_codebook_reads_probabilities_as_a_mixture_of_pages():
    m = CGPGAN(2, n_categories=3, codebook=True, code_dim=5, **TINY)
    z, ids = torch.randn(4, 2), torch.tensor([0, 2, 1, 2])
    hard = m._g_input(z, ids)
    torch.testing.assert_close(hard, m._g_input(z, F.one_hot(ids, 3).float()))   # one-hot probabilities = the page itself
    torch.testing.assert_close(hard[:, 2:], m.codebook.weight[ids])
    mix = m._g_input(z[:1], torch.tensor([[0.5, 0.5, 0.0]]))
    torch.testing.assert_close(mix[0, 2:], 0.5 * (m.codebook.weight[0] + m.codebook.weight[1]))


def test_elastic_infogan_learns_its_prior_through_gumbel_softmax(X, tmp_path):
    torch.manual_seed(0)
    m = ElasticInfoGAN(2, 4, temperature=0.5, prior_lr=0.05, **TINY)
    codes = m.draw_codes(200)
    assert codes.requires_grad and torch.allclose(codes.sum(1), torch.ones(200))   # relaxed one-hot, differentiable
    codes[:, 0].sum().backward()
    assert m.prior_logits.grad is not None and m.prior_logits.grad.abs().sum() > 0
    m.prior_logits.grad = None
    m.fit(X, steps=30, progress=False)
    assert not torch.allclose(m.prior, torch.full((4,), 0.25))                   # the prior moved with G's loss
    torch.testing.assert_close(m.prior, torch.softmax(m.prior_logits.detach(), 0))
    assert m.optimizers["G"].param_groups[1]["lr"] == 0.05
    back = ElasticInfoGAN.load(m.save(tmp_path / "e.pt"))
    torch.testing.assert_close(back.prior, m.prior)
    for bad, name in ((dict(temperature=0.0), "temperature"), (dict(prior_lr=-1.0), "prior_lr"), (dict(n_categories=1), "n_categories")):
        with pytest.raises(ValueError, match=f"argument '{name}'"): ElasticInfoGAN(2, **({"n_categories": 4} | bad), **TINY)
