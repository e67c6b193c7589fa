"""The Ladder Network's math against from-scratch numpy computations of arXiv:1507.02672 Algorithm 1 and the
authors' code (CuriousAI/ladder ``ladder.py``, ``nn.py``), on random shapes and values."""

import numpy as np
import pytest
import torch

from iclr17.functional.ebgan import discriminator_loss, margin_hinge
from iclr17.functional.ladder import (
    COMBINATOR_INIT,
    add_noise,
    decoder_pass,
    denoising_cost,
    encoder_pass,
    gaussian_combinator,
    ladder_loss,
    linear_lr_decay,
    pooled_statistics,
    weighted_denoising_cost,
)

EPS = 1e-10


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_combinator(z, u, a):
    """Gaussian combinator written unit by unit, as the authors' ``g`` with ``decoder_spec="gauss"``."""
    out = np.empty_like(z)
    for n in range(z.shape[0]):
        for j in range(z.shape[1]):
            p = a[:, j]
            mu = p[0] * sigmoid(p[1] * u[n, j] + p[2]) + p[3] * u[n, j] + p[4]
            v = p[5] * sigmoid(p[6] * u[n, j] + p[7]) + p[8] * u[n, j] + p[9]
            out[n, j] = (z[n, j] - mu) * v + mu
    return out


def np_bn(x):
    return (x - x.mean(0)) / np.sqrt(x.var(0) + EPS)


def np_softmax(x):
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _random_net(rng, widths):
    weights = [rng.normal(size=(i, o)) / np.sqrt(i) for i, o in zip(widths[:-1], widths[1:], strict=True)]
    betas = [rng.normal(size=o) * 0.1 for o in widths[1:]]
    gamma = 1 + rng.normal(size=widths[-1]) * 0.1
    v = [rng.normal(size=(o, i)) / np.sqrt(o) for i, o in zip(widths[:-1], widths[1:], strict=True)]
    a = [rng.normal(size=(10, w)) for w in widths]
    return weights, betas, gamma, v, a


def _t(arrays):
    return [torch.tensor(x) for x in arrays]


@pytest.mark.parametrize("shape", [(3, 5), (7, 1), (16, 12)])
def test_gaussian_combinator_matches_a_unit_by_unit_computation(shape):
    rng = np.random.default_rng(sum(shape))
    z, u, a = rng.normal(size=shape), rng.normal(size=shape), rng.normal(size=(10, shape[1]))
    got = gaussian_combinator(torch.tensor(z), torch.tensor(u), torch.tensor(a))
    np.testing.assert_allclose(got.numpy(), np_combinator(z, u, a), rtol=1e-12, atol=1e-12)


def test_the_initial_combinator_is_zero_whatever_its_inputs():
    """a = (0, 1, 0, 0, 0, 0, 1, 0, 0, 0): mu = 0 and v = 0, so g = 0 (the authors' initial decoder)."""
    a = torch.tensor(COMBINATOR_INIT).unsqueeze(1).repeat(1, 4)
    assert torch.equal(gaussian_combinator(torch.randn(3, 4), torch.randn(3, 4), a), torch.zeros(3, 4))


@pytest.mark.parametrize("normalized", [False, True])
def test_denoising_cost_matches_numpy(normalized):
    rng = np.random.default_rng(1)
    z_hat, z_clean = rng.normal(size=(6, 9)), rng.normal(size=(6, 9))
    mean, var = rng.normal(size=9), rng.uniform(0.5, 2, size=9)
    if normalized:
        expected = (((z_hat - mean) / np.sqrt(var + EPS) - z_clean) ** 2).sum(1) / 9
        got = denoising_cost(*_t([z_hat, z_clean, mean, var]))
    else:
        expected = ((z_hat - z_clean) ** 2).sum(1) / 9
        got = denoising_cost(*_t([z_hat, z_clean]))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)


