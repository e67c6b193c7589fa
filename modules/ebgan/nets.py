"""EBGAN's networks (arXiv:1609.03126 section 4, App. C): the fully connected MNIST family of the Table 1 grid,
the 64x64 DCGAN-style generator with the convolutional auto-encoder discriminator (LSUN, CelebA), the 128x128
ImageNet generator with per-layer noise, and the small ConvNet that scores MNIST samples (I', FID features).

Contract used by :class:`~iclr17.modules.ebgan.EBGAN`: a generator has a ``z_dim`` attribute and maps
``(N, z_dim)`` noise to images; a discriminator maps images to ``(output, code)`` where ``output`` is the
reconstruction (``head="autoencoder"``, EBGAN) or one logit per sample (``head="binary"``, the GAN baseline on
the same encoder) and ``code`` is the encoder's output (the pulling-away term's S). A discriminator may declare
the ``image_shape`` ``(C, H, W)`` it was built for (ours do): a convolutional one accepts any size, so EBGAN
checks the data and G's images against it.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

Head = Literal["autoencoder", "binary"]


def init_normal_(module: nn.Module, std: float) -> None:
    """Weights of every Linear and (transposed) convolution ~ N(0, std), biases 0; BatchNorm keeps (1, 0)."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(layer.weight, 0.0, std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


class MNISTGenerator(nn.Module):
    """The MNIST grid's fully connected G: ``z -> [Linear, BatchNorm, ReLU] x (n_layers - 1) -> Linear -> tanh``.

    Output ``(N, 1, 28, 28)`` in [-1, 1]. BatchNorm after every layer except the output (App. C, recalled).

    Args:
        z_dim: noise dimension (not stated in the paper; ``docs/papers/ebgan.md``).
        n_layers: nLayerG, the number of Linear layers (Table 1: 2, 3, 4, 5).
        size: sizeG, the width of every hidden layer (Table 1: 400, 800, 1600, 3200).
        init_std: weights ~ N(0, init_std); 0.0002 (third-party; ``docs/papers/ebgan.md``).
    """

    def __init__(self, z_dim: int = 100, n_layers: int = 5, size: int = 800, init_std: float = 2e-4) -> None:
        if n_layers < 2:
            raise ValueError(f"n_layers (nLayerG) must be >= 2, got {n_layers}")
        super().__init__()
        self.z_dim = z_dim
        widths = [z_dim] + [size] * (n_layers - 1)
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(fan_in, fan_out), nn.BatchNorm1d(fan_out), nn.ReLU()]
        layers += [nn.Linear(widths[-1], 784), nn.Tanh(), nn.Unflatten(1, (1, 28, 28))]
        self.layers = nn.Sequential(*layers)
        init_normal_(self, init_std)

    def forward(self, z: Tensor) -> Tensor:
        return self.layers(z)


class MNISTDiscriminator(nn.Module):
    """The MNIST grid's fully connected D: an encoder of ``n_layers - 1`` Linear layers and a one-layer head.

    Encoder: ``Linear(784, size), ReLU`` then ``[Linear(size, size), BatchNorm, ReLU] x (n_layers - 2)``, with
    dropout after each ReLU when ``dropout > 0``; no BatchNorm on D's input layer (App. C, recalled). ``nLayerD``
    counts encoder plus decoder layers, and the decoder is always one layer (paper, section 4.1). The head is
    that decoder, ``Linear(size, 784)`` reshaped to the input (``autoencoder``), or ``Linear(size, 1)``
    (``binary``, the GAN baseline).

    Args:
        n_layers: nLayerD (Table 1: 2, 3, 4, 5).
        size: sizeD, the code and hidden width (Table 1: 128, 256, 512, 1024).
        dropout: dropout probability after each encoder ReLU (dropoutD; the paper's rate is not stated, the
            grid uses 0.5).
        head: ``autoencoder`` (EBGAN) or ``binary`` (GAN baseline).
        init_std: weights ~ N(0, init_std); 0.002 (App. C, recalled).
    """

    def __init__(
        self,
        n_layers: int = 2,
        size: int = 1024,
        dropout: float = 0.0,
        head: Head = "autoencoder",
        init_std: float = 2e-3,
    ) -> None:
        if n_layers < 2:
            raise ValueError(f"n_layers (nLayerD) must be >= 2, got {n_layers}")
        if head not in ("autoencoder", "binary"):
            raise ValueError(f"head must be autoencoder or binary, got {head!r}")
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten(), nn.Linear(784, size), nn.ReLU()]
        layers += [nn.Dropout(dropout)] if dropout else []
        for _ in range(n_layers - 2):
            layers += [nn.Linear(size, size), nn.BatchNorm1d(size), nn.ReLU()]
            layers += [nn.Dropout(dropout)] if dropout else []
        self.encoder = nn.Sequential(*layers)
        self.head = nn.Linear(size, 784 if head == "autoencoder" else 1)
        self.head_kind = head
        self.image_shape = (1, 28, 28)
        init_normal_(self, init_std)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        code = self.encoder(x)
        output = self.head(code)
        return (output.view_as(x) if self.head_kind == "autoencoder" else output.squeeze(1)), code


