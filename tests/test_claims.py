"""The foundation's claims at the `docs` budget (the committed notebooks' budget), run by CI as marked tests.

`pytest -m claim tests` runs only these; each takes one to two minutes on one CPU core.
"""
import pytest
import torch

from invgen_lit.core import set_seed
from invgen_lit.data import GaussianClusters
from invgen_lit.gan import GAN, log_prob_threshold, low_density_fraction
from invgen_lit.metrics import energy_distance

pytestmark = [pytest.mark.claim, pytest.mark.usefixtures("one_thread")]


def test_vanilla_gan_draws_bridges_between_gaussian_clusters():
    """Cho 2025, Sec. 2.1.2 / Fig. 1, notebook 04's rule at a CI budget: over 3 seeds (batched replicas), the GAN's fraction of
    samples below the data's 0.1 % density quantile exceeds the data's own fraction by more than 0.001 (paired per seed,
    95 % t-interval), i.e. the GAN puts more than twice the data's mass between the clusters."""
    from invgen_lit.core import Claim, fit_replicas, greater
    toy = GaussianClusters()
    tau = log_prob_threshold(toy.log_prob, toy.sample(1_000_000, seed=2), q=0.001)
    seeds = [1, 2, 3]
    gans = fit_replicas(lambda: GAN(2, latent_dim=2, loss="ns", hidden=(128, 128, 128, 128)), seeds, toy.sample(20_000, seed=1),
                        steps=1500, verbose=False)
    assert gans.path == "batched" and all(m.global_step == 1500 for m in gans)
    gan_frac = [low_density_fraction(m.sample(100_000, generator=torch.Generator().manual_seed(1000 + s)), toy.log_prob, tau)
                for s, m in zip(seeds, gans)]
    true_frac = [low_density_fraction(toy.sample(100_000, seed=2000 + s), toy.log_prob, tau) for s in seeds]
    claim = Claim("Cho 2025, Sec. 2.1.2 / Fig. 1", "a GAN with only a continuous latent draws bridges between the clusters",
                  values={"GAN": gan_frac, "data": true_frac}, seeds=seeds, rule=greater("GAN", "data", by=0.001))
    assert claim.verdict == "holds", claim.measured()


def _split_digits():
    from invgen_lit.data import digits
    X, _ = digits(16)
    perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(0))
    cut = int(0.8 * len(X))
    return X[perm[:cut]], X[perm[cut:]]


def test_random_generator_reversal_cuts_the_loss_tenfold_quickly():
    "Kilcher 2017, Sec. 2.2 / Fig. 1: reversal through a random conv generator (latent 128) cuts the MSE about 10x within 50 steps, over 5 seeds (notebook 10's rule: not fails)."
    import math
    from invgen_lit.core import Claim, greater
    from invgen_lit.nn import ConvGenerator
    from invgen_lit.reversal import reverse
    _, X_test = _split_digits()
    seeds, cut = [0, 1, 2, 3, 4], []
    for s in seeds:          # each seed: new weights, new held-out digits, new starting codes
        set_seed(s)
        G = ConvGenerator(128, (1, 16, 16), channels=32).requires_grad_(False)
        pick = torch.randperm(len(X_test), generator=torch.Generator().manual_seed(s))[:64]
        curve = reverse(G, X_test[pick], steps=50, lr=10.0, generator=torch.Generator().manual_seed(1000 + s)).losses.mean(1)
        cut.append(math.log10(curve[0] / curve[-1]))
    c = Claim("Kilcher 2017, Sec. 2.2", "10x within 50 steps", values={"log10 loss cut": cut}, seeds=seeds, rule=greater("log10 loss cut", by=1.0))
    # the docs run finds the tenfold mark at about step 50 (the row is inconclusive there): the test keeps the verdict from
    # turning to 'fails' and the cut above 10^0.75 (5.6x) for the whole interval
    mean, lo, hi = c.summary()["log10 loss cut"]
    assert c.verdict in ("holds", "inconclusive") and lo > 0.75, (cut, c.summary())


