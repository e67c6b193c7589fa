"""A from-scratch reference for the vmapped halting-time ensembles (``iclr17.studies.mlp_ensemble``): one network
trained by a plain ``torch.optim.SGD`` loop over its own seeded sample, and its halting steps read off that run's
trace by plain loops."""

from collections.abc import Callable, Iterable

import pytest
import torch
import torch.nn.functional as F
from torch import nn


def plain_sgd_run(
    make_net: Callable[[], nn.Module],
    seed: int,
    order_seed: int,
    x: torch.Tensor,
    y: torch.Tensor,
    x_held: torch.Tensor,
    y_held: torch.Tensor,
    *,
    sample_size: int,
    lr: float,
    batch_size: int,
    every: int,
    max_steps: int,
    eval_size: int | None = None,
) -> list[tuple[int, float, float, float, float]]:
    """One network from scratch: ``make_net()`` in float64 right after ``torch.manual_seed(seed)``; its sample is the
    first ``sample_size`` of a permutation of ``range(len(x))`` from its order generator, then a permutation of the
    sample each epoch (the remainder dropped); SGD on ``x[sample]`` alone. Returns its trace: at every ``every``-th
    step, ``(step, full loss over the sample (or its first eval_size), its gradient norm, train accuracy, held-out
    accuracy)``."""
    order_generator = torch.Generator().manual_seed(order_seed)
    sample = torch.randperm(len(x), generator=order_generator)[:sample_size]
    xs, ys = x[sample], y[sample]
    xe, ye = xs[:eval_size], ys[:eval_size]
    steps_per_epoch = sample_size // batch_size
    torch.manual_seed(seed)
    net = make_net().double()
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    trace = []
    for step in range(max_steps + 1):
        if step % every == 0:
            net.zero_grad()
            loss = F.cross_entropy(net(xe), ye)
            loss.backward()
            norm = torch.cat([p.grad.flatten() for p in net.parameters()]).norm().item()
            with torch.no_grad():
                train_acc = (net(xe).argmax(-1) == ye).double().mean().item()
                held_acc = (net(x_held).argmax(-1) == y_held).double().mean().item()
            trace.append((step, loss.item(), norm, train_acc, held_acc))
        if step == max_steps:
            break
        within = step % steps_per_epoch
        if within == 0:
            order = torch.randperm(sample_size, generator=order_generator)
        batch = order[within * batch_size : (within + 1) * batch_size]
        optimizer.zero_grad()
        F.cross_entropy(net(xs[batch]), ys[batch]).backward()
        optimizer.step()
    return trace


def rule_value(trace: list[tuple], i: int, rule: str, window: int) -> float:
    """The halting rule's value at the ``i``-th evaluation of a trace: the loss, the gradient norm or (plateau) the
    mean decrease of the loss over the last ``window`` evaluations (nan before there are that many)."""
    losses = [t[1] for t in trace]
    if rule == "train_loss_below":
        return losses[i]
    if rule == "grad_norm_below":
        return trace[i][2]
    return (losses[i - window] - losses[i]) / window if i >= window else float("nan")


def first_hits(trace: list[tuple], rule: str, thresholds: list[float], window: int) -> list[tuple[int, float, float]]:
    """``(step, train accuracy, held-out accuracy)`` at the first evaluation where ``rule`` holds at each threshold,
    or ``(-1, accuracies at the last step)``: a plain loop over the run's own trace."""
    hits = []
    for threshold in thresholds:
        hit = next(
            ((t[0], t[3], t[4]) for i, t in enumerate(trace) if rule_value(trace, i, rule, window) < threshold), None
        )
        hits.append(hit or (-1, trace[-1][3], trace[-1][4]))
    return hits


def reference_halting(
    make_net: Callable[[], nn.Module],
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    rule: str,
    thresholds: list[float],
    *,
    seeds: list[int],
    order_seeds: list[int],
    window: int,
    **loop,
) -> tuple[list[list[tuple]], list[list[int]], dict[str, torch.Tensor]]:
    """:func:`plain_sgd_run` on ``data = (x, y, x_held, y_held)`` (``loop``: its keywords) for each ``(seed, order
    seed)`` and :func:`first_hits` on each trace, laid out as the ensemble returns them: the traces, the first steps
    (run x threshold, -1 if never) and the ``train`` / ``held_out`` accuracies there (float64)."""
    traces = [plain_sgd_run(make_net, s, o, *data, **loop) for s, o in zip(seeds, order_seeds, strict=True)]
    hits = [first_hits(trace, rule, thresholds, window) for trace in traces]
    first = [[hit[0] for hit in member] for member in hits]
    accuracy = {
        name: torch.tensor([[hit[column] for hit in member] for member in hits], dtype=torch.float64)
        for name, column in (("train", 1), ("held_out", 2))
    }
    return traces, first, accuracy


def rule_cases(rules: Iterable[str]) -> list:
    """``(rule, eval_size)`` cases of a reference test: every rule on the full loss (``None``) and both evaluated
    rules on a subset of 25; the default suite runs one of each kind (the plateau rule on the full loss, the
    gradient-norm rule on a subset), ``make test-all`` the rest (the same code paths)."""
    default = {("loss_plateau", None), ("grad_norm_below", 25)}
    cases = [(rule, None) for rule in rules] + [("loss_plateau", 25), ("grad_norm_below", 25)]
    return [pytest.param(*case, marks=() if case in default else pytest.mark.slow) for case in cases]
