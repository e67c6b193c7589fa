"""EBGAN's math against hand-computed values, closed forms and independent references (numpy loops, scipy)."""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.stats import entropy, mannwhitneyu

from iclr17.functional.ebgan import (
    discriminator_loss,
    gan_discriminator_loss,
    gan_generator_loss,
    generator_loss,
    mann_whitney_exact_work,
    mann_whitney_greater_exact,
    margin_at,
    margin_hinge,
    mnist_score,
    pulling_away_term,
    reconstruction_energy,
)
from iclr17.modules.ebgan.metrics import MNISTScore


def _pt_reference(codes: np.ndarray) -> float:
    """Eq 14 written as the double loop over i != j of squared cosines."""
    n = len(codes)
    total = 0.0
    for i in range(n):
        for j in range(n):
            if i != j:
                cos = codes[i] @ codes[j] / (np.linalg.norm(codes[i]) * np.linalg.norm(codes[j]))
                total += cos**2
    return total / (n * (n - 1))


def test_pt_is_zero_for_orthogonal_and_one_for_identical_codes():
    q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    assert pulling_away_term(q.t()[:5] * torch.arange(1, 6).unsqueeze(1)) == pytest.approx(0.0, abs=1e-12)
    row = torch.randn(1, 7, dtype=torch.float64)
    assert pulling_away_term(row.repeat(4, 1)) == pytest.approx(1.0, abs=1e-12)
    assert pulling_away_term(torch.cat([row, -3 * row])) == pytest.approx(1.0, abs=1e-12)  # parallel, any sign


def test_pt_matches_the_double_loop_and_is_invariant_to_order_and_scale():
    codes = torch.randn(9, 2, 3, 2, dtype=torch.float64)  # per-sample codes are flattened
    value = pulling_away_term(codes)
    assert value == pytest.approx(_pt_reference(codes.flatten(1).numpy()), rel=1e-12)
    assert pulling_away_term(codes[torch.randperm(9)]) == pytest.approx(float(value), rel=1e-12)
    scales = torch.rand(9, 1, 1, 1, dtype=torch.float64) * 100 + 0.01
    assert pulling_away_term(codes * scales) == pytest.approx(float(value), rel=1e-10)


def test_pt_needs_two_codes_and_has_a_finite_gradient_at_a_zero_row():
    with pytest.raises(ValueError, match="at least 2"):
        pulling_away_term(torch.randn(1, 4))
    codes = torch.randn(3, 4)
    codes[1] = 0
    codes.requires_grad_(True)
    pulling_away_term(codes).backward()
    assert torch.isfinite(codes.grad).all()


def test_energy_scales():
    x = torch.zeros(2, 1, 2, 2)
    recon = torch.tensor([[1.0, 2.0, 2.0, 0.0], [0.0, 0.0, 0.0, 3.0]]).view(2, 1, 2, 2)
    torch.testing.assert_close(reconstruction_energy(x, recon, "sse"), torch.tensor([9.0, 9.0]))
    torch.testing.assert_close(reconstruction_energy(x, recon, "l2"), torch.tensor([3.0, 3.0]))
    torch.testing.assert_close(reconstruction_energy(x, recon, "mse"), torch.tensor([2.25, 2.25]))
    with pytest.raises(ValueError, match="shape"):
        reconstruction_energy(x, recon.flatten(1))


def _energy_reference(x: np.ndarray, reconstruction: np.ndarray, energy: str) -> np.ndarray:
    """Eq 13 sample by sample: the squared errors of sample i over all its entries, then their sum (``sse``), its
    square root (``l2``) or its mean (``mse``)."""
    out = np.empty(len(x))
    for i in range(len(x)):
        squared = [(r - v) ** 2 for r, v in zip(reconstruction[i].ravel().tolist(), x[i].ravel().tolist(), strict=True)]
        out[i] = {"sse": sum(squared), "l2": math.sqrt(sum(squared)), "mse": sum(squared) / len(squared)}[energy]
    return out


