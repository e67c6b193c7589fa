"""``LadderNetwork``: the fully connected Ladder Network of Rasmus et al. (arXiv:1507.02672) as an ``nn.Module``,
its parameters and batch-normalisation statistics around the pure functions of :mod:`iclr17.functional.ladder`."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from iclr17.functional.ladder import (
    COMBINATOR_INIT,
    EncoderPass,
    decoder_pass,
    denoising_cost,
    encoder_pass,
)

PERMUTATION_INVARIANT_MNIST = (784, 1000, 500, 250, 250, 250, 10)  # the authors' run.py encoder


class LadderNetwork(nn.Module):
    """Encoder ``784-1000-500-250-250-250-10`` with Gaussian noise and a gaussian-combinator decoder
    (arXiv:1507.02672 sections 2-3, Algorithm 1; the CuriousAI/ladder ``run.py`` recipe for MNIST).

    Parameters, initialised as the authors' code does: ``W_l`` and ``V_l ~ N(0, 1 / fan_in)``, ``beta_l = 0``,
    the top scale ``gamma_L = 1`` (``top_scale``), the combinators' ``a`` at ``(0, 1, 0, 0, 0, 0, 1, 0, 0, 0)``.

    Batch normalisation: in training every pass (clean or corrupted) uses the statistics of the batch it is given,
    so callers pass labelled, unlabelled (and, in EBGAN-LN, generated) examples separately, as the authors'
    encoder normalises its labelled and unlabelled halves separately. In ``eval()`` the encoder uses the running
    statistics, which only :meth:`update_running_statistics` changes (from the clean pass of the labelled
    batch, as the authors'): averages of the first ``running_average_cap`` batches, then an exponential moving
    average with weight ``1 / running_average_cap`` (the authors' counter capped at 10), with the unbiased
    variance. The authors' final evaluation re-estimates them in one pass over the training batches instead;
    once the learning rate has decayed to 0 the two agree (``docs/papers/ebgan.md``).

    Args:
        widths: ``d_0, ..., d_L``, input to classes (default ``784-1000-500-250-250-250-10``).
        input_noise_std: standard deviation of the noise added to the input in the corrupted pass (0.3).
        noise_std: standard deviation of the noise added to every layer above the input (0.3).
        top_scale: a learned scale gamma on the softmax layer (the authors' ``top_c``, true).
        running_average_cap: the running statistics' counter cap (10 in the authors' code).
    """

    def __init__(
        self,
        widths: list[int] | None = None,
        input_noise_std: float = 0.3,
        noise_std: float = 0.3,
        top_scale: bool = True,
        running_average_cap: int = 10,
    ) -> None:
        widths = list(PERMUTATION_INVARIANT_MNIST if widths is None else widths)
        if len(widths) < 2 or any(not isinstance(w, int) or w < 1 for w in widths):
            raise ValueError(f"widths must be at least two positive integers (input, ..., classes), got {widths}")
        if input_noise_std < 0 or noise_std < 0:
            raise ValueError(f"input_noise_std and noise_std must be >= 0, got {input_noise_std} and {noise_std}")
        if running_average_cap < 1:
            raise ValueError(f"running_average_cap must be a positive integer, got {running_average_cap}")
        super().__init__()
        self.widths = widths
        self.input_noise_std, self.noise_std = input_noise_std, noise_std
        self.running_average_cap = running_average_cap
        pairs = list(zip(widths[:-1], widths[1:], strict=True))
        self.encoder_weights = nn.ParameterList(nn.Parameter(torch.randn(i, o) / math.sqrt(i)) for i, o in pairs)
        self.betas = nn.ParameterList(nn.Parameter(torch.zeros(o)) for _, o in pairs)
        self.top_gamma = nn.Parameter(torch.ones(widths[-1])) if top_scale else None
        self.decoder_weights = nn.ParameterList(nn.Parameter(torch.randn(o, i) / math.sqrt(o)) for i, o in pairs)
        init = torch.tensor(COMBINATOR_INIT).unsqueeze(1)
        self.combinators = nn.ParameterList(nn.Parameter(init.repeat(1, w)) for w in widths)
        for layer, width in enumerate(widths[1:], start=1):
            self.register_buffer(f"running_mean_{layer}", torch.zeros(width))
            self.register_buffer(f"running_var_{layer}", torch.ones(width))
        self.register_buffer("running_count", torch.tensor(1, dtype=torch.long))

    @property
    def num_layers(self) -> int:
        """L, the number of encoder layers above the input."""
        return len(self.widths) - 1

    def running_statistics(self) -> list[tuple[Tensor, Tensor]]:
        return [
            (getattr(self, f"running_mean_{layer}"), getattr(self, f"running_var_{layer}"))
            for layer in range(1, self.num_layers + 1)
        ]

    def encode(self, x: Tensor, corrupted: bool, generator: torch.Generator | None = None) -> EncoderPass:
        """The clean or corrupted encoder pass on ``x`` ``(N, d_0)`` (flattened), with the batch's statistics in
        training and the running ones in ``eval()``; the noise comes from ``generator``."""
        if x.dim() != 2 or x.shape[1] != self.widths[0]:
            raise ValueError(f"LadderNetwork takes flattened inputs (N, {self.widths[0]}), got {tuple(x.shape)}")
        return encoder_pass(
            x,
            list(self.encoder_weights),
            list(self.betas),
            self.top_gamma,
            self.input_noise_std if corrupted else 0.0,
            self.noise_std if corrupted else 0.0,
            generator,
            None if self.training else self.running_statistics(),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Class logits of the clean encoder (the classifier the Ladder Network is evaluated as)."""
        return self.encode(x.flatten(1), corrupted=False).logits

    @torch.no_grad()
    def update_running_statistics(self, means: list[Tensor], variances: list[Tensor], count: int) -> None:
        """Fold the batch statistics of layers ``1 .. L`` (``EncoderPass.mean[1:]`` and ``.var[1:]`` of a clean pass:
        means and biased variances over ``count`` examples) into the running ones (see the class docstring)."""
        if len(means) != self.num_layers or len(variances) != self.num_layers:
            raise ValueError(
                f"update_running_statistics needs a mean and a variance for each of the {self.num_layers} layers, "
                f"got {len(means)} and {len(variances)}"
            )
        if count < 2:
            raise ValueError(f"the running statistics need a clean batch of at least 2 examples, got {count}")
        weight = 1.0 / float(min(int(self.running_count), self.running_average_cap))
        for (running_mean, running_var), mean, var in zip(self.running_statistics(), means, variances, strict=True):
            running_mean.mul_(1 - weight).add_(weight * mean)
            running_var.mul_(1 - weight).add_(weight * var * count / (count - 1))
        self.running_count.add_(1).clamp_(max=self.running_average_cap)

    def denoising_costs(
        self, x: Tensor, layers_weighted: list[bool], generator: torch.Generator | None = None
    ) -> Tensor:
        """Per-sample denoising costs ``C^(l)(x_n)`` ``(N, L + 1)`` of the batch ``x`` (arXiv:1507.02672 Algorithm
        1): the corrupted pass and the decoder, compared with the clean pass. Costs of layers whose
        ``layers_weighted`` entry is false are left at 0 and the clean pass is skipped when only the input layer
        is weighted (its clean target is ``x`` itself): the bottom-layer-only Ladder Network. As in the authors'
        graph, gradients also flow through the clean targets and statistics of the upper layers."""
        if len(layers_weighted) != self.num_layers + 1:
            raise ValueError(f"layers_weighted needs {self.num_layers + 1} entries, got {len(layers_weighted)}")
        corrupted = self.encode(x, corrupted=True, generator=generator)
        reconstructions = decoder_pass(corrupted, list(self.decoder_weights), list(self.combinators))
        clean = self.encode(x, corrupted=False) if any(layers_weighted[1:]) else None
        costs = [denoising_cost(reconstructions[0], x)]
        for layer in range(1, self.num_layers + 1):
            if layers_weighted[layer]:
                target, mean, var = clean.z[layer], clean.mean[layer], clean.var[layer]
                costs.append(denoising_cost(reconstructions[layer], target, mean, var))
            else:
                costs.append(x.new_zeros(x.shape[0]))
        return torch.stack(costs, dim=1)