def test_kdegan_leads_a_vanilla_gan_in_sample_quality():
    "Kilcher 2017, Sec. 4 / Fig. 5: same networks, data and seed, equal steps: the KDE-GAN's FDD over training (geometric mean past the first fifth) against the vanilla GAN's, 3 seeds, paired (notebook 10's rule at 600 steps; not fails)."
    import numpy as np
    from invgen_lit.core import Callback, Claim, less
    from invgen_lit.metrics import digit_features, frechet_digit_distance
    from invgen_lit.reversal import KDEGAN
    X_train, X_test = _split_digits()
    net = digit_features(16)

    class FDD(Callback):
        def after_step(self, loop):
            if loop.model.global_step % 100 == 0:
                loop.model.history.log(loop.model.global_step, fdd=frechet_digit_distance(loop.model.sample(1000), X_test, net))

    seeds, late = [0, 1, 2], {"KDE-GAN": [], "vanilla": []}
    for s in seeds:
        for name, prior in (("vanilla", "normal"), ("KDE-GAN", "kde")):
            set_seed(s)
            m = KDEGAN((1, 16, 16), latent_dim=32, prior=prior).fit(X_train, steps=600, seed=s, callbacks=[FDD()], progress=False)
            fdd = np.array([r["fdd"] for r in m.history.rows if "fdd" in r and r["step"] >= 0.2 * 600])
            late[name].append(float(np.exp(np.log(fdd).mean())))
    c = Claim("Kilcher 2017, Sec. 4 / Fig. 5", "KDE-GAN leads", values=late, seeds=seeds, rule=less("KDE-GAN", "vanilla"))
    # the docs run (1500 steps) finds the KDE-GAN ahead on average with an interval that still reaches 0 (inconclusive);
    # at this budget the test keeps the verdict from turning to 'fails' (the KDE-GAN significantly worse)
    assert c.verdict in ("holds", "inconclusive"), (late, c.summary())


def test_invgan_likelihood_tracks_the_6d_ground_truth_better_than_a_flow():
    "Ren 2020, Sec. 4.1 / Fig. 2, notebook 20's rule and seeds: over 3 seeds, InvGAN's Eq. 4 ranks 6-D test points like the true log-density better than an MLE coupling flow of comparable size (paired Spearman difference, 95 % interval above 0; 4,000 steps x batch 64 each)."
    from scipy.stats import spearmanr
    from invgen_lit.core import Claim, fit_replicas, greater
    from invgen_lit.data import Manifold6D
    from invgen_lit.invgan import InvGAN, RealNVP
    m6, seeds = Manifold6D(), [1, 2, 3]
    X = m6.sample(50_000, seed=0)
    X_test, Z_test = m6.sample(2000, return_z=True, seed=1)
    truth = m6.log_prob_from_z(Z_test.double()).float().numpy()
    make = {"InvGAN": lambda: InvGAN(6, 2, hidden=(30, 30)), "RealNVP": lambda: RealNVP(6, n_layers=4, hidden=(24, 24))}
    fits = {k: fit_replicas(mk, seeds, X, steps=4000, verbose=False) for k, mk in make.items()}
    rho = {k: [spearmanr(m.log_prob(X_test).detach().numpy(), truth).statistic for m in ms] for k, ms in fits.items()}
    claim = Claim("Ren 2020, Sec. 4.1 / Fig. 2", "InvGAN ranks the 6-D points like the truth better than a flow", values=rho, seeds=seeds,
                  rule=greater("InvGAN", "RealNVP"))
    assert claim.verdict == "holds", claim.measured()


def test_hutchinson_trace_cost_stays_flat_while_the_exact_one_grows():
    "Lee 2021, p. 5 (FFJORD), notebook 30's two cost rows: Hutchinson's step cost grows < 3x from D = 8 to 128, the exact one costs > 10x Hutchinson's at D = 128; 5 interleaved repeats (the notebook's 3, plus 2 that keep the interval narrow on a busy machine; about 1 min)."
    from invgen_lit.core import Claim, greater, less
    from invgen_lit.ode import CNF, time_call
    repeats, cost = [1, 2, 3, 4, 5], {}
    for r in repeats:                 # interleaved, so that a slow spell of a shared machine hits every setting alike
        for D in (8, 128):
            x = torch.randn(256, D, generator=torch.Generator().manual_seed(100 * r + D))
            for div in ("exact", "hutchinson"):
                set_seed(r)
                m = CNF(D, method="rk4", step_size=0.25, divergence=div)
                calls = 1 if (div, D) == ("exact", 128) else 5       # the slow setting once, the fast ones median of 5
                cost[r, D, div] = time_call(lambda: m.train_step(x), repeat=calls, warmup=int(r == repeats[0]))
    flat = Claim("Lee 2021, p. 5", "Hutchinson's cost is nearly flat in D", values={"Hutchinson": [cost[r, 128, "hutchinson"] / cost[r, 8, "hutchinson"] for r in repeats]},
                 seeds=repeats, rule=less("Hutchinson", by=3))
    grows = Claim("Lee 2021, p. 5", "the exact divergence costs far more at D = 128", values={"ratio": [cost[r, 128, "exact"] / cost[r, 128, "hutchinson"] for r in repeats]},
                  seeds=repeats, rule=greater("ratio", by=10))
    assert flat.verdict == "holds", flat.measured()
    assert grows.verdict == "holds", grows.measured()


