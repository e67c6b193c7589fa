"""K small MLPs trained by SGD in one tensor program (``torch.func.functional_call`` + ``vmap`` over stacked
parameters), each with its own initialisation seed and sample order, each halting when its full training loss
falls below theta or when that loss reaches a plateau (the paper's rule): the deep-net ensembles of the
halting-time paper (arXiv:1511.06444).
"""

from __future__ import annotations

import copy
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, stack_module_state, vmap

from iclr17.functional.halting import (  # the rules HaltingTime applies
    mean_successive_decrease,
    push_cost,
    update_first_hits,
)
from iclr17.modules.nets import MLP


def init_ensemble(widths: list[int], seeds: list[int]) -> tuple[nn.Module, dict[str, Tensor]]:
    """``(base, params)``: member k is ``MLP(widths)`` built right after ``torch.manual_seed(seeds[k])`` (the
    global RNG is restored afterwards); ``params`` stacks their parameters along a new first dimension and
    ``base`` is a parameter-free (meta) copy for ``functional_call``."""
    members = []
    with torch.random.fork_rng():
        for seed in seeds:
            torch.manual_seed(seed)
            members.append(MLP(widths))
    params, _ = stack_module_state(members)
    return copy.deepcopy(members[0]).to("meta"), {k: v.detach() for k, v in params.items()}


def train_until_halted(
    base: nn.Module, params: dict[str, Tensor], x: Tensor, y: Tensor, thresholds: Tensor, order_seeds: list[int],
    lr: float = 0.1, batch_size: int = 100, every_n_steps: int = 1, max_steps: int = 10_000,
    rule: Literal["train_loss_below", "loss_plateau"] = "train_loss_below", window: int = 10,
) -> tuple[Tensor, int]:  # fmt: skip
    """Minibatch SGD on K members in lockstep until each one's stopping rule holds at every threshold.

    Member k draws a fresh permutation of the ``n`` samples from ``torch.Generator().manual_seed(order_seeds[k])``
    at every epoch (``n // batch_size`` steps, the remainder dropped) and steps ``p <- p - lr grad``. The full
    training loss (mean cross-entropy over all of ``x``) is evaluated before the first step and every
    ``every_n_steps`` steps. The rule compares with ``thresholds[e]``, as ``HaltingTime`` does with its
    ``full_data`` loss: ``train_loss_below``, that loss; ``loss_plateau`` (arXiv:1511.06444, the MNIST
    experiments: stop "when the average of successive differences in cost values goes below a prescribed
    value"), the mean of the member's last ``window`` successive loss decreases between evaluations
    (``iclr17.functional.halting.mean_successive_decrease``; window ours), first possible at evaluation
    ``window``. Returns ``(first, last_step)`` with ``first[k, e]`` the number of SGD steps taken when member
    k's rule first held at ``thresholds[e]`` (-1: censored at ``last_step``). Halted members are dropped from
    the working set.
    """
    if rule not in ("train_loss_below", "loss_plateau"):
        raise ValueError(f"rule must be 'train_loss_below' or 'loss_plateau', got rule={rule!r}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window (loss differences averaged by loss_plateau) must be an int >= 1, got {window!r}")

    def loss_of(p: dict[str, Tensor], xb: Tensor, yb: Tensor) -> Tensor:
        return F.cross_entropy(functional_call(base, p, (xb,)), yb)

    step_grad = vmap(grad(loss_of))
    full_loss = vmap(loss_of, in_dims=(0, None, None))
    k, n = len(order_seeds), len(x)
    steps_per_epoch = n // batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size={batch_size} is larger than the {n} training samples")
    generators = [torch.Generator().manual_seed(s) for s in order_seeds]
    first = torch.full((k, len(thresholds)), -1, dtype=torch.long)
    recent = torch.full((k, window + 1), math.nan, dtype=torch.float64)  # each member's last losses, oldest first
    active = torch.arange(k)
    order = torch.empty(0)
    step = 0
    for step in range(max_steps + 1):
        if step % every_n_steps == 0:
            with torch.no_grad():
                losses = full_loss(params, x, y)
            values = losses.cpu()
            if rule == "loss_plateau":
                recent[active] = push_cost(recent[active], values)
                values = mean_successive_decrease(recent[active])  # NaN (never below) until the window is full
            first[active] = update_first_hits(first[active], values, thresholds, step)
            halted = (first[active] >= 0).all(dim=1)
            if bool(halted.all()):
                break
            if bool(halted.any()):
                keep = ~halted
                active, order = active[keep], order[keep.to(order.device)] if len(order) else order
                params = {name: value[keep.to(value.device)] for name, value in params.items()}
        if step == max_steps:
            break
        if step % steps_per_epoch == 0:
            order = torch.stack([torch.randperm(n, generator=generators[i]) for i in active.tolist()]).to(x.device)
        batch = order[:, (step % steps_per_epoch) * batch_size : (step % steps_per_epoch + 1) * batch_size]
        grads = step_grad(params, x[batch], y[batch])
        params = {name: value - lr * grads[name] for name, value in params.items()}
    return first, step
