"""Neural ODEs and CNFs (notebook 30): solves, inverse, adjoint, log-density, Hutchinson, the CNF API, bad input."""
import pytest
import torch
from torch import nn

from invgen_lit.core import CheckpointError, set_seed
from invgen_lit.data import toy
from invgen_lit.density import standard_normal_log_prob
from invgen_lit.nn import ODEFunc
from invgen_lit.ode import (CNF, ContinuousFlow, NeuralODE, ODESolveError, basis_probes, odesolve, peak_saved_bytes,
                            time_call)

pytestmark = pytest.mark.usefixtures("one_thread")


class Linear(nn.Module):
    def __init__(self, A): super().__init__(); self.A = nn.Parameter(A)
    def forward(self, t, z): return z @ self.A.T


class Blowup(nn.Module):
    def forward(self, t, z): return z ** 2


def test_linear_ode_matches_matrix_exponential():
    A = torch.tensor([[-0.2, -1.0], [1.0, 0.1]], dtype=torch.float64)
    z0 = torch.randn(32, 2, dtype=torch.float64)
    exact = z0 @ torch.linalg.matrix_exp(2.0 * A).T
    for method, kw in [("dopri5", dict(rtol=1e-9, atol=1e-9)), ("rk4", dict(step_size=0.01))]:
        z1 = odesolve(Linear(A), z0, torch.tensor([0.0, 2.0], dtype=torch.float64), method=method, **kw)[-1]
        assert (z1 - exact).abs().max() < 1e-7


def test_solver_failure_is_a_clear_error():
    with pytest.raises(ODESolveError, match="underflow in dt.*max_steps"):
        odesolve(Blowup(), torch.ones(3, 1), torch.tensor([0.0, 2.0]), max_steps=500)
    with pytest.raises(ODESolveError, match="max_num_steps|underflow"):
        odesolve(Blowup(), torch.ones(3, 1), torch.tensor([0.0, 0.999]), max_steps=5)


@pytest.mark.parametrize("kw, match", [(dict(method="rk5"), "method"), (dict(method="rk4"), "step_size"),
                                       (dict(rtol=0), "rtol"), (dict(max_steps=0), "max_steps")])
def test_odesolve_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        odesolve(Linear(torch.eye(2)), torch.randn(3, 2), torch.tensor([0.0, 1.0]), **kw)


def test_odesolve_bad_times_and_state():
    with pytest.raises(ValueError, match="'t'"):
        odesolve(Linear(torch.eye(2)), torch.randn(3, 2), torch.tensor([0.0, 1.0, 0.5]))
    with pytest.raises(ValueError, match="finite"):
        odesolve(Linear(torch.eye(2)), torch.tensor([[float("nan"), 0.0]]), torch.tensor([0.0, 1.0]))


def test_neural_ode_inverse_round_trip_and_trajectory():
    set_seed(0)
    node = NeuralODE(ODEFunc(3, (16,)), rtol=1e-8, atol=1e-8).double()
    z0 = torch.randn(50, 3, dtype=torch.float64)
    with torch.no_grad():
        assert (node.inverse(node(z0)) - z0).abs().max() < 1e-6
        traj = node.trajectory(z0, 5)
    assert traj.shape == (5, 50, 3) and torch.equal(traj[0], z0)
    with pytest.raises(ValueError, match="t0"):
        NeuralODE(ODEFunc(2), t0=1.0, t1=1.0)
    with pytest.raises(TypeError, match="func"):
        NeuralODE(lambda t, z: z)


def test_adjoint_and_direct_gradients_agree_and_adjoint_memory_is_flat():
    set_seed(0)
    x = torch.randn(64, 2)
    grads, peaks = {}, {}
    for adjoint in (False, True):
        for h in (0.25, 0.05):
            set_seed(0)
            m = CNF(2, hidden=(16, 16), method="rk4", step_size=h, adjoint=adjoint)
            def step():
                m.zero_grad(); (-m.flow.log_prob(x).mean()).backward()
            _, peaks[adjoint, h] = peak_saved_bytes(step)
            grads[adjoint, h] = [p.grad.clone() for p in m.parameters()]
    for a, b in zip(grads[False, 0.05], grads[True, 0.05]):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-5)
    assert peaks[False, 0.05] > 3 * peaks[False, 0.25]
    assert peaks[True, 0.05] < 1.5 * peaks[True, 0.25]
    assert peaks[True, 0.05] < peaks[False, 0.05] / 5