def test_two_moons_cnf_reaches_the_true_density():
    "Notebook 30's density row at the docs budget: over 3 seeds (data, weights, batch order), the held-out NLL (dopri5) is within 0.15 nats of the true density's, the whole 95 % interval below."
    from invgen_lit.core import Claim, less
    from invgen_lit.data import toy
    from invgen_lit.ode import CNF
    data, seeds, gaps = toy("two_moons"), [1, 2, 3], []
    for s in seeds:
        X, x = data.sample(20_000, seed=s), data.sample(2_000, seed=1000 + s)
        set_seed(s)
        m = CNF(2, hidden=(64, 64), method="rk4", step_size=0.5, lr=1e-2).fit(X, steps=1000, batch_size=512, seed=s, progress=False)
        m.flow.solver.update(method="dopri5", rtol=1e-5, atol=1e-5, step_size=None)   # the ODE's density, not the 2-step map's
        gaps.append((-m.log_prob(x).mean() + data.log_prob(x).mean()).item())
    claim = Claim("Lee 2021, p. 5", "a CNF learns the density of two_moons", values={"gap": gaps}, seeds=seeds, rule=less("gap", by=0.15))
    assert claim.verdict == "holds", claim.measured()


def test_roulette_logdet_is_unbiased_and_truncation_is_not():
    "Xu 2022a cites Residual Flows (Chen et al.): the Russian-roulette power series is unbiased; a 1-term cut is biased."
    from invgen_lit.iresnet import ContractionBranch, exact_residual_logdet, power_series_logdet
    set_seed(18)
    f = ContractionBranch(8, c=0.9)  # at its Lipschitz bound: the series converges slowly, so truncation shows
    x = 0.3 * torch.randn(64, 8)
    _, exact = exact_residual_logdet(f, x, create_graph=False)
    def bias_and_se(**kw):
        g = torch.Generator().manual_seed(0)  # one call per repeat: each roulette call draws its own length K
        est = torch.stack([power_series_logdet(f, x, generator=g, create_graph=False, **kw)[1] for _ in range(400)])
        return (est.mean(0) - exact).mean().item(), (est.var(0).mean() / (400 * 64)).sqrt().item()
    from invgen_lit.core import Claim, greater, less
    b, se = bias_and_se(roulette=True, n_exact=2, p=0.05)  # c < 1 - p: finite variance
    unbiased = Claim("Chen et al. 2019, Sec. 3", "Russian roulette gives an unbiased log-det",
                     values={"|bias| / s.e.": [abs(b) / se]}, rule=less("|bias| / s.e.", by=4))
    assert unbiased.verdict == "holds", unbiased.measured()
    b1, se1 = bias_and_se(n_terms=1)
    biased = Claim("Chen et al. 2019, Sec. 3", "a truncated power series is biased",
                   values={"|bias| / s.e.": [abs(b1) / se1]}, rule=greater("|bias| / s.e.", by=4))
    assert biased.verdict == "holds" and abs(b1) > 0.01, (biased.measured(), b1)