@pytest.mark.parametrize("energy", ["l2", "sse", "mse"])
@pytest.mark.parametrize("shape", [(7, 5), (6, 3, 4, 2)])
def test_energy_is_per_sample_against_a_numpy_loop(energy, shape):
    """Random inputs whose rows have different errors (each row's error scaled differently): one energy per
    sample, in the order of the samples, never a batch average."""
    generator = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    scales = torch.linspace(0.1, 3.0, shape[0], dtype=torch.float64)[torch.randperm(shape[0], generator=generator)]
    noise = torch.randn(shape, generator=generator, dtype=torch.float64)
    reconstruction = x + noise * scales.view(-1, *[1] * (len(shape) - 1))
    values = reconstruction_energy(x, reconstruction, energy)
    expected = _energy_reference(x.numpy(), reconstruction.numpy(), energy)
    assert values.shape == (shape[0],) and np.ptp(expected) > 0.5 * expected.mean()  # rows really differ
    np.testing.assert_allclose(values.numpy(), expected, rtol=1e-10)


def test_hinge_is_per_sample_with_hand_computed_values():
    fake = torch.tensor([1.0, 5.0, 12.0])
    # per sample: mean([10-1, 10-5, 0]) = 14/3; on the batch mean (the port's bug): 10 - 6 = 4
    assert margin_hinge(fake, 10.0) == pytest.approx(14 / 3)
    assert margin_hinge(fake, 10.0, "batch_mean") == pytest.approx(4.0)
    real = torch.tensor([0.5, 1.5, 1.0])
    assert discriminator_loss(real, fake, 10.0) == pytest.approx(1.0 + 14 / 3)
    assert margin_hinge(torch.tensor([11.0, 20.0]), 10.0) == 0.0


def test_hinge_gradient_only_reaches_fakes_below_the_margin():
    fake = torch.tensor([1.0, 5.0, 12.0], requires_grad=True)
    margin_hinge(fake, 10.0).backward()
    torch.testing.assert_close(fake.grad, torch.tensor([-1 / 3, -1 / 3, 0.0]))


def test_generator_loss_adds_weighted_pt():
    energy, codes = torch.tensor([2.0, 4.0]), torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert generator_loss(energy) == pytest.approx(3.0)
    assert generator_loss(energy, codes, 0.1) == pytest.approx(3.0 + 0.1 * 0.5)  # cos^2 = 1/2 for both pairs
    with pytest.raises(ValueError, match="codes"):
        generator_loss(energy, None, 0.1)


def test_margin_schedules():
    assert margin_at(3.0, 10.0) == 10.0
    assert margin_at(0.0, 10.0, "linear", 0.0, 4.0) == 10.0
    assert margin_at(1.0, 10.0, "linear", 0.0, 4.0) == pytest.approx(7.5)
    assert margin_at(9.0, 10.0, "linear", 2.0, 4.0) == pytest.approx(2.0)
    assert margin_at(2.0, 10.0, "exponential", 0.1, 4.0) == pytest.approx(1.0)  # sqrt(10 * 0.1)
    assert margin_at(1.9, 10.0, "step", 0.0, 4.0, step_every=1.0) == pytest.approx(7.5)
    assert margin_at(2.0, 10.0, "step", 0.0, 4.0, step_every=2.0) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="exponential"):
        margin_at(1.0, 10.0, "exponential", 0.0, 4.0)


def test_gan_losses_match_their_formulas():
    real, fake = torch.tensor([0.3, -1.2]), torch.tensor([2.0, -0.5])
    sig = torch.sigmoid
    expected_d = -(sig(real).log().mean() + (1 - sig(fake)).log().mean())
    assert gan_discriminator_loss(real, fake) == pytest.approx(float(expected_d), rel=1e-6)
    assert gan_generator_loss(fake) == pytest.approx(float(-sig(fake).log().mean()), rel=1e-6)


def test_mnist_score_matches_scipy_kl():
    probs = torch.softmax(torch.randn(50, 10, dtype=torch.float64) * 3, dim=1)
    p_y = probs.mean(0).numpy()
    expected = np.mean([entropy(p_y, p) for p in probs.numpy()])  # KL(p(y) || p(y|x))
    assert mnist_score(probs) == pytest.approx(expected, rel=1e-10)
    # one-hot p(y|x) meets the 1e-12 clamp: sum_y 0.1 (log 0.1 - 0.9 log 1e-12)
    assert mnist_score(torch.eye(10)) == pytest.approx(-math.log(10) - 0.9 * math.log(1e-12), rel=1e-6)
    assert mnist_score(probs[:1].repeat(7, 1)) == pytest.approx(0.0, abs=1e-12)


