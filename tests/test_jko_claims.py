"""Xu 2022b (JKO-iFlow) claims at the docs budget, as marked tests (`pytest -m claim tests`)."""
import math

import pytest
import torch

from invgen_lit.core import set_seed
from invgen_lit.jko import JKOFlow
from invgen_lit.ode import CNF, peak_saved_bytes

pytestmark = [pytest.mark.claim, pytest.mark.usefixtures("one_thread")]


def _exact_jko_scales(s0: float, h: float, steps: int) -> list[float]:
    "Exact JKO iterates for p_k = N(0, s_k^2), p_Z = N(0, 1): the positive root of (1 + 1/h) s^2 - (s_k/h) s - 1 = 0."
    out, s = [], s0
    for _ in range(steps):
        a = 1 + 1 / h
        s = (s / h + math.sqrt((s / h) ** 2 + 4 * a)) / (2 * a)
        out.append(s)
    return out


def test_trained_blocks_are_jko_steps():
    "Xu 2022b, 'Method': minimising the step-wise objective of a block solves the JKO step (1-D Gaussian, exact answer)."
    set_seed(0)
    X = 3.0 * torch.randn(8000, 1)
    m = JKOFlow(1, hidden=(32, 32), h=1.0, max_blocks=2, tol=0.0, step_size=0.5, warm_start=False)
    m.fit(X, steps=150, progress=False)
    exact = _exact_jko_scales(3.0, 1.0, 2)
    model = [m.push(X, upto=k + 1).std().item() for k in range(2)]
    for e, s in zip(exact, model):
        assert abs(s - e) / e < 0.03, (exact, model)


def test_block_wise_memory_is_flat_while_end_to_end_grows():
    "Xu 2022b, 'Motivation': training block L costs the memory of one block; a CNF over L blocks' time costs L times more."
    x = torch.randn(512, 2)
    def jko_peak(L):
        set_seed(0)
        return peak_saved_bytes(lambda: JKOFlow(2, hidden=(64, 64, 64), max_blocks=L, tol=0.0).fit(x, steps_per_block=1, progress=False))[1]
    def cnf_peak(L):
        c = CNF(2, hidden=(64, 64, 64), T=float(L), method="rk4", step_size=0.5)
        return peak_saved_bytes(lambda: c.train_step(x))[1]
    assert jko_peak(4) <= 1.05 * jko_peak(1)
    assert cnf_peak(4) > 3 * cnf_peak(1)


def test_the_stopping_rule_chooses_the_blocks_the_exact_jko_iterates_predict():
    "Xu 2022b, 'Method' (benefits): on a 1-D Gaussian the rule stops where the exact JKO movements fall below the tolerance."
    tol, s0, h = 1e-2, 3.0, 1.0
    exact = [s0] + _exact_jko_scales(s0, h, 10)
    moves = [(a - b) ** 2 for a, b in zip(exact, exact[1:])]
    predicted = next(k + 2 for k in range(len(moves) - 1) if moves[k] < tol and moves[k + 1] < tol)   # patience 2
    chosen = []
    for seed in (1, 2, 3):
        set_seed(seed)
        X = s0 * torch.randn(8000, 1)
        m = JKOFlow(1, hidden=(32, 32), h=h, max_blocks=10, tol=tol, step_size=0.5, warm_start=False)
        chosen.append(m.fit(X, steps_per_block=150, progress=False, seed=seed).n_blocks_)
    assert all(abs(c - predicted) <= 1 for c in chosen), (chosen, predicted)