def test_peak_saved_bytes_does_not_change_gradients():
    set_seed(0)
    m = CNF(2, hidden=(8,), method="rk4", step_size=0.5)
    x = torch.randn(16, 2)
    def step():
        m.zero_grad(); (-m.flow.log_prob(x).mean()).backward()
        return [p.grad.clone() for p in m.parameters()]
    plain = step()
    hooked, peak = peak_saved_bytes(step)
    assert peak > 0 and all(torch.equal(a, b) for a, b in zip(plain, hooked))


def test_log_prob_is_the_change_of_variables():
    set_seed(0)
    flow = ContinuousFlow(2, hidden=(16, 16), rtol=1e-8, atol=1e-8).double()
    x = torch.randn(40, 2, dtype=torch.float64)
    xr = x.clone().requires_grad_(True)
    z = flow.encode(xr)
    J = torch.stack([torch.autograd.grad(z[:, k].sum(), xr, retain_graph=True)[0] for k in range(2)], 1)
    expected = standard_normal_log_prob(z.detach()) + torch.linalg.slogdet(J).logabsdet
    assert torch.allclose(flow.log_prob(x).detach(), expected, atol=1e-5)


def test_basis_probes_and_hutchinson_unbiased():
    z = torch.randn(4, 3)
    e = basis_probes(z)
    assert e.shape == (3, 4, 3) and torch.equal(e[1, 2], torch.tensor([0.0, 1.0, 0.0]))
    set_seed(0)
    flow = ContinuousFlow(3, hidden=(16,), method="rk4", step_size=0.25).double()
    x = torch.randn(20, 3, dtype=torch.float64)
    exact = flow.log_prob(x).detach()
    g = torch.Generator().manual_seed(0)
    est = torch.stack([flow.log_prob(x, divergence="hutchinson", generator=g).detach() for _ in range(300)])
    se = est.std(0) / 300 ** 0.5
    assert ((est.mean(0) - exact).abs() < 5 * se + 1e-9).all()
    assert (est.std(0) > 0).any()   # it is an estimate, not the exact value in disguise


def test_cnf_learns_a_gaussian_and_inverts():
    set_seed(0)
    X = torch.randn(4000, 2) * torch.tensor([2.0, 0.5]) + torch.tensor([1.0, -1.0])
    m = CNF(2, hidden=(32, 32), method="rk4", step_size=0.25, lr=1e-2).fit(X, steps=150, progress=False)
    truth = torch.distributions.MultivariateNormal(torch.tensor([1.0, -1.0]), torch.diag(torch.tensor([4.0, 0.25])))
    xt = truth.sample((1000,))
    gap = (-m.log_prob(xt).mean() + truth.log_prob(xt).mean()).item()
    assert 0 <= gap + 0.05 and gap < 0.15
    assert (m.decode(m.encode(xt)) - xt).abs().max() < 1e-3
    s = m.sample(2000)
    assert s.shape == (2000, 2) and (s.mean(0) - torch.tensor([1.0, -1.0])).abs().max() < 0.2
    assert {"nll", "kinetic", "nfe"} <= set(m.history.df.columns) and (m.history.df["nfe"] > 0).all()


def test_kinetic_term_enters_the_loss():
    x = torch.randn(64, 2)
    losses = {}
    for k in (0.0, 1.0):
        set_seed(0)
        m = CNF(2, hidden=(8,), method="rk4", step_size=0.5, kinetic=k)
        logp, ke = m.flow.log_prob(x, return_kinetic=True)
        assert (ke > 0).all()
        losses[k] = (-logp.mean() + k * ke.mean()).item()
    assert losses[1.0] > losses[0.0]


