"""EBGAN's training switches against hand-computed updates: ``d_steps_per_g``, ``resample_z_for_g``,
``detach_recon_target``, ``z_distribution``, ``gradient_clip_val``, ``hinge_reduction`` and ``eval_seed``.

Tiny G and D (small MLPs, no BatchNorm or dropout) take one batch with plain SGD; the reference replays the
module's noise stream from its seed and redoes every step with plain torch autograd on copies of the nets, with
the losses of eqs 1-2 and 13 written out here (docs/papers/ebgan.md)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from functools import partial

import pytest
import pytorch_lightning as pl
import torch
from scipy import stats
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from iclr17.modules import EBGAN

Z_DIM, DIM, N = 3, 4, 8
NOISE_SEED = 11
LR_G, LR_D = 0.05, 0.2  # different, so a step with the other network's optimizer shows


class TinyG(nn.Module):
    z_dim = Z_DIM

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(Z_DIM, 5), nn.Tanh(), nn.Linear(5, DIM))

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class TinyAE(nn.Module):
    """An auto-encoder D: ``(reconstruction, code)``."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(DIM, 2), nn.Tanh())
        self.dec = nn.Linear(2, DIM)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        code = self.enc(x)
        return self.dec(code), code


class RecordingSGD(torch.optim.SGD):
    """Plain SGD that records the total gradient norm it is asked to step with."""

    def __init__(self, params, lr: float, seen: list[float]) -> None:
        super().__init__(params, lr=lr)
        self.seen = seen

    def step(self, closure=None):
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        self.seen.append(float(torch.cat([g.flatten() for g in grads]).norm()))
        return super().step(closure)


def _nets(seed: int = 0) -> tuple[TinyG, TinyAE]:
    torch.manual_seed(seed)
    return TinyG(), TinyAE()


def _batch(seed: int = 1) -> Tensor:
    return torch.randn(N, DIM, generator=torch.Generator().manual_seed(seed))


def _draws(seed: int, uniform: bool = False) -> Iterator[Tensor]:
    """The module's noise stream replayed: one ``(N, Z_DIM)`` draw after another."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        if uniform:
            yield torch.rand(N, Z_DIM, generator=generator) * 2 - 1
        else:
            yield torch.randn(N, Z_DIM, generator=generator)


def _energy(d: nn.Module, x: Tensor, target: Tensor) -> Tensor:
    """Eq 13 by hand: ``||Dec(Enc(x)) - target||`` per sample."""
    return (d(x)[0] - target).pow(2).sum(dim=1).sqrt()


def _sgd(net: nn.Module, loss: Tensor, lr: float, clip: float | None) -> tuple[float, float]:
    """One SGD step of ``net`` on ``loss``, the gradient rescaled to norm ``min(raw, clip)``; (raw, used) norms."""
    params = list(net.parameters())
    grads = torch.autograd.grad(loss, params)
    raw = float(torch.sqrt(sum(g.pow(2).sum() for g in grads)))
    scale = 1.0 if clip is None else min(1.0, clip / raw)
    with torch.no_grad():
        for p, g in zip(params, grads, strict=True):
            p -= lr * scale * g
    return raw, raw * scale


def _reference(
    g: nn.Module,
    d: nn.Module,
    x: Tensor,
    draws: Iterator[Tensor],
    margin: float,
    d_steps: int = 1,
    resample: bool = False,
    detach: bool = False,
    reduction: str = "per_sample",
    clip: float | None = None,
) -> dict:
    """One training batch redone on copies: ``d_steps`` D steps (fresh z after the first, same x), then one G step
    on the first z (or a fresh one when ``resample``)."""
    g, d = copy.deepcopy(g), copy.deepcopy(d)
    norms: dict[str, list] = {"d": [], "g": []}
    z = next(draws)
    for i in range(d_steps):
        with torch.no_grad():
            fake = g(z if i == 0 else next(draws))
        real_energy, fake_energy = _energy(d, x, x), _energy(d, fake, fake)
        if reduction == "per_sample":
            hinge = torch.clamp(margin - fake_energy, min=0).mean()
        else:
            hinge = torch.clamp(margin - fake_energy.mean(), min=0)
        loss_d = real_energy.mean() + hinge
        norms["d"].append(_sgd(d, loss_d, LR_D, clip))
    if resample:
        z = next(draws)
    fake = g(z)
    loss_g = _energy(d, fake, fake.detach() if detach else fake).mean()
    norms["g"].append(_sgd(g, loss_g, LR_G, clip))
    return {"g": g, "d": d, "loss_d": loss_d.item(), "loss_g": loss_g.item(), "norms": norms}


def _margin(g: nn.Module, d: nn.Module, quantile: float = 0.75) -> float:
    """A margin inside the first fakes' energies, so the per-sample hinge is active for some fakes only."""
    with torch.no_grad():
        fake = g(next(_draws(NOISE_SEED)))
        return float(_energy(d, fake, fake).quantile(quantile))