def test_transport_flow_paths_are_straighter_than_spectral_normalisation_over_seeds():
    """Xu 2022a, W2 regularization, "benefits over spectral normalization: smooth trajectory" (notebook 40's row at a CI
    budget): over 3 paired seeds, L = 10 blocks on 8 Gaussians, the transport-penalised flow (gamma = 10) has a smaller
    median path length / chord than the spectral-normalised one (c = 0.9), the whole 95 % interval of the difference below 0."""
    from invgen_lit.core import Claim, fit_replicas, less
    from invgen_lit.data import toy
    from invgen_lit.iresnet import IResNet
    X, x = toy("8gaussians").sample(20_000, seed=0), toy("8gaussians").sample(1000, seed=1)
    seeds, ratio = [1, 2, 3], {}
    for label, kw, parallel in (("transport", dict(gamma=10.0), "auto"), ("spectral norm", dict(lipschitz=0.9, gamma=0.0), "sequential")):
        fits = fit_replicas(lambda: IResNet(2, n_blocks=10, **kw), seeds, X, steps=400, parallel=parallel, verbose=False)
        ratio[label] = []
        for m in fits:
            traj = m.flow.trajectory(x)
            steps = traj.diff(dim=0).norm(dim=-1)
            ratio[label].append((steps.sum(0) / (traj[-1] - traj[0]).norm(dim=-1).clamp_min(1e-6)).median().item())
    claim = Claim("Xu 2022a, Method", "smooth trajectory", values=ratio, seeds=seeds, rule=less("transport", "spectral norm"))
    assert claim.verdict == "holds", claim.measured()


def test_chebnet_cannot_generate_what_l3net_can_on_the_three_node_path():
    """Xu 2022a, small-graph experiment, notebook 41's claim at a CI budget: under Y = (0, 1, 0), Chebnet's draws keep
    |corr(X0,X1) - corr(X2,X1)| at sampling noise on every seed (symmetry), and L3Net's asymmetry exceeds Chebnet's,
    paired over 3 seeds (training graphs, weights and data order from the seed). The notebook's margin (half the true
    asymmetry) needs its docs budget; at 500 steps per seed (~90 s) the rule is the same with margin 0."""
    from invgen_lit.core import Claim, greater
    from invgen_lit.ignn import ConditionalFlow
    A = torch.tensor([[0., 1, 0], [1, 0, 1], [0, 1, 0]])
    def data(n, seed):
        g = torch.Generator().manual_seed(seed)
        Y = torch.randint(0, 2, (n, 3), generator=g)
        S = 0.09 * torch.tensor([[1.0, 0.8, 0.0], [0.8, 1.0, 0.0], [0.0, 0.0, 1.0]])
        eps = torch.einsum("uv,nvd->nud", torch.linalg.cholesky(S), torch.randn(n, 3, 2, generator=g))
        return torch.tensor([[-0.75, 0.0], [0.75, 0.0]])[Y] + eps, Y
    def gap(x):
        c = torch.corrcoef(x[:, :, 0].T)
        return abs(c[0, 1].item() - c[2, 1].item())
    y_sym = torch.tensor([0, 1, 0])
    X_ref, Y_ref = data(20_000, 100)
    truth = X_ref[(Y_ref == y_sym).all(1)]
    seeds, gaps = [1, 2, 3], {"chebnet": [], "l3net": []}
    for s in seeds:
        X, Y = data(6000, s)
        for kind in gaps:
            set_seed(s)
            m = ConditionalFlow((3, 2), n_classes=2, adjacency=A, layer=kind, hidden=(16, 16), n_blocks=5, gamma=1.0, lr=3e-3)
            m.fit(X, Y, steps=500, batch_size=128, seed=s, progress=False)
            set_seed(500 + s)
            gaps[kind].append(gap(m.sample(len(truth), y=y_sym.expand(len(truth), 3))))
    c = Claim("Xu 2022a", "Chebnet lacks expressiveness where L3Net generates correctly", values={"L3Net": gaps["l3net"], "Chebnet": gaps["chebnet"]},
              seeds=seeds, rule=greater("L3Net", "Chebnet"))
    assert max(gaps["chebnet"]) < 0.1, gaps
    assert c.verdict == "holds", (c.summary(), gaps)