def test_jacobian_term_is_the_integrated_frobenius_norm():
    "The fourth coordinate integrates ||df/dz||_F^2 along the path: against a trapezoid sum of autograd Jacobians."
    set_seed(0)
    flow = ContinuousFlow(2, hidden=(16, 16), method="rk4", step_size=0.01).double()
    x = torch.randn(8, 2, dtype=torch.float64)
    logp, ke, frob = flow.log_prob(x, return_kinetic=True, return_jacobian=True)
    assert torch.allclose(logp, flow.log_prob(x)) and torch.allclose(ke, flow.log_prob(x, return_kinetic=True)[1])
    ts = torch.linspace(1.0, 0.0, 101, dtype=torch.float64)
    path = odesolve(flow.func, x, ts, method="rk4", step_size=0.01)
    sq = []
    for t, z in zip(ts, path):
        z = z.detach().requires_grad_(True)
        f = flow.func(t, z)
        J = torch.stack([torch.autograd.grad(f[:, k].sum(), z, retain_graph=True)[0] for k in range(2)], 1)
        sq.append(J.pow(2).sum((1, 2)))
    trapezoid = torch.trapezoid(torch.stack(sq), dx=0.01, dim=0)
    assert torch.allclose(frob.detach(), trapezoid, rtol=1e-3)


@pytest.mark.parametrize("divergence", ["exact", "hutchinson"])
def test_adjoint_training_step_with_both_regularisers(divergence):
    "The adjoint's backward pass re-runs the augmented dynamics after log_prob returned: probes and the Jacobian term must survive."
    x = torch.randn(32, 2, dtype=torch.float64)
    grads = []
    for adjoint in (False, True):
        set_seed(0)
        m = CNF(2, hidden=(8,), method="rk4", step_size=0.25, divergence=divergence, adjoint=adjoint, kinetic=0.5, jacobian=0.5).double()
        g = torch.Generator().manual_seed(1)
        logp, ke, frob = m.flow.log_prob(x, generator=g, return_kinetic=True, return_jacobian=True)
        (-logp.mean() + 0.5 * ke.mean() + 0.5 * frob.mean()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters()]))
    assert ((grads[0] - grads[1]).abs().max() / grads[0].abs().max()) < 1e-3
    out = m.train_step(x)
    assert {"nll", "kinetic", "jacobian", "nfe"} <= set(out)


def test_cnf_save_load_and_dtype(tmp_path):
    set_seed(0)
    m = CNF(2, hidden=(8,), method="rk4", step_size=0.5).fit(torch.randn(100, 2), steps=3, progress=False)
    m.save(tmp_path / "cnf.pt")
    m2 = CNF.load(tmp_path / "cnf.pt")
    x = torch.randn(10, 2, dtype=torch.float64)   # float64 input is cast to the model's dtype
    assert torch.allclose(m.log_prob(x), m2.log_prob(x))
    from invgen_lit.core import DiagonalGaussian
    with pytest.raises(CheckpointError):
        DiagonalGaussian.load(tmp_path / "cnf.pt")


@pytest.mark.parametrize("kw, err, match", [
    (dict(data_shape=(1, 4, 4)), ValueError, "flatten"), (dict(method="rk4", step_size=None), ValueError, "step_size"),
    (dict(kinetic=-1.0), ValueError, "kinetic"), (dict(jacobian=-1.0), ValueError, "jacobian"), (dict(divergence="approx"), ValueError, "divergence"),
    (dict(probe="uniform"), ValueError, "probe"), (dict(T=0.0), ValueError, "'T'")])
def test_cnf_bad_constructor_arguments(kw, err, match):
    kw = {"data_shape": 2, **kw}
    with pytest.raises(err, match=match):
        CNF(**kw)


def test_cnf_bad_input():
    m = CNF(2, hidden=(8,), method="rk4", step_size=0.5)
    with pytest.raises(ValueError, match="shape"):
        m.log_prob(torch.randn(5, 3))
    with pytest.raises(ValueError, match="'n'"):
        m.sample(0)
    with pytest.raises(ValueError, match="finite"):
        m.encode(torch.tensor([[float("inf"), 0.0]]))
    with pytest.raises(ValueError, match="x"):
        m.fit(torch.randn(1, 2), steps=1, progress=False)


def test_time_call_counts():
    calls = []
    t = time_call(lambda: calls.append(1), repeat=3, warmup=2)
    assert len(calls) == 5 and t >= 0
