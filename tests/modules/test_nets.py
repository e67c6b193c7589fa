import inspect

import pytest
import torch
from scipy import stats
from torch import nn

import iclr17.modules
from iclr17.modules import (
    MLP,
    MNISTFC,
    AllCNN,
    ConvDiscriminator,
    DCGANGenerator,
    LeNet,
    MNISTDiscriminator,
    MNISTGenerator,
    NoiseGenerator128,
)

EXPORTED_NETS = [
    obj
    for name in iclr17.modules.__all__
    if inspect.isclass(obj := getattr(iclr17.modules, name)) and issubclass(obj, nn.Module)
    if not hasattr(obj, "training_step")
]
EXAMPLE = {  # (constructor kwargs, input shape, output shape); an exported net missing here fails
    MLP: ({"widths": [6, 5, 3]}, (4, 6), (4, 3)),
    MNISTFC: ({}, (4, 1, 28, 28), (4, 10)),
    LeNet: ({}, (4, 1, 28, 28), (4, 10)),
    AllCNN: ({"c1": 8, "c2": 16}, (2, 3, 32, 32), (2, 10)),
    MNISTGenerator: ({"n_layers": 2, "size": 16}, (2, 100), (2, 1, 28, 28)),
    MNISTDiscriminator: ({}, (2, 1, 28, 28), (2, 1, 28, 28)),  # (reconstruction, code): the first is checked
    DCGANGenerator: ({}, (2, 100), (2, 3, 64, 64)),
    ConvDiscriminator: ({}, (2, 3, 64, 64), (2, 3, 64, 64)),
    NoiseGenerator128: ({}, (2, 100 + 31_744), (2, 3, 128, 128)),  # dense noise + the noise planes
}


@pytest.mark.parametrize("net_class", EXPORTED_NETS, ids=lambda c: c.__name__)
def test_every_exported_net_runs_forward_and_backward(net_class):
    assert net_class in EXAMPLE, f"add {net_class.__name__} to EXAMPLE in {__file__}"
    kwargs, in_shape, out_shape = EXAMPLE[net_class]
    net = net_class(**kwargs)
    outputs = net(torch.randn(in_shape))
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    assert outputs[0].shape == out_shape
    sum(o.sum() for o in outputs).backward()
    assert all(p.grad is not None for p in net.parameters())


def _linear(n_in, n_out):
    return n_in * n_out + n_out


def test_parameter_counts_against_hand_counts():
    bn = 2  # weight and bias per channel
    assert sum(p.numel() for p in MNISTFC().parameters()) == (
        _linear(784, 1024) + bn * 1024 + _linear(1024, 1024) + bn * 1024 + _linear(1024, 10)
    )
    assert sum(p.numel() for p in MNISTFC("lua").parameters()) == (
        _linear(784, 1024) + _linear(1024, 1024) + _linear(1024, 10)
    )
    conv1, conv2 = 20 * 25 + 20, 50 * 20 * 25 + 50
    assert sum(p.numel() for p in LeNet().parameters()) == (
        conv1 + bn * 20 + conv2 + bn * 50 + _linear(200, 500) + bn * 500 + _linear(500, 10)
    )
    conv3 = lambda ci, co, k=3: ci * co * k * k + co + bn * co  # noqa: E731
    assert sum(p.numel() for p in AllCNN().parameters()) == (
        conv3(3, 96) + 2 * conv3(96, 96) + conv3(96, 192) + 4 * conv3(192, 192) + conv3(192, 10, 1)
    )


def test_layouts_differ_where_the_lua_code_differs():
    port, lua = LeNet("pytorch_port"), LeNet("lua")
    assert [type(m).__name__ for m in port.layers[0]] == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Dropout"]
    assert [type(m).__name__ for m in lua.layers[0]] == ["Conv2d", "ReLU", "MaxPool2d", "BatchNorm2d", "Dropout"]
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.Dropout)) for m in MNISTFC("lua").layers[:3])
    assert isinstance(MNISTFC().layers[1], nn.Dropout) and MNISTFC().layers[1].p == 0.2


def test_mlp_layers_in_order():
    net = MLP([3, 4, 2], activation="tanh", batchnorm=True, dropout=0.1)
    assert [type(m).__name__ for m in net.layers] == ["Flatten", "Linear", "BatchNorm1d", "Tanh", "Dropout", "Linear"]
    with pytest.raises(ValueError, match="widths"):
        MLP([3])


def _leaves(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if not list(m.children())]


