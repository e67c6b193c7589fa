"""The networks the Hessian, Entropy-SGD and halting-time papers train (arXiv:1611.01838 section 5; the halting-time
paper's MNIST nets, arXiv:1511.06444).

``layout="pytorch_port"`` follows the authors' PyTorch port (``python/models.py`` of ucla-vision/entropy-sgd),
whose layers we default to; ``layout="lua"`` follows the Lua ``models.lua`` that produced the paper's
numbers, which differs: its mnistfc has no BatchNorm and no input dropout, and its LeNet puts ReLU and
max-pooling before BatchNorm and has no BatchNorm in the fully connected block. ``MNISTFC(layout="lua_bn")`` is the
Lua mnistfc from May 2017 on, when the authors added BatchNorm after each hidden ReLU (docs/papers/entropy_sgd.md).
"""

from __future__ import annotations

from typing import Literal, get_args

from torch import Tensor, nn

Activation = Literal["relu", "tanh", "sigmoid", "elu", "gelu", "leaky_relu"]
Layout = Literal["pytorch_port", "lua"]
MNISTFCLayout = Literal["pytorch_port", "lua", "lua_bn"]
BatchNormWeightInit = Literal["ones", "uniform"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
}


class MLP(nn.Module):
    """Fully connected network on flattened inputs; returns logits.

    Each hidden layer is ``Linear -> [BatchNorm1d] -> activation -> [Dropout]`` (or, with
    ``batchnorm_after_activation``, ``Linear -> activation -> BatchNorm1d -> [Dropout]``); the last layer is a bare
    ``Linear``.

    Args:
        widths: layer widths from input to output, e.g. ``[784, 1024, 1024, 10]``.
        activation: hidden nonlinearity.
        batchnorm: BatchNorm1d after every hidden Linear.
        dropout: dropout probability after every hidden activation (0 disables).
        input_dropout: dropout probability on the input (0 disables).
        batchnorm_after_activation: put each BatchNorm1d after the activation instead of before it.
    """

    def __init__(
        self,
        widths: list[int],
        activation: Activation = "relu",
        batchnorm: bool = False,
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        batchnorm_after_activation: bool = False,
    ) -> None:
        if len(widths) < 2 or any(w < 1 for w in widths):
            raise ValueError(f"widths must list at least an input and an output width, all >= 1; got {widths}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        layers: list[nn.Module] = [nn.Flatten()]
        if input_dropout:
            layers.append(nn.Dropout(input_dropout))
        for fan_in, fan_out in zip(widths[:-2], widths[1:-1], strict=True):
            layers.append(nn.Linear(fan_in, fan_out))
            normalise = [nn.BatchNorm1d(fan_out)] if batchnorm else []
            activate = [_ACTIVATIONS[activation]()]
            layers += activate + normalise if batchnorm_after_activation else normalise + activate
            if dropout:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(widths[-2], widths[-1]))
        super().__init__()
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


def torch7_batchnorm_scales(net: nn.Module) -> None:
    """Draw every BatchNorm scale of ``net`` from U(0, 1), as Torch7's ``BatchNormalization:reset`` (nn and cudnn)
    does, the shifts staying 0: the Lua code's init."""
    for module in net.modules():
        if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.0, 1.0)


class MNISTFC(MLP):
    """Entropy-SGD's ``mnistfc``: 784 - [1024, ReLU, dropout 0.5] x 2 - 10.

    Args:
        layout: ``pytorch_port`` adds input dropout 0.2 and BatchNorm after each hidden Linear (the port's
            model); ``lua`` is the Lua code's plain version, as at ICLR 2017; ``lua_bn`` the Lua code's from May
            2017 on: BatchNorm after each hidden ReLU (before the dropout), its scales from U(0, 1) as Torch7's
            ``BatchNormalization:reset`` draws them.
    """

    def __init__(self, layout: MNISTFCLayout = "pytorch_port") -> None:
        if layout not in get_args(MNISTFCLayout):
            raise ValueError(f"MNISTFC: layout must be one of {get_args(MNISTFCLayout)}, got {layout!r}")
        port = layout == "pytorch_port"
        super().__init__([784, 1024, 1024, 10], "relu", batchnorm=layout != "lua", dropout=0.5,
                         input_dropout=0.2 if port else 0.0, batchnorm_after_activation=layout == "lua_bn")  # fmt: skip
        if layout == "lua_bn":
            torch7_batchnorm_scales(self)


def _conv_block(c_in: int, c_out: int, kernel: int, pool: int, dropout: float, layout: Layout) -> nn.Sequential:
    conv, bn, relu = nn.Conv2d(c_in, c_out, kernel), nn.BatchNorm2d(c_out), nn.ReLU()
    pooling = nn.MaxPool2d(pool, stride=pool)
    order = [conv, bn, relu, pooling] if layout == "pytorch_port" else [conv, relu, pooling, bn]
    return nn.Sequential(*order, nn.Dropout(dropout))


