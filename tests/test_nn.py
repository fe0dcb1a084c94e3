"Tests of invgen_lit.nn: equalized layers, minibatch-std, MLP, conv generator/discriminator, ODE functions."
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from invgen_lit.core import set_seed
from invgen_lit.nn import (ConcatSquashLinear, ConvDiscriminator, ConvGenerator, EqualConv2d, EqualLinear, MLP, MinibatchStd,
                           ODEFunc, activation)


@pytest.mark.parametrize("fan_in", [3, 64, 1024])
def test_equal_linear_effective_std_is_he(fan_in):
    set_seed(0)
    lin = EqualLinear(fan_in, 2048)
    assert abs(lin.weight.std().item() - 1.0) < 0.03
    assert abs(lin.effective_weight().std().item() / math.sqrt(2 / fan_in) - 1) < 0.03
    x = torch.randn(5, fan_in)
    torch.testing.assert_close(lin(x), F.linear(x, lin.weight * math.sqrt(2 / fan_in), lin.bias))


def test_equal_linear_lr_mul_keeps_function_scales_parameter():
    set_seed(0)
    lin = EqualLinear(256, 512, lr_mul=0.01, bias_init=1.0)
    assert abs(lin.weight.std().item() - 100) < 3            # stored at 1/lr_mul
    assert abs(lin.effective_weight().std().item() - math.sqrt(2 / 256)) < 0.003
    torch.testing.assert_close(lin(torch.zeros(1, 256)), torch.ones(1, 512))


def test_equal_conv_matches_conv2d_and_he_std():
    set_seed(0)
    conv = EqualConv2d(32, 256, 3, padding=1)
    assert abs(conv.effective_weight().std().item() / math.sqrt(2 / (32 * 9)) - 1) < 0.03
    x = torch.randn(2, 32, 6, 6)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight * math.sqrt(2 / (32 * 9)), conv.bias, padding=1))


def _relative_adam_step(layer, weight):
    opt = torch.optim.Adam(layer.parameters(), lr=1e-3)
    w0 = weight().detach().clone()
    loss = (layer(torch.randn(128, layer.in_features)) - 1).pow(2).mean()
    opt.zero_grad(); loss.backward(); opt.step()
    return ((weight().detach() - w0).norm() / w0.norm()).item()


def test_adam_relative_step_is_independent_of_fan_in_only_when_equalized():
    set_seed(0)
    eq = [_relative_adam_step(l, l.effective_weight) for l in (EqualLinear(4, 32), EqualLinear(1024, 32))]
    he = []
    for n in (4, 1024):
        l = nn.Linear(n, 32); nn.init.kaiming_normal_(l.weight, nonlinearity="relu")
        he.append(_relative_adam_step(l, lambda: l.weight))
    assert 0.8 < eq[1] / eq[0] < 1.25
    assert he[1] / he[0] > 8                                     # ~ sqrt(1024 / 4) = 16


def _manual_mbstd(x, G, eps=1e-8):
    n = x.shape[0] // G
    out = torch.empty(x.shape[0], dtype=x.dtype)
    for g in range(n):
        out[g::n] = (x[g::n].var(0, unbiased=False) + eps).sqrt().mean()
    return out


@pytest.mark.parametrize("shape,group,used", [((12, 5), 4, 4), ((12, 2, 3, 3), 4, 4), ((6, 3), 4, 3), ((7, 4), 4, 1), ((3, 2), 8, 3)])
def test_minibatch_std_matches_manual(shape, group, used):
    set_seed(1)
    x = torch.randn(*shape, dtype=torch.float64)
    layer = MinibatchStd(group)
    assert layer.group(shape[0]) == used
    y = layer(x)
    assert y.shape == (shape[0], shape[1] + 1, *shape[2:])
    torch.testing.assert_close(y[:, :shape[1]], x)
    feat = y[:, -1] if x.ndim == 2 else y[:, -1].flatten(1)
    if x.ndim == 4: assert (feat == feat[:, :1]).all()
    torch.testing.assert_close(feat if x.ndim == 2 else feat[:, 0], _manual_mbstd(x, used))


def test_minibatch_std_gradient_and_bad_input():
    x = torch.randn(8, 3, requires_grad=True)
    MinibatchStd(4)(x)[:, -1].sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="argument 'x'"): MinibatchStd(4)(torch.randn(4, 3, 3))
    with pytest.raises(ValueError, match="group_size"): MinibatchStd(0)


def test_mlp_shapes_options_and_errors():
    set_seed(0)
    m = MLP(3, 2, hidden=(16, 16, 16), equalized=True, minibatch_std=4, out_act="sigmoid")
    y = m(torch.randn(8, 3))
    assert y.shape == (8, 2) and ((y > 0) & (y < 1)).all()
    assert sum(isinstance(l, MinibatchStd) for l in m.net) == 1
    assert all(isinstance(l, EqualLinear) for l in m.net if isinstance(l, (nn.Linear, EqualLinear)))
    assert MLP(3, 2, hidden=()).net[0].in_features == 3
    with pytest.raises(ValueError, match="'act'.*leaky_relu"): MLP(2, 1, act="gelu")
    with pytest.raises(TypeError, match="'hidden'"): MLP(2, 1, hidden=(16, 0))
    with pytest.raises(ValueError, match="'in_dim'"): MLP(0, 1)
    with pytest.raises(ValueError, match="spectral_norm"): MLP(2, 1, equalized=True, spectral_norm=True)
    with pytest.raises(ValueError, match=r"argument 'x'.*\(n, 3\)"): m(torch.randn(4, 2))
    with pytest.raises(ValueError, match="'out_act'|'act'"): activation("swish")