def _fit(g: nn.Module, d: nn.Module, x: Tensor, opt_g=None, opt_d=None, **kwargs) -> tuple[EBGAN, pl.Trainer]:
    model = EBGAN(
        copy.deepcopy(g),
        copy.deepcopy(d),
        optimizer_g=opt_g or partial(torch.optim.SGD, lr=LR_G),
        optimizer_d=opt_d or partial(torch.optim.SGD, lr=LR_D),
        **kwargs,
    )
    model.noise_rng = torch.Generator().manual_seed(NOISE_SEED)
    trainer = _trainer(max_epochs=1, limit_val_batches=0, log_every_n_steps=1)
    trainer.fit(model, DataLoader(TensorDataset(x), batch_size=N))
    return model, trainer


def _trainer(**kwargs) -> pl.Trainer:
    defaults = dict(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    return pl.Trainer(**{**defaults, **kwargs})


def _assert_same_weights(model: EBGAN, reference: dict) -> None:
    for mine, theirs in ((model.generator, reference["g"]), (model.discriminator, reference["d"])):
        for (name, p), q in zip(mine.named_parameters(), theirs.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)


def _differ(a: dict, b: dict) -> bool:
    params = [(p, q) for net in ("g", "d") for p, q in zip(a[net].parameters(), b[net].parameters(), strict=True)]
    return any((p - q).abs().max() > 1e-4 for p, q in params)


@pytest.mark.parametrize("d_steps", [1, 2, 3])
def test_d_steps_per_g_makes_that_many_d_steps_on_fresh_noise_then_one_g_step(d_steps):
    g, d = _nets()
    x, margin = _batch(), _margin(g, d)
    model, _ = _fit(g, d, x, margin=margin, d_steps_per_g=d_steps)
    reference = _reference(g, d, x, _draws(NOISE_SEED), margin, d_steps=d_steps)
    _assert_same_weights(model, reference)
    # the module's noise stream advanced by exactly d_steps draws (the G step reused the first z)
    replay = _draws(NOISE_SEED)
    for _ in range(d_steps):
        next(replay)
    torch.testing.assert_close(model.sample_noise(N), next(replay), rtol=0, atol=0)
    if d_steps > 1:  # the switch matters here: reusing the first z for every D step is a different update
        reused = iter([next(_draws(NOISE_SEED))] * d_steps)
        assert _differ(reference, _reference(g, d, x, reused, margin, d_steps=d_steps))


@pytest.mark.parametrize("z_distribution", ["normal", "uniform"])
@pytest.mark.parametrize("resample", [False, True])
def test_resample_z_for_g_steps_g_on_a_fresh_draw(resample, z_distribution):
    g, d = _nets(2)
    x = _batch(3)
    margin = _margin(g, d)
    model, _ = _fit(g, d, x, margin=margin, d_steps_per_g=2, resample_z_for_g=resample, z_distribution=z_distribution)
    uniform = z_distribution == "uniform"
    reference = _reference(g, d, x, _draws(NOISE_SEED, uniform), margin, d_steps=2, resample=resample)
    _assert_same_weights(model, reference)
    other = _reference(g, d, x, _draws(NOISE_SEED, uniform), margin, d_steps=2, resample=not resample)
    assert _differ(reference, other)  # G's z is visible in the update


@pytest.mark.parametrize("detach", [False, True])
def test_detach_recon_target_removes_the_targets_share_of_gs_gradient(detach):
    g, d = _nets(4)
    x = _batch(5)
    margin = _margin(g, d)
    model, trainer = _fit(g, d, x, margin=margin, detach_recon_target=detach)
    reference = _reference(g, d, x, _draws(NOISE_SEED), margin, detach=detach)
    _assert_same_weights(model, reference)
    assert float(trainer.callback_metrics["train/loss_g"]) == pytest.approx(reference["loss_g"], rel=1e-5)
    other = _reference(g, d, x, _draws(NOISE_SEED), margin, detach=not detach)
    assert _differ(reference, other)  # the detached target changes G's step (and only G's: D's comes first)
    for p, q in zip(reference["d"].parameters(), other["d"].parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize("reduction", ["per_sample", "batch_mean"])
def test_hinge_reduction_in_the_d_step(reduction):
    """``batch_mean``: ``[m - mean_i E(G(z_i))]^+``; ``per_sample``: ``mean_i [m - E(G(z_i))]^+``. With m inside
    the fakes' energies and above their mean, the two differ in value and in D's gradient."""
    g, d = _nets(6)
    x = _batch(7)
    margin = _margin(g, d, quantile=0.75)
    with torch.no_grad():
        fake = g(next(_draws(NOISE_SEED)))
        energies = _energy(d, fake, fake)
    assert (energies < margin).any() and (energies >= margin).any() and margin > energies.mean()  # the general case
    model, trainer = _fit(g, d, x, margin=margin, hinge_reduction=reduction)
    reference = _reference(g, d, x, _draws(NOISE_SEED), margin, reduction=reduction)
    assert float(trainer.callback_metrics["train/loss_d"]) == pytest.approx(reference["loss_d"], rel=1e-5)
    _assert_same_weights(model, reference)
    flipped = "batch_mean" if reduction == "per_sample" else "per_sample"
    other = _reference(g, d, x, _draws(NOISE_SEED), margin, reduction=flipped)
    assert abs(reference["loss_d"] - other["loss_d"]) > 1e-3 and _differ(reference, other)


def test_uniform_noise_is_u_minus_one_one():
    model = EBGAN(TinyG(), TinyAE(), z_distribution="uniform")
    model.noise_rng = torch.Generator().manual_seed(0)
    z = model.sample_noise(1000)
    assert z.shape == (1000, Z_DIM)
    values = z.flatten().double().numpy()
    assert values.min() >= -1.0 and values.max() <= 1.0
    uniform = stats.uniform(loc=-1.0, scale=2.0).cdf
    assert stats.kstest(values, uniform).pvalue > 0.01
    for column in z.T:  # every coordinate on its own
        assert stats.kstest(column.double().numpy(), uniform).pvalue > 1e-3
    normal = EBGAN(TinyG(), TinyAE())  # the same test rejects the default N(0, 1)
    normal.noise_rng = torch.Generator().manual_seed(0)
    assert stats.kstest(normal.sample_noise(1000).flatten().double().numpy(), uniform).pvalue < 1e-6


@pytest.mark.parametrize("where", ["below_both", "between", "above_both"])
def test_gradient_clip_val_rescales_each_networks_gradient_to_min_of_norm_and_clip(where):
    g, d = _nets(8)
    x = _batch(9)
    margin = _margin(g, d)
    raw = _reference(g, d, x, _draws(NOISE_SEED), margin)["norms"]
    raw_d, raw_g = raw["d"][0][0], raw["g"][0][0]
    low, high = sorted((raw_d, raw_g))
    assert high > 1.2 * low  # so that "between" clips one network only
    clip = {"below_both": 0.5 * low, "between": (low * high) ** 0.5, "above_both": 2 * high}[where]
    seen_g: list[float] = []
    seen_d: list[float] = []
    model, _ = _fit(
        g,
        d,
        x,
        opt_g=partial(RecordingSGD, lr=LR_G, seen=seen_g),
        opt_d=partial(RecordingSGD, lr=LR_D, seen=seen_d),
        margin=margin,
        gradient_clip_val=clip,
    )
    reference = _reference(g, d, x, _draws(NOISE_SEED), margin, clip=clip)
    (ref_raw_d, _), (ref_raw_g, _) = reference["norms"]["d"][0], reference["norms"]["g"][0]
    assert len(seen_d) == len(seen_g) == 1
    assert seen_d[0] <= clip * (1 + 1e-5) and seen_g[0] <= clip * (1 + 1e-5)
    assert seen_d[0] == pytest.approx(min(ref_raw_d, clip), rel=1e-5)
    assert seen_g[0] == pytest.approx(min(ref_raw_g, clip), rel=1e-5)
    _assert_same_weights(model, reference)


def test_eval_seed_repeats_validation_and_leaves_the_training_noise_alone():
    g, d = _nets(10)
    data = torch.randn(2 * N, DIM, generator=torch.Generator().manual_seed(1))
    # the loader's own generator: a DataLoader iterator draws its base seed from the global RNG otherwise
    loader = DataLoader(TensorDataset(data), batch_size=N, generator=torch.Generator())
    model = EBGAN(g, d, margin=1.0, eval_seed=77)
    model.noise_rng = torch.Generator().manual_seed(NOISE_SEED)
    seen: list[Tensor] = []
    model.generator.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].clone()))
    training_noise, global_rng = model.noise_rng.get_state(), torch.random.get_rng_state()
    first = _trainer().validate(model, loader, verbose=False)[0]
    second = _trainer().validate(model, loader, verbose=False)[0]
    assert first == second and set(first) == {"val/energy_real", "val/energy_fake"}
    replay = torch.Generator().manual_seed(77)  # eval_seed + rank 0, reset at every evaluation
    expected = [torch.randn(N, Z_DIM, generator=replay) for _ in range(2)]
    assert len(seen) == 4
    for got, want in zip(seen, expected * 2, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert torch.equal(model.noise_rng.get_state(), training_noise)
    assert torch.equal(torch.random.get_rng_state(), global_rng)
    # the fake energy is the mean over those samples, by hand
    with torch.no_grad():
        fakes = torch.cat([g(z) for z in expected])
        assert first["val/energy_fake"] == pytest.approx(float(_energy(d, fakes, fakes).mean()), rel=1e-5)
    other = EBGAN(g, d, margin=1.0, eval_seed=78)
    assert _trainer().validate(other, loader, verbose=False)[0]["val/energy_fake"] != first["val/energy_fake"]


def test_validation_during_fit_does_not_shift_the_training_noise():
    """Training with validation (sanity check and per-epoch) equals training without it, step for step."""
    g, d = _nets(12)
    data = torch.randn(N, DIM, generator=torch.Generator().manual_seed(13))
    loader = DataLoader(TensorDataset(data), batch_size=N)
    models = []
    for val in (None, loader):
        model = EBGAN(
            copy.deepcopy(g),
            copy.deepcopy(d),
            margin=1.0,
            optimizer_g=partial(torch.optim.SGD, lr=LR_G),
            optimizer_d=partial(torch.optim.SGD, lr=LR_D),
        )
        model.noise_rng = torch.Generator().manual_seed(NOISE_SEED)
        _trainer(max_epochs=2, limit_val_batches=1 if val else 0).fit(model, loader, val)
        models.append(model)
    for p, q in zip(models[0].parameters(), models[1].parameters(), strict=True):
        assert torch.equal(p, q)
    assert torch.equal(models[0].noise_rng.get_state(), models[1].noise_rng.get_state())