class LeNet(nn.Module):
    """Entropy-SGD's LeNet-BN (``mnistconv``) on ``(1, 28, 28)`` images: conv 20 - conv 50 - fc 500 - 10.

    Conv blocks: 5x5 convolution, BatchNorm, ReLU, max-pool (3 then 2), dropout 0.5.

    Args:
        layout: ``pytorch_port`` (conv, BN, ReLU, pool; BN in the fc block; 132,220 parameters) or ``lua``
            (conv, ReLU, pool, BN; no BN in the fc block; 131,220 parameters, the Lua ``models.lua`` ``mnistconv``).
        batchnorm_weight_init: the BatchNorm scales' initial values: ``ones`` (PyTorch's, so the authors' PyTorch
            port's) or ``uniform`` (U(0, 1) per channel: Torch7's, whose ``BatchNormalization:reset`` in nn and
            cudnn draws the scale uniformly, so the Lua code's); None (default) takes the layout's own (``lua``:
            ``uniform``, ``pytorch_port``: ``ones``). Convolutions and linear layers start as in both frameworks
            (uniform in +- 1 / sqrt(fan_in), weights and biases); BatchNorm shifts start at 0.
    """

    def __init__(
        self, layout: Layout = "pytorch_port", batchnorm_weight_init: BatchNormWeightInit | None = None
    ) -> None:
        if layout not in get_args(Layout):
            raise ValueError(f"LeNet: layout must be 'pytorch_port' or 'lua', got {layout!r}")
        if batchnorm_weight_init not in (None, *get_args(BatchNormWeightInit)):
            raise ValueError(
                f"LeNet: batchnorm_weight_init must be 'ones', 'uniform' or None, got {batchnorm_weight_init!r}"
            )
        fc_bn = [nn.BatchNorm1d(500)] if layout == "pytorch_port" else []
        super().__init__()
        self.layers = nn.Sequential(
            _conv_block(1, 20, 5, 3, 0.5, layout),
            _conv_block(20, 50, 5, 2, 0.5, layout),
            nn.Flatten(),
            nn.Linear(50 * 2 * 2, 500),
            *fc_bn,
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(500, 10),
        )
        if (batchnorm_weight_init or ("uniform" if layout == "lua" else "ones")) == "uniform":
            torch7_batchnorm_scales(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


def _conv_bn_relu(c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding), nn.BatchNorm2d(c_out), nn.ReLU()
    )


class AllCNN(nn.Module):
    """All-CNN-C with BatchNorm (Springenberg et al.) as in Entropy-SGD, on ``(3, 32, 32)`` images.

    Input dropout 0.2; three stages of 3x3 convolutions (the last of the first two with stride 2) separated
    by dropout 0.5; a 1x1 convolution to the classes and 8x8 average pooling. Every convolution, the last
    included, is followed by BatchNorm and ReLU, as in the authors' Lua and PyTorch code (which use two 3x3
    convolutions in the third stage where Springenberg et al. use a 3x3 and a 1x1). About 1.67 M
    parameters at the default widths 96/192.

    Args:
        c1: channels of the first stage.
        c2: channels of the second and third stages.
        num_classes: output classes.
    """

    def __init__(self, c1: int = 96, c2: int = 192, num_classes: int = 10) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Dropout(0.2),
            _conv_bn_relu(3, c1, 3, padding=1),
            _conv_bn_relu(c1, c1, 3, padding=1),
            _conv_bn_relu(c1, c1, 3, stride=2, padding=1),
            nn.Dropout(0.5),
            _conv_bn_relu(c1, c2, 3, padding=1),
            _conv_bn_relu(c2, c2, 3, padding=1),
            _conv_bn_relu(c2, c2, 3, stride=2, padding=1),
            nn.Dropout(0.5),
            _conv_bn_relu(c2, c2, 3, padding=1),
            _conv_bn_relu(c2, c2, 3, padding=1),
            _conv_bn_relu(c2, num_classes, 1),
            nn.AvgPool2d(8),
            nn.Flatten(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class ConvNet(nn.Module):
    """A LeNet-like convnet on flattened 28 x 28 images; returns logits. arXiv:1511.06444 trains "a convnet" on
    MNIST without giving its layers; this one is ours (``docs/papers/halting_time.md``): conv 5x5 1 -> c1, ReLU,
    max-pool 2; conv 5x5 c1 -> c2, ReLU, max-pool 2; Linear 16 c2 -> hidden, ReLU; Linear hidden -> classes;
    PyTorch's default initialisation. No BatchNorm or dropout, so a run is a pure function of its parameters.

    Args:
        widths: ``[c1, c2, hidden, classes]``, e.g. ``[20, 50, 500, 10]`` (800 features after the second pool).
    """

    def __init__(self, widths: list[int]) -> None:
        if len(widths) != 4 or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
            raise ValueError(f"ConvNet: widths must be [c1, c2, hidden, classes], four ints >= 1; got {widths}")
        c1, c2, hidden, classes = widths
        super().__init__()
        self.layers = nn.Sequential(
            nn.Unflatten(-1, (1, 28, 28)),
            nn.Conv2d(1, c1, 5), nn.ReLU(), nn.MaxPool2d(2),  # 24 x 24 -> 12 x 12
            nn.Conv2d(c1, c2, 5), nn.ReLU(), nn.MaxPool2d(2),  # 8 x 8 -> 4 x 4
            nn.Flatten(), nn.Linear(16 * c2, hidden), nn.ReLU(), nn.Linear(hidden, classes),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)