def test_acgan_classification_loss_pushes_converged_fakes_off_the_boundary_and_cagan_does_not():
    """Cho 2025, Sec. 3.1, Fig. 3: with fakes distributed like the data, the ACGAN generator loss (original and revised at
    λ = 1 and 100) still pushes fakes near a class boundary away from it (cos > 0.5 with grad log P(y|x)); CAGAN's push is
    under a fifth of theirs. Notebook 50's setting exactly: 4x256 MLPs, 400 discriminator steps (~20 s)."""
    import torch.nn.functional as F
    from invgen_lit.cagan import ACGAN, CAGAN, bayes_posterior
    toy = GaussianClusters()
    X2, y2 = toy.sample(20_000, return_labels=True, seed=0)
    Xf, yf = toy.sample(20_000, return_labels=True, seed=9)
    hidden = (256, 256, 256, 256)
    set_seed(0)
    models = {"orig": ACGAN(2, 4, revised=False, hidden=hidden), "l1": ACGAN(2, 4, lambda_cls=1.0, hidden=hidden),
              "l100": ACGAN(2, 4, lambda_cls=100.0, hidden=hidden), "cagan": CAGAN(2, 4, hidden=hidden)}
    gen = torch.Generator().manual_seed(2)
    for _ in range(400):
        i, j = torch.randint(len(X2), (64,), generator=gen), torch.randint(len(Xf), (64,), generator=gen)
        for m in models.values(): m.discriminator_step(X2[i], m.conditions(y2[i]), Xf[j], m.conditions(yf[j]))
    xe, ye = toy.sample(4000, return_labels=True, seed=11)
    logp = lambda v: bayes_posterior(toy, v).gather(1, ye[:, None]).log()[:, 0]
    grad = torch.stack([(logp(xe + 1e-3 * e) - logp(xe - 1e-3 * e)) / 2e-3 for e in torch.eye(2)], 1)
    near = grad.norm(dim=1) > 0.5
    push = {k: m.generator_push(xe[near], ye[near]) for k, m in models.items()}
    size = {k: float(p.norm(dim=1).mean()) for k, p in push.items()}
    cos = {k: float(F.cosine_similarity(p, grad[near], dim=1).mean()) for k, p in push.items()}
    assert all(cos[k] > 0.5 for k in ("orig", "l1", "l100")), cos
    assert size["cagan"] < 0.2 * min(size[k] for k in ("orig", "l1", "l100")), size


def test_reconstruction_and_energy_scores_catch_far_ood_but_hardly_near_ood():
    """Cho 2025, Sec. 4.3.2, Table 5: the autoencoder's reconstruction score and the classifier's energy score (with and
    without ReAct) separate far-OOD images from the digits much better than near-OOD ones (t = 0.1), and the energy score
    stays close to chance on near OOD (thesis: 51-55). Notebook 52's baselines on one held-out split of 600 digits, at the
    docs budget (AE 18 s, classifier 8 s)."""
    from sklearn.model_selection import train_test_split
    from invgen_lit.data import digits, letters, photo_patches
    from invgen_lit.ood import Autoencoder, Classifier, LRDecay, auroc_table, ood_sets, table_means
    X, y = digits(16)
    tr, te = train_test_split(torch.arange(len(X)), test_size=600, stratify=y, random_state=0)
    set_seed(0); ae = Autoencoder((1, 16, 16)).fit(X[tr], steps=3000, callbacks=[LRDecay()], progress=False)
    set_seed(0); clf = Classifier((1, 16, 16)).fit(X[tr], y[tr], steps=3000, callbacks=[LRDecay()], progress=False)
    x = X[te]
    sets = ood_sets(x, {"letters": letters(600, 16, seed=100), "photo patches": photo_patches(600, 16, seed=100)}, seed=0)
    scores = lambda v: {"AE Rec": ae.score(v), "Energy": clf.energy_score(v), "Energy ReAct": clf.energy_score(v, 1.0, 0.9)}
    means = table_means(auroc_table(scores(x), {k: scores(v) for k, v in sets.items()}))
    assert clf.accuracy(x, y[te]) > 0.95                                       # Table 6: trained properly
    assert (means.loc["far"] > means.loc["near"] + 15).all(), means
    assert means.loc["near", ["Energy", "Energy ReAct"]].max() < 60, means
    assert means.loc["far", "AE Rec"] > 95, means