class DCGANGenerator(nn.Module):
    """DCGAN-style G (App. C, recalled): ``z`` as a 1x1 map, a 4x4 transposed convolution to ``width * 2^(k-1)``
    channels, then ``k = log2(image_size) - 2`` stride-2 4x4 transposed convolutions halving the channels, each
    but the last followed by BatchNorm and ReLU, and tanh. ``image_size=64``: 512-256-128-64-3 channels.

    Args:
        z_dim: noise dimension (100 in DCGAN).
        image_size: output side, a power of 2 >= 8.
        image_channels: 3 for LSUN and CelebA, 1 for MNIST.
        width: channels of the last hidden layer (64 in DCGAN).
        init_std: weights ~ N(0, init_std) (0.02 in DCGAN).
    """

    def __init__(
        self, z_dim: int = 100, image_size: int = 64, image_channels: int = 3, width: int = 64, init_std: float = 0.02
    ) -> None:
        stages = round(math.log2(image_size)) - 2
        if image_size < 8 or 2 ** (stages + 2) != image_size:
            raise ValueError(f"image_size must be a power of 2 >= 8, got {image_size}")
        super().__init__()
        self.z_dim = z_dim
        channels = [width * 2 ** (stages - 1 - i) for i in range(stages)]
        layers: list[nn.Module] = [nn.Unflatten(1, (z_dim, 1, 1)), nn.ConvTranspose2d(z_dim, channels[0], 4, 1, 0)]
        layers += [nn.BatchNorm2d(channels[0]), nn.ReLU()]
        for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), nn.ReLU()]
        layers += [nn.ConvTranspose2d(channels[-1], image_channels, 4, 2, 1), nn.Tanh()]
        self.layers = nn.Sequential(*layers)
        init_normal_(self, init_std)

    def forward(self, z: Tensor) -> Tensor:
        return self.layers(z)


class ConvDiscriminator(nn.Module):
    """The convolutional auto-encoder D (App. C, recalled): encoder ``(w_1)4c2s - ... - (w_k)4c2s``, decoder the
    mirror ``(w_{k-1})4c2s - ... - (w_1)4c2s - (channels)4c2s`` of transposed convolutions.

    64x64 (LSUN, CelebA): ``widths=[64, 128, 256]``; 128x128 (ImageNet): ``[64, 128, 256, 512]``. Encoder layers
    use LeakyReLU(0.2) and BatchNorm except on the input layer (DCGAN guidelines); decoder layers ReLU and
    BatchNorm; the reconstruction has no output nonlinearity. The code is the encoder's last feature map. The
    ``binary`` head is one convolution covering the code's whole map (the GAN baseline).

    Args:
        image_channels: input channels.
        image_size: input side, divisible by ``2 ** len(widths)``.
        widths: encoder channels per stride-2 layer.
        head: ``autoencoder`` (EBGAN) or ``binary`` (GAN baseline).
        init_std: weights ~ N(0, init_std) (0.02 in DCGAN).
    """

    def __init__(
        self,
        image_channels: int = 3,
        image_size: int = 64,
        widths: list[int] | None = None,
        head: Head = "autoencoder",
        init_std: float = 0.02,
    ) -> None:
        widths = list(widths or [64, 128, 256])
        code_side = image_size // 2 ** len(widths)
        if code_side < 1 or code_side * 2 ** len(widths) != image_size:
            raise ValueError(f"image_size={image_size} must be divisible by 2**len(widths) = {2 ** len(widths)}")
        if head not in ("autoencoder", "binary"):
            raise ValueError(f"head must be autoencoder or binary, got {head!r}")
        super().__init__()
        self.image_shape = (image_channels, image_size, image_size)
        encoder: list[nn.Module] = [nn.Conv2d(image_channels, widths[0], 4, 2, 1), nn.LeakyReLU(0.2)]
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            encoder += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]
        self.encoder = nn.Sequential(*encoder)
        if head == "autoencoder":
            decoder: list[nn.Module] = []
            for c_in, c_out in zip(widths[::-1][:-1], widths[::-1][1:], strict=True):
                decoder += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), nn.ReLU()]
            self.head = nn.Sequential(*decoder, nn.ConvTranspose2d(widths[0], image_channels, 4, 2, 1))
        else:
            self.head = nn.Sequential(nn.Conv2d(widths[-1], 1, code_side), nn.Flatten(0))
        init_normal_(self, init_std)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        code = self.encoder(x)
        return self.head(code), code