def test_weighted_cost_and_ladder_loss_match_numpy():
    rng = np.random.default_rng(2)
    costs, weights = rng.uniform(size=(5, 4)), np.array([5000.0, 0.0, 2.0, 0.1])
    logits, labels = rng.normal(size=(3, 10)), np.array([1, 7, 0])
    energy = weighted_denoising_cost(*_t([costs, weights]))
    np.testing.assert_allclose(energy.numpy(), [sum(c * w for c, w in zip(row, weights, strict=True)) for row in costs])
    cross_entropy = -np.mean(np.log(np_softmax(logits))[np.arange(3), labels])
    loss = ladder_loss(torch.tensor(logits), torch.tensor(labels), energy)
    np.testing.assert_allclose(loss.item(), cross_entropy + energy.numpy().mean(), rtol=1e-12)


@pytest.mark.parametrize("widths", [[6, 5, 3], [9, 7, 4, 4, 2]])
def test_encoder_and_decoder_match_a_from_scratch_pass(widths):
    """Clean and corrupted encoder and the decoder against numpy, the noise replayed from the same generator."""
    rng = np.random.default_rng(len(widths))
    weights, betas, gamma, v, a = _random_net(rng, widths)
    x = rng.uniform(size=(8, widths[0]))
    noise = torch.Generator().manual_seed(3)
    replay = torch.Generator().manual_seed(3)
    corrupted = encoder_pass(torch.tensor(x), _t(weights), _t(betas), torch.tensor(gamma), 0.3, 0.2, noise)
    clean = encoder_pass(torch.tensor(x), _t(weights), _t(betas), torch.tensor(gamma))

    def np_encoder(input_std, std):
        draw = lambda shape: torch.randn(shape, generator=replay, dtype=torch.float64).numpy()  # noqa: E731
        h = x + input_std * draw(x.shape) if input_std else x
        zs = [h]
        for layer, (w, b) in enumerate(zip(weights, betas, strict=True), start=1):
            z = np_bn(h @ w)
            z = z + std * draw(z.shape) if std else z
            zs.append(z)
            h = np.maximum(z + b, 0) if layer < len(weights) else gamma * (z + b)
        return zs, h

    zs_corrupted, logits = np_encoder(0.3, 0.2)
    zs_clean, clean_logits = np_encoder(0.0, 0.0)
    for got, want in zip(corrupted.z, zs_corrupted, strict=True):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(corrupted.logits.numpy(), logits, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(clean.logits.numpy(), clean_logits, rtol=1e-9, atol=1e-12)

    # decoder: top-down from the corrupted softmax, each u batch-normalised
    z_hat = [None] * len(widths)
    top = len(widths) - 1
    u = np_softmax(logits)
    for layer in range(top, -1, -1):
        if layer < top:
            u = z_hat[layer + 1] @ v[layer]
        z_hat[layer] = np_combinator(zs_corrupted[layer], np_bn(u), a[layer])
    got = decoder_pass(corrupted, _t(v), _t(a))
    for layer in range(top + 1):
        np.testing.assert_allclose(got[layer].numpy(), z_hat[layer], rtol=1e-8, atol=1e-10)


def test_encoder_uses_given_statistics():
    rng = np.random.default_rng(4)
    weights, betas, gamma, _, _ = _random_net(rng, [5, 4, 3])
    x = rng.uniform(size=(2, 5))
    stats = [(rng.normal(size=4), rng.uniform(1, 2, size=4)), (rng.normal(size=3), rng.uniform(1, 2, size=3))]
    z1 = (x @ weights[0] - stats[0][0]) / np.sqrt(stats[0][1] + EPS)
    z2 = (np.maximum(z1 + betas[0], 0) @ weights[1] - stats[1][0]) / np.sqrt(stats[1][1] + EPS)
    got = encoder_pass(torch.tensor(x), _t(weights), _t(betas), None, statistics=[tuple(_t(s)) for s in stats])
    np.testing.assert_allclose(got.logits.numpy(), z2 + betas[1], rtol=1e-10)


@pytest.mark.parametrize("sizes", [[4, 4], [1, 7, 3], [50, 2, 9, 1]])
def test_pooled_statistics_are_those_of_the_whole_batch(sizes):
    """Shares of unequal sizes, far from zero mean (where E[z^2] - m^2 would lose digits), against numpy on the
    concatenated batch."""
    rng = np.random.default_rng(len(sizes))
    shares = [
        rng.normal(loc=rng.uniform(-1e3, 1e3, size=5), scale=rng.uniform(0.1, 3, size=5), size=(n, 5)) for n in sizes
    ]
    whole = np.concatenate(shares)
    mean, var = pooled_statistics(
        torch.tensor(sizes),
        torch.tensor(np.stack([s.mean(0) for s in shares])),
        torch.tensor(np.stack([s.var(0) for s in shares])),
    )
    np.testing.assert_allclose(mean.numpy(), whole.mean(0), rtol=1e-12)
    np.testing.assert_allclose(var.numpy(), whole.var(0), rtol=1e-9)


def test_add_noise_draws_nothing_at_zero_std():
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    x = torch.randn(3, 2)
    assert add_noise(x, 0.0, generator) is x and torch.equal(generator.get_state(), state)


def test_linear_lr_decay_replays_the_authors_lrdecay():
    """nn.py LRDecay(lr, 150 * 0.67, 150): after epoch k, lr = lr0 * max(0, (150 - k) / (150 - 100.5)) if k > 100.5."""
    start, end = 150 * 0.67, 150
    lr = 1.0
    for epoch in range(1, 160):  # the authors' loop: one call after every epoch
        if epoch > start:
            lr = max(0.0, (end - epoch) / (end - start))
        assert linear_lr_decay(epoch, start, end) == pytest.approx(lr, abs=1e-15)
    assert linear_lr_decay(100, start, end) == 1.0 and linear_lr_decay(150, start, end) == 0.0
    assert linear_lr_decay(101, start, end) == pytest.approx(49 / 49.5)


def test_the_hinge_vanishes_at_zero_margin_so_ebgan_ln_is_a_plain_ladder():
    """[0 - E]^+ = 0 with zero gradient for every energy E >= 0 (a weighted sum of squares), E = 0 included."""
    energy = torch.cat([torch.zeros(2), torch.rand(30) * 100]).requires_grad_(True)
    hinge = margin_hinge(energy, 0.0)
    hinge.backward()
    assert hinge.item() == 0.0 and torch.equal(energy.grad, torch.zeros_like(energy))
    real = torch.rand(7) * 50
    assert torch.equal(discriminator_loss(real, energy.detach(), 0.0), real.mean())


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"a must have shape \(10, 3\)"):
        gaussian_combinator(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(9, 3))
    with pytest.raises(ValueError, match="u has shape"):
        gaussian_combinator(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(10, 3))
    with pytest.raises(ValueError, match="z_hat has shape"):
        denoising_cost(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="both the clean mean and var"):
        denoising_cost(torch.zeros(2, 3), torch.zeros(2, 3), mean=torch.zeros(3))
    with pytest.raises(ValueError, match="decay_start < decay_end"):
        linear_lr_decay(0, 150, 100)
    with pytest.raises(ValueError, match="weights and betas"):
        encoder_pass(torch.zeros(2, 3), [torch.zeros(3, 2)], [], None)
    with pytest.raises(ValueError, match="costs"):
        weighted_denoising_cost(torch.zeros(2, 3), torch.zeros(4))
    with pytest.raises(ValueError, match="counts"):
        pooled_statistics(torch.ones(2), torch.zeros(3, 5), torch.zeros(3, 5))
    corrupted = encoder_pass(torch.rand(4, 3), [torch.rand(3, 2)], [torch.zeros(2)], None)
    with pytest.raises(ValueError, match="1 decoder weights and 2 combinators"):
        decoder_pass(corrupted, [], [])