def test_spectral_norm_mlp_is_1_lipschitz():
    set_seed(0)
    m = MLP(4, 3, hidden=(64, 64), spectral_norm=True, act="relu")
    for _ in range(30): m(torch.randn(16, 4))                  # power iterations
    m.eval()
    x, y = torch.randn(500, 4) * 3, torch.randn(500, 4) * 3
    ratio = (m(x) - m(y)).norm(dim=1) / (x - y).norm(dim=1)
    assert ratio.max() <= 1.02


@pytest.mark.parametrize("shape", [(1, 16, 16), (3, 32, 32), (2, 8, 8)])
def test_skip_generator_sums_upsampled_levels(shape):
    set_seed(0)
    G = ConvGenerator(6, shape, channels=8)
    img, levels = G(torch.randn(3, 6), return_levels=True)
    H = shape[-1]
    assert img.shape == (3, *shape)
    assert [l.shape[-1] for l in levels] == [4 * 2 ** k for k in range(int(math.log2(H // 4)) + 1)]
    torch.testing.assert_close(img, sum(F.interpolate(l, size=H, mode="nearest") for l in levels), atol=1e-5, rtol=1e-5)


def test_skip_generator_finest_level_alone_and_no_skip():
    set_seed(0)
    G = ConvGenerator(6, (1, 16, 16), channels=8)
    with torch.no_grad():
        for t in G.to_images[:-1]: t.weight.zero_(); t.bias.zero_()
    img, levels = G(torch.randn(2, 6), return_levels=True)
    torch.testing.assert_close(img, levels[-1])
    G2 = ConvGenerator(6, (1, 16, 16), channels=8, skip=False)
    assert len(G2.to_images) == 1 and G2(torch.randn(2, 6)).shape == (2, 1, 16, 16)


def test_conv_discriminator_shapes_gradients_and_errors():
    set_seed(0)
    for residual in (True, False):
        D = ConvDiscriminator((1, 16, 16), out_dim=4, channels=8, residual=residual)
        x = torch.randn(8, 1, 16, 16, requires_grad=True)
        out = D(x)
        assert out.shape == (8, 4)
        out.sum().backward()
        assert all(p.grad is not None for p in D.parameters())
    with pytest.raises(ValueError, match="power-of-two"): ConvDiscriminator((1, 12, 12))
    with pytest.raises(TypeError, match="'in_shape'"): ConvDiscriminator((16, 16))
    with pytest.raises(ValueError, match=r"\(n, 1, 16, 16\)"): D(torch.randn(2, 3, 16, 16))


def test_concat_squash_formula():
    set_seed(0)
    l = ConcatSquashLinear(3, 5)
    x, t = torch.randn(4, 3), torch.full((4, 1), 0.7)
    want = (x @ l.lin.weight.T + l.lin.bias) * torch.sigmoid(t @ l.gate.weight.T + l.gate.bias) + t @ l.shift.weight.T
    torch.testing.assert_close(l(t, x), want)


@pytest.mark.parametrize("layer", ["concat", "concatsquash"])
@pytest.mark.parametrize("emb", ["identity", "fourier"])
def test_odefunc_time_dependence_and_odeint(layer, emb):
    from torchdiffeq import odeint
    set_seed(0)
    f = ODEFunc(3, hidden=(16,), layer=layer, time_embedding=emb)
    x = torch.randn(10, 3)
    assert not torch.allclose(f(torch.tensor(0.), x), f(torch.tensor(1.), x))
    torch.testing.assert_close(f(0.25, x), f(torch.full((10, 1), 0.25), x))
    xs = odeint(f, x, torch.linspace(0, 1, 4), method="rk4", options={"step_size": 0.05})
    assert xs.shape == (4, 10, 3) and torch.isfinite(xs).all()
    xs.sum().backward()
    assert all(p.grad is not None for p in f.parameters())


def test_odefunc_zero_field_is_identity_flow_and_errors():
    from torchdiffeq import odeint
    f = ODEFunc(2, hidden=(8,))
    with torch.no_grad():
        for p in f.layers[-1].parameters(): p.zero_()
    x = torch.randn(5, 2)
    torch.testing.assert_close(odeint(f, x, torch.tensor([0., 1.]))[-1], x)
    assert f.nfe > 0
    with pytest.raises(ValueError, match="argument 't'"): f(torch.zeros(3), x)
    with pytest.raises(ValueError, match=r"argument 'x'.*\(n, 2\)"): f(0., torch.randn(5, 3))
    with pytest.raises(ValueError, match="time_embedding"): ODEFunc(2, time_embedding="sinusoid")