class NoiseGenerator128(nn.Module):
    """The 128x128 ImageNet G (section 4.4, App. C, recalled): ``(1024)4c - (512)4c2s - (256)4c2s - (128)4c2s -
    (64)4c2s - (64)4c2s - (3)3c``, with noise planes (64, 32, 16, 8, 4) concatenated to the input of each
    stride-2 layer. The planes are part of the latent: ``z`` holds ``dense_dim`` values for the 4x4 layer followed
    by every plane's values, so ``z_dim`` is ``dense_dim`` plus the planes' sizes (31,744 by default). Whoever
    draws ``z`` (EBGAN's seeded, per-process, checkpointed noise) therefore draws the planes too: fixed-z sample
    grids stay fixed and DDP processes draw different planes. BatchNorm and ReLU follow every layer but the
    last, which ends in tanh.

    Args:
        z_dim: dimension of the dense part of the noise (100); the ``z_dim`` attribute adds the planes.
        widths: channels of the 4x4 layer and of each stride-2 layer.
        noise_planes: noise channels concatenated before each stride-2 layer (one per stride-2 layer).
        image_channels: output channels.
        init_std: weights ~ N(0, init_std).
    """

    def __init__(
        self,
        z_dim: int = 100,
        widths: list[int] | None = None,
        noise_planes: list[int] | None = None,
        image_channels: int = 3,
        init_std: float = 0.02,
    ) -> None:
        widths = list(widths or [1024, 512, 256, 128, 64, 64])
        noise_planes = list(noise_planes or [64, 32, 16, 8, 4])
        if len(noise_planes) != len(widths) - 1:
            raise ValueError(f"noise_planes needs one entry per stride-2 layer ({len(widths) - 1}), got {noise_planes}")
        super().__init__()
        self.dense_dim = z_dim
        self.plane_shapes = [(planes, 4 * 2**i, 4 * 2**i) for i, planes in enumerate(noise_planes)]
        self.z_dim = z_dim + sum(c * h * w for c, h, w in self.plane_shapes)
        self.stem = nn.Sequential(
            nn.Unflatten(1, (z_dim, 1, 1)),
            nn.ConvTranspose2d(z_dim, widths[0], 4),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        self.stages = nn.ModuleList(
            nn.Sequential(nn.ConvTranspose2d(c_in + p, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), nn.ReLU())
            for c_in, c_out, p in zip(widths[:-1], widths[1:], noise_planes, strict=True)
        )
        self.out = nn.Sequential(nn.Conv2d(widths[-1], image_channels, 3, 1, 1), nn.Tanh())
        init_normal_(self, init_std)

    def forward(self, z: Tensor) -> Tensor:
        if z.shape[1] != self.z_dim:
            raise ValueError(
                f"NoiseGenerator128 takes z of {self.z_dim} values (dense part + noise planes), got {z.shape[1]}"
            )
        sizes = [self.dense_dim] + [c * h * w for c, h, w in self.plane_shapes]
        dense, *planes = torch.split(z, sizes, dim=1)
        h = self.stem(dense)
        for stage, flat, shape in zip(self.stages, planes, self.plane_shapes, strict=True):
            h = stage(torch.cat([h, flat.reshape(-1, *shape)], dim=1))
        return self.out(h)


class MNISTScoreNet(nn.Module):
    """The small MNIST ConvNet behind I' and FID/KID features (a 3-layer ConvNet, App. C; ours):
    ``conv 5x5 (16) - ReLU - maxpool 2 - conv 5x5 (32) - ReLU - maxpool 2 - Linear(512, 10)``, about 18k
    parameters, on ``(1, 28, 28)`` images in [-1, 1] (the generator's range). ``features`` gives the 512 inputs
    of the last layer.

    Args:
        num_classes: output classes.
    """

    num_features = 512

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.fc = nn.Linear(self.num_features, num_classes)

    def features(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) not in ((1, 28, 28), (28, 28), (784,)):
            raise ValueError(
                f"MNISTScoreNet scores 28x28 MNIST-like images, shape (N, 1, 28, 28) or (N, 784); got {tuple(x.shape)}"
            )
        return self.body(x.reshape(-1, 1, 28, 28))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))