def test_classifier_gradient_penalty_moves_the_boundary_from_a_narrow_dip_to_a_wide_valley():
    "Cho 2025, Sec. 3.5, Fig. 6 (notebook 54): self-labelling logistic Q; without the penalty b stops in the dip near 2.1."
    import math
    import torch.nn.functional as F
    from torch import nn
    from invgen_lit.cgpgan import classifier_gradient_penalty
    W, MU, SD = torch.tensor([0.40, 0.08, 0.08, 0.44]), torch.tensor([0.0, 1.8, 2.4, 3.6]), torch.tensor([0.45, 0.12, 0.12, 0.45])

    class Q(nn.Module):
        def __init__(self):
            super().__init__(); self.log_a, self.b = nn.Parameter(torch.tensor(math.log(3.0))), nn.Parameter(torch.tensor(2.25))
        def forward(self, x): return torch.cat([torch.zeros_like(x), self.log_a.exp() * (x - self.b)], 1)

    def boundary(lam, steps=1500):
        g, q = torch.Generator().manual_seed(0), Q()
        opt = torch.optim.Adam(q.parameters(), lr=1e-2)
        for _ in range(steps):
            k = torch.multinomial(W, 512, replacement=True, generator=g)
            x = (MU[k] + SD[k] * torch.randn(512, generator=g))[:, None]
            with torch.no_grad(): c = q(x).argmax(1)
            loss = F.cross_entropy(q(x), c) + lam * classifier_gradient_penalty(q, x, F.one_hot(c, 2).float())
            opt.zero_grad(); loss.backward(); opt.step()
        return float(q.b), float(q.log_a.exp())

    (b0, a0), (b10, a10) = boundary(0.0), boundary(10.0)
    assert 1.95 < b0 < 2.25, b0            # the narrow dip
    assert b10 < 1.6, b10                  # the wide valley
    assert a0 > 5 * a10, (a0, a10)         # the penalty keeps the classifier soft


def test_an_exact_inverse_reconstructs_where_a_learned_encoder_only_approximates():
    "Seeds 000/003 vs 004, notebook 99's inversion arena: a flow's encode/decode invert each other to float precision on the 6-D manifold; DLSGAN's encoder does not (10 s)."
    from invgen_lit.arena import fit_models, inversion_arena
    from invgen_lit.data import Manifold6D
    from invgen_lit.dlsgan import DLSGAN
    from invgen_lit.invgan import RealNVP
    m6 = Manifold6D()
    X, X_test = m6.sample(5000, seed=0), m6.sample(500, seed=1)
    models = fit_models({"flow": lambda: RealNVP(6).fit(X, steps=500, progress=False),
                         "dlsgan": lambda: DLSGAN(6, 2).fit(X, steps=500, batch_size=64, progress=False)}, verbose=False)
    table = inversion_arena(models, X_test, n_fake=500)
    flow, gan = table.loc["flow"], table.loc["dlsgan"]
    assert flow["fake rec. (FVU of z)"] < 1e-6 and flow["real rec. (FVU of x)"] < 1e-6, table
    assert gan["fake rec. (FVU of z)"] > 1e-3 and gan["real rec. (FVU of x)"] > 1e-3, table


def test_near_ood_is_harder_than_far_ood_for_the_classical_detectors():
    "Cho 2025, Sec. 4.3.2 / Table 5's pattern, notebook 99's OOD arena: on digits, Isolation Forest and the One-Class SVM separate far OOD sets much better than 10 % mixes (2 s)."
    from sklearn.ensemble import IsolationForest
    from sklearn.svm import OneClassSVM
    from invgen_lit.arena import SklearnDetector, ood_arena
    from invgen_lit.data import digits, letters, photo_patches
    from invgen_lit.ood import ood_sets
    D, _ = digits(16)
    perm = torch.randperm(len(D), generator=torch.Generator().manual_seed(0))
    D_test, D_train = D[perm[:300]], D[perm[300:]]
    detectors = {"IF": SklearnDetector(IsolationForest(random_state=0)).fit(D_train),
                 "OCSVM": SklearnDetector(OneClassSVM(gamma="scale", nu=0.1)).fit(D_train)}
    sets = ood_sets(D_test, {"letters": letters(300, seed=1), "photos": photo_patches(300, seed=1)}, seed=0)
    table = ood_arena(detectors, D_test, sets)
    far, near = table.loc[("mean", "far")], table.loc[("mean", "near")]
    assert (far > near + 10).all(), table