def test_lua_lenet_is_the_authors_models_lua_layer_for_layer():
    """ucla-vision/entropy-sgd ``models.lua`` (mnistconv): conv 5x5 1->20, ReLU, max-pool 3x3/3, BN, dropout 0.5;
    conv 5x5 20->50, ReLU, max-pool 2x2/2, BN, dropout 0.5; 200 -> 500, ReLU, dropout 0.5 -> 10."""
    net = LeNet("lua")
    expected = [
        (nn.Conv2d, {"in_channels": 1, "out_channels": 20, "kernel_size": (5, 5), "stride": (1, 1), "padding": (0, 0)}),
        (nn.ReLU, {}),
        (nn.MaxPool2d, {"kernel_size": 3, "stride": 3}),
        (nn.BatchNorm2d, {"num_features": 20}),
        (nn.Dropout, {"p": 0.5}),
        (
            nn.Conv2d,
            {"in_channels": 20, "out_channels": 50, "kernel_size": (5, 5), "stride": (1, 1), "padding": (0, 0)},
        ),
        (nn.ReLU, {}),
        (nn.MaxPool2d, {"kernel_size": 2, "stride": 2}),
        (nn.BatchNorm2d, {"num_features": 50}),
        (nn.Dropout, {"p": 0.5}),
        (nn.Flatten, {}),
        (nn.Linear, {"in_features": 200, "out_features": 500}),
        (nn.ReLU, {}),
        (nn.Dropout, {"p": 0.5}),
        (nn.Linear, {"in_features": 500, "out_features": 10}),
    ]
    leaves = _leaves(net)
    assert [type(m) for m in leaves] == [cls for cls, _ in expected]
    for module, (_, attributes) in zip(leaves, expected, strict=True):
        assert {k: getattr(module, k) for k in attributes} == attributes, module
    assert sum(p.numel() for p in net.parameters()) == 131_220  # the count the authors' code prints
    shapes = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:]))) for m in leaves]
    net(torch.randn(3, 1, 28, 28))
    for hook in hooks:
        hook.remove()
    assert shapes == [
        (20, 24, 24), (20, 24, 24), (20, 8, 8), (20, 8, 8), (20, 8, 8),
        (50, 4, 4), (50, 4, 4), (50, 2, 2), (50, 2, 2), (50, 2, 2),
        (200,), (500,), (500,), (500,), (10,),
    ]  # fmt: skip


def test_lua_mnistfc_is_the_authors_iclr_version():
    """``models.lua`` before May 2017 (mnistfc): 784 -> [1024, ReLU, dropout 0.5] x 2 -> 10, no BatchNorm, no
    input dropout."""
    leaves = _leaves(MNISTFC("lua"))
    assert [type(m) for m in leaves] == [
        nn.Flatten, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear,
    ]  # fmt: skip
    linears = [(m.in_features, m.out_features) for m in leaves if isinstance(m, nn.Linear)]
    assert linears == [(784, 1024), (1024, 1024), (1024, 10)]
    assert [m.p for m in leaves if isinstance(m, nn.Dropout)] == [0.5, 0.5]
    assert sum(p.numel() for p in MNISTFC("lua").parameters()) == 1_863_690


def test_lua_bn_mnistfc_is_the_authors_may_2017_version():
    """``models.lua`` from 2017-05-12 (mnistfc): 784 -> [1024, ReLU, BatchNorm, dropout 0.5] x 2 -> 10, no input
    dropout, Torch7's BatchNorm init (scales U(0, 1), shifts 0)."""
    torch.manual_seed(0)
    net = MNISTFC("lua_bn")
    leaves = _leaves(net)
    assert [type(m) for m in leaves] == [
        nn.Flatten, nn.Linear, nn.ReLU, nn.BatchNorm1d, nn.Dropout, nn.Linear, nn.ReLU, nn.BatchNorm1d, nn.Dropout,
        nn.Linear,
    ]  # fmt: skip
    assert [m.num_features for m in leaves if isinstance(m, nn.BatchNorm1d)] == [1024, 1024]
    assert sum(p.numel() for p in net.parameters()) == 1_863_690 + 2 * 2 * 1024  # the plain net + scales and shifts
    scales = _batchnorm_scales(net)
    assert bool(((scales >= 0) & (scales < 1)).all()) and stats.kstest(scales.numpy(), "uniform").pvalue > 0.01
    assert bool((torch.cat([m.bias.detach() for m in leaves if isinstance(m, nn.BatchNorm1d)]) == 0).all())
    x = torch.randn(6, 1, 28, 28)
    net.eval()  # the ReLU's output is what the first BatchNorm normalises: check it against a manual forward
    first, bn = leaves[1], leaves[3]
    hidden = torch.relu(first(x.flatten(1)))
    expected = (hidden - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    assert torch.allclose(net.layers[:4](x), expected, atol=1e-6)
    with pytest.raises(ValueError, match="MNISTFC: layout must be one of .*'lua_bn'.*, got 'lua-bn'"):
        MNISTFC("lua-bn")


def _batchnorm_scales(net: nn.Module) -> torch.Tensor:
    return torch.cat([m.weight.detach() for m in net.modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)])


def test_lua_lenet_starts_its_batchnorm_scales_as_torch7_does():
    """Torch7's ``BatchNormalization:reset`` (nn and cudnn) draws each scale from U(0, 1) and zeroes the shift;
    PyTorch starts the scale at 1. 70 channels (20 + 50): a U(0, 1) sample, not a constant."""
    torch.manual_seed(0)
    scales = _batchnorm_scales(LeNet("lua"))
    assert scales.numel() == 70 and bool(((scales >= 0) & (scales < 1)).all())
    assert stats.kstest(scales.numpy(), "uniform").pvalue > 0.01  # scipy's U(0, 1): an independent reference
    shifts = torch.cat([m.bias.detach() for m in LeNet("lua").modules() if isinstance(m, nn.BatchNorm2d)])
    assert bool((shifts == 0).all())
    assert bool((_batchnorm_scales(LeNet("pytorch_port")) == 1).all())  # the PyTorch port: PyTorch's init


def test_batchnorm_weight_init_overrides_the_layouts_own_and_is_validated():
    assert bool((_batchnorm_scales(LeNet("lua", batchnorm_weight_init="ones")) == 1).all())
    assert bool((_batchnorm_scales(LeNet("pytorch_port", batchnorm_weight_init="uniform")) < 1).all())
    with pytest.raises(ValueError, match="batchnorm_weight_init must be 'ones', 'uniform' or None, got 'normal'"):
        LeNet("lua", batchnorm_weight_init="normal")
    with pytest.raises(ValueError, match="layout must be 'pytorch_port' or 'lua', got 'torch'"):
        LeNet("torch")
