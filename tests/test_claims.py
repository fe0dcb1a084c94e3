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


def test_vanilla_gan_draws_bridges_between_gaussian_clusters(monkeypatch):
    "Seed 004, Sec. 2.1.2 / Fig. 1: a GAN with a continuous latent puts mass between the clusters, far above the data's."
    monkeypatch.setenv("INVGEN_PROFILE", "docs")
    toy = GaussianClusters()
    tau = log_prob_threshold(toy.log_prob, toy.sample(1_000_000, seed=2), q=0.001)
    held_out = toy.sample(20_000, seed=3)
    set_seed(0)
    gan = GAN(2, latent_dim=2, loss="ns").fit(toy.sample(20_000, seed=1), progress=False)
    assert gan.global_step == GAN.steps_by_profile["docs"]
    fake = gan.sample(20_000)
    true_frac, gan_frac = low_density_fraction(held_out, toy.log_prob, tau), low_density_fraction(fake, toy.log_prob, tau)
    # the GAN has learnt the clusters as far as a global distance can tell ...
    assert energy_distance(fake[:2000], held_out[:2000]) < 0.02
    # ... but its samples sit in the deepest low-density region, between the clusters, far more often than true ones
    assert abs(true_frac - 0.001) < 0.0007
    assert gan_frac > 3 * true_frac, (gan_frac, true_frac)