def test_mnist_score_metric_is_batching_invariant():
    probs = torch.softmax(torch.randn(40, 10, dtype=torch.float64), dim=1)
    metric = MNISTScore(classifier=None, from_probs=True)
    for chunk in probs.split(7):
        metric.update(chunk)
    assert metric.compute() == pytest.approx(float(mnist_score(probs)), rel=1e-10)


def _u_with_ties(xs, ys) -> float:
    """Mann-Whitney U of ``xs`` over ``ys``: pairs won, ties counting a half."""
    return sum((a > b) + 0.5 * (a == b) for a in xs for b in ys)


def _enumerated_p(x, y) -> float:
    """P(U >= U observed) over every split of the pooled values into parts of len(x) and len(y): the reference."""
    pooled, observed = [*x, *y], _u_with_ties(x, y)
    splits = list(itertools.combinations(range(len(pooled)), len(x)))
    hits = sum(
        _u_with_ties([pooled[i] for i in chosen], [pooled[i] for i in range(len(pooled)) if i not in chosen])
        >= observed - 1e-9
        for chosen in splits
    )
    return hits / len(splits)


@pytest.mark.parametrize("sizes", [(5, 4), (6, 6), (3, 8), (1, 5), (7, 2)])
def test_mann_whitney_exact_counts_every_split_with_ties(sizes):
    rng = np.random.default_rng(sum(sizes))
    for shift in (0.0, 1.0, 3.0):
        x = np.round(rng.normal(shift, 1.0, sizes[0]))  # rounded to integers: ties within and across the samples
        y = np.round(rng.normal(0.0, 1.0, sizes[1]))
        assert mann_whitney_greater_exact(x, y) == pytest.approx(_enumerated_p(list(x), list(y)), rel=1e-12)


def test_mann_whitney_exact_matches_scipy_exact_without_ties_and_closed_forms_in_the_far_tail():
    rng = np.random.default_rng(0)
    for n, m, shift in ((30, 25, 0.5), (12, 40, 1.0), (50, 9, -0.3)):
        x, y = rng.normal(shift, 1, n), rng.normal(0, 1, m)
        scipy_p = mannwhitneyu(x, y, alternative="greater", method="exact").pvalue
        assert mann_whitney_greater_exact(x, y) == pytest.approx(scipy_p, rel=1e-10)
    # complete separation, even with the lower sample all tied at 0: only x's own split reaches its rank sum
    assert mann_whitney_greater_exact(np.arange(1.0, 97.0), np.zeros(96)) == pytest.approx(1 / math.comb(192, 96))
    assert mann_whitney_greater_exact([2.0, 3.0, 4.0], [5.0, 6.0]) == 1.0  # every split reaches the lowest sum
    assert mann_whitney_greater_exact([1.0, 1.0], [1.0, 1.0, 1.0]) == 1.0  # all tied: every split has one sum
    assert mann_whitney_greater_exact(np.arange(26.0), np.arange(26.0, 59.0)) == 1.0  # its float sum passes C(n, k)


def test_mann_whitney_exact_work_counts_the_cheaper_table_and_bounds_the_count():
    # doubled midranks: y's 2, x's 4 and 6 (sum 10, of 12). Counting y's 1-subsets of sum <= 2: 2 x 3 cells, one
    # rank <= 2 to add; counting x's 2-subsets of top-down ranks (8 - r: 4, 2, 6) of sum <= 6: 3 x 7 cells, 3 ranks
    assert mann_whitney_exact_work([2.0, 3.0], [1.0]) == 2 * 3 * 1
    assert mann_whitney_greater_exact([2.0, 3.0], [1.0]) == pytest.approx(1 / 3)
    # x's 2 and 6 against y's 4: y's 1-subsets of sum <= 4 in 2 x 5 cells, 2 ranks to add; 2 of the 3 splits reach 8
    assert mann_whitney_exact_work([1.0, 3.0], [2.0]) == 2 * 5 * 2
    assert mann_whitney_greater_exact([1.0, 3.0], [2.0]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="max_work=1,000"):
        mann_whitney_greater_exact(np.arange(20.0), np.arange(20.0) - 0.5, max_work=1000)


def test_mann_whitney_exact_rejects_empty_and_non_finite_samples():
    with pytest.raises(ValueError, match="non-empty 1-D"):
        mann_whitney_greater_exact([], [1.0])
    with pytest.raises(ValueError, match="finite"):
        mann_whitney_greater_exact([1.0, float("nan")], [0.0])
