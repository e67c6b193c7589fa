"""Shapes and layer counts of EBGAN's networks (the paper's App. C architectures)."""

import pytest
import torch
from torch import nn

from iclr17.modules import ConvDiscriminator, DCGANGenerator, MNISTDiscriminator, MNISTGenerator, NoiseGenerator128
from iclr17.modules.ebgan import MNISTFeatures, MNISTScoreNet
from iclr17.modules.ebgan.metrics import SCORE_NET_PATH, load_score_net


def _count(module: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in module.modules())


@pytest.mark.parametrize("n_layers", [2, 5])
def test_mnist_generator(n_layers):
    g = MNISTGenerator(z_dim=10, n_layers=n_layers, size=40)
    out = g(torch.randn(3, 10))
    assert out.shape == (3, 1, 28, 28) and out.abs().max() <= 1
    assert _count(g, nn.Linear) == n_layers and _count(g, nn.BatchNorm1d) == n_layers - 1  # none on the output


@pytest.mark.parametrize("n_layers", [2, 4])
def test_mnist_discriminator_counts_encoder_plus_one_decoder_layer(n_layers):
    d = MNISTDiscriminator(n_layers=n_layers, size=24, dropout=0.5)
    recon, code = d(torch.randn(3, 1, 28, 28))
    assert recon.shape == (3, 1, 28, 28) and code.shape == (3, 24)
    assert _count(d, nn.Linear) == n_layers and _count(d.encoder, nn.Linear) == n_layers - 1
    assert _count(d, nn.BatchNorm1d) == n_layers - 2  # none on D's input layer
    logits, _ = MNISTDiscriminator(n_layers=n_layers, size=24, head="binary")(torch.randn(3, 1, 28, 28))
    assert logits.shape == (3,)


def test_init_std():
    g, d = MNISTGenerator(init_std=2e-4), MNISTDiscriminator(init_std=2e-3)
    assert g.layers[0].weight.std().item() == pytest.approx(2e-4, rel=0.05)
    assert d.encoder[1].weight.std().item() == pytest.approx(2e-3, rel=0.05)


def test_64px_generator_and_autoencoder():
    g = DCGANGenerator(z_dim=16, image_size=64, image_channels=3, width=8)
    images = g(torch.randn(2, 16))
    assert images.shape == (2, 3, 64, 64)
    d = ConvDiscriminator(image_channels=3, image_size=64, widths=[8, 16, 32])
    recon, code = d(images)
    assert recon.shape == images.shape and code.shape == (2, 32, 8, 8)
    assert [m.out_channels for m in d.head.modules() if isinstance(m, nn.ConvTranspose2d)] == [16, 8, 3]
    logits, _ = ConvDiscriminator(image_size=64, widths=[8, 16, 32], head="binary")(images)
    assert logits.shape == (2,)


def test_128px_generator_with_noise_planes_and_its_autoencoder():
    g = NoiseGenerator128(z_dim=16, widths=[32, 16, 16, 8, 8, 8])  # narrow widths; the default is 1024-...-64
    assert g.z_dim == 16 + 64 * 4 * 4 + 32 * 8 * 8 + 16 * 16 * 16 + 8 * 32 * 32 + 4 * 64 * 64
    z = torch.randn(2, g.z_dim)
    images = g.eval()(z)
    assert images.shape == (2, 3, 128, 128)
    torch.testing.assert_close(g(z), images)  # the planes come from z: the same z, the same images
    z_other_planes = torch.cat([z[:, :16], torch.randn(2, g.z_dim - 16)], dim=1)
    assert not torch.allclose(g(z_other_planes), images)
    assert [s[0].in_channels for s in g.stages] == [32 + 64, 16 + 32, 16 + 16, 8 + 8, 8 + 4]
    d = ConvDiscriminator(image_size=128, widths=[8, 8, 8, 8])
    recon, code = d(images)
    assert recon.shape == images.shape and code.shape == (2, 8, 8, 8)
    default = NoiseGenerator128()
    assert [s[0].out_channels for s in default.stages] == [512, 256, 128, 64, 64] and default.out[0].kernel_size == (
        3,
        3,
    )


def test_invalid_sizes_are_refused():
    with pytest.raises(ValueError, match="power of 2"):
        DCGANGenerator(image_size=48)
    with pytest.raises(ValueError, match="divisible"):
        ConvDiscriminator(image_size=60)
    with pytest.raises(ValueError, match="nLayerD"):
        MNISTDiscriminator(n_layers=1)


def test_shipped_score_net_is_small_and_loads():
    assert SCORE_NET_PATH.stat().st_size < 2_000_000
    net = load_score_net()
    assert isinstance(net, MNISTScoreNet) and not net.training
    features = MNISTFeatures(net)(torch.zeros(4, 1, 28, 28))
    assert features.shape == (4, MNISTFeatures.num_features)


def test_shipped_score_net_reads_real_digits(real_data_dir):
    from iclr17.datamodules import MNISTDataModule

    dm = MNISTDataModule(data_dir=str(real_data_dir), normalization="tanh", batch_size=1000)
    dm.setup("test")
    x, y = next(iter(dm.test_dataloader()))
    assert (load_score_net()(x).argmax(1) == y).float().mean() > 0.97
