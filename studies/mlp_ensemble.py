"""K small networks (MLPs, or the LeNet-like :class:`~iclr17.modules.nets.ConvNet`) trained by SGD in one tensor program
(``torch.func.functional_call`` + ``vmap`` over stacked parameters), each with its own initialisation seed, sample
order and, optionally, its own sample of the training images, each halting when its full training loss falls below
theta, when that loss reaches a plateau (the paper's rule) or when its gradient norm falls below theta: the deep-net
ensembles of the halting-time paper (arXiv:1511.06444), with each run's accuracy at halting on request.
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
from iclr17.modules.nets import MLP, ConvNet

Model = Literal["mlp", "convnet"]
MODELS = ("mlp", "convnet")


def init_ensemble(widths: list[int], seeds: list[int], model: Model = "mlp") -> tuple[nn.Module, dict[str, Tensor]]:
    """``(base, params)``: member k is ``MLP(widths)`` (``model="mlp"``) or ``ConvNet(widths)`` (``convnet``)
    built right after ``torch.manual_seed(seeds[k])`` (the global RNG is restored afterwards); ``params`` stacks
    their parameters along a new first dimension and ``base`` is a parameter-free (meta) copy for
    ``functional_call``."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, got model={model!r}")
    build = MLP if model == "mlp" else ConvNet
    members = []
    with torch.random.fork_rng():
        for seed in seeds:
            torch.manual_seed(seed)
            members.append(build(widths))
    params, _ = stack_module_state(members)
    return copy.deepcopy(members[0]).to("meta"), {k: v.detach() for k, v in params.items()}


Rule = Literal["train_loss_below", "loss_plateau", "grad_norm_below"]
RULES = ("train_loss_below", "loss_plateau", "grad_norm_below")
EVAL_ROWS = 1000  # samples per member per block when the full loss is taken over per-member samples


def draw_samples(n: int, sample_size: int, generators: list[torch.Generator]) -> Tensor:
    """``(K, sample_size)`` int64: member k's own training samples, the first ``sample_size`` entries of a
    permutation of ``range(n)`` drawn from ``generators[k]`` (so without replacement, and distinct across members
    with distinct seeds): arXiv:1511.06444, MNIST experiments, "each run samples 30,000 of the training images"."""
    if isinstance(sample_size, bool) or not isinstance(sample_size, int) or not 1 <= sample_size <= n:
        raise ValueError(f"sample_size must be an int between 1 and the {n} training samples, got {sample_size!r}")
    return torch.stack([torch.randperm(n, generator=g)[:sample_size] for g in generators])


def train_until_halted(
    base: nn.Module, params: dict[str, Tensor], x: Tensor, y: Tensor, thresholds: Tensor, order_seeds: list[int],
    lr: float = 0.1, batch_size: int = 100, every_n_steps: int = 1, max_steps: int = 10_000,
    rule: Rule = "train_loss_below", window: int = 10, sample_size: int | None = None,
    eval_size: int | None = None, accuracy_on: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, int] | tuple[Tensor, int, dict[str, Tensor]]:  # fmt: skip
    """Minibatch SGD on K members in lockstep until each one's stopping rule holds at every threshold.

    Member k's training set is all ``n`` samples of ``x``, or with ``sample_size`` its own ``sample_size`` of
    them (:func:`draw_samples`, from its order generator before its first epoch; arXiv:1511.06444, MNIST: "each
    run samples 30,000 of the training images"; default None, every member on all of ``x``). Member k draws a
    fresh permutation of its ``m`` samples from ``torch.Generator().manual_seed(order_seeds[k])`` at every epoch
    (``m // batch_size`` steps, the remainder dropped) and steps ``p <- p - lr grad``. Its full training loss
    (mean cross-entropy over its ``m`` samples, or with ``eval_size`` over the first ``eval_size`` of them, a fixed
    random subset: ours, for cost, since a full pass over 30,000 images costs about 100 SGD steps) is evaluated
    before the first step and every ``every_n_steps`` steps. The rule compares with ``thresholds[e]``, as
    ``HaltingTime`` does with its ``full_data`` loss: ``train_loss_below``, that loss; ``loss_plateau``
    (arXiv:1511.06444, the MNIST experiments: stop "when the average of successive differences in cost values goes
    below a prescribed value"), the mean of the member's last ``window`` successive loss decreases between
    evaluations (``iclr17.functional.halting.mean_successive_decrease``; window ours), first possible at evaluation
    ``window``; ``grad_norm_below`` (the paper's gradient-norm variant of the MNIST net), the Euclidean norm of the
    gradient of that full training loss over all parameters. Halted members are dropped from the working set.

    Returns ``(first, last_step)`` with ``first[k, e]`` the number of SGD steps taken when member k's rule first
    held at ``thresholds[e]`` (-1: censored at ``last_step``). With ``accuracy_on = (x_held, y_held)`` it returns
    ``(first, last_step, accuracy)`` too: ``accuracy["train"][k, e]`` and ``accuracy["held_out"][k, e]``, member
    k's accuracy on its own (evaluated) training samples and on ``(x_held, y_held)`` with the parameters it had
    when its rule first held at ``thresholds[e]`` (at ``last_step`` if censored); measuring leaves training as it
    was.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, got rule={rule!r}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window (loss differences averaged by loss_plateau) must be an int >= 1, got {window!r}")

    def logits_of(p: dict[str, Tensor], xb: Tensor) -> Tensor:
        return functional_call(base, p, (xb,))

    def loss_of(p: dict[str, Tensor], xb: Tensor, yb: Tensor) -> Tensor:
        return F.cross_entropy(logits_of(p, xb), yb)

    def sums_of(p: dict[str, Tensor], xb: Tensor, yb: Tensor) -> tuple[Tensor, Tensor]:
        logits = logits_of(p, xb)
        return F.cross_entropy(logits, yb, reduction="sum"), (logits.argmax(-1) == yb).sum()

    def loss_and_correct(p: dict[str, Tensor], xb: Tensor, yb: Tensor) -> tuple[Tensor, Tensor]:
        logits = logits_of(p, xb)
        return F.cross_entropy(logits, yb), (logits.argmax(-1) == yb).sum()

    step_grad = vmap(grad(loss_of))
    k, n = len(order_seeds), len(x)
    generators = [torch.Generator().manual_seed(s) for s in order_seeds]
    samples = None if sample_size is None else draw_samples(n, sample_size, generators).to(x.device)
    m = n if samples is None else sample_size
    steps_per_epoch = m // batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size={batch_size} is larger than the {m} training samples of a member")
    if eval_size is not None:
        if isinstance(eval_size, bool) or not isinstance(eval_size, int) or not 1 <= eval_size <= m:
            raise ValueError(f"eval_size must be an int between 1 and the {m} training samples, got {eval_size!r}")
        x_eval, y_eval = x[:eval_size], y[:eval_size]  # without a sample: the first eval_size of x
        samples_eval = None if samples is None else samples[:, :eval_size]
    else:
        x_eval, y_eval, samples_eval = x, y, samples
    m_eval = len(x_eval) if samples_eval is None else samples_eval.shape[1]

    def evaluate(p: dict[str, Tensor], members: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Full training loss, accuracy and (grad_norm_below) gradient norm of ``members``, parameters ``p``."""
        norm = None
        if samples_eval is None:  # one program over all of x (the shipped study's arithmetic, unchanged)
            loss, correct = vmap(loss_and_correct, in_dims=(0, None, None))(p, x_eval, y_eval)
            if rule == "grad_norm_below":
                grads = vmap(grad(loss_of), in_dims=(0, None, None))(p, x_eval, y_eval)
                norm = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads.values()]).sum(0).sqrt()
            return loss, correct.double() / m_eval, norm
        loss, correct, grads = 0.0, 0, None
        for start in range(0, m_eval, EVAL_ROWS):  # blocks of each member's own samples: memory K * EVAL_ROWS rows
            idx = samples_eval[members, start : start + EVAL_ROWS]
            block_loss, block_correct = vmap(sums_of)(p, x[idx], y[idx])
            loss, correct = loss + block_loss, correct + block_correct
            if rule == "grad_norm_below":
                block = vmap(grad(lambda q, xb, yb: sums_of(q, xb, yb)[0]))(p, x[idx], y[idx])
                grads = block if grads is None else {name: grads[name] + block[name] for name in grads}
        if grads is not None:
            norm = torch.stack([(g / m_eval).flatten(1).pow(2).sum(1) for g in grads.values()]).sum(0).sqrt()
        return loss / m_eval, correct.double() / m_eval, norm

    def held_out_accuracy(p: dict[str, Tensor]) -> Tensor:
        x_held, y_held = accuracy_on
        return vmap(lambda q: (logits_of(q, x_held).argmax(-1) == y_held).double().mean())(p)

    first = torch.full((k, len(thresholds)), -1, dtype=torch.long)
    accuracy = {name: torch.full((k, len(thresholds)), math.nan, dtype=torch.float64) for name in ("train", "held_out")}
    recent = torch.full((k, window + 1), math.nan, dtype=torch.float64)  # each member's last losses, oldest first
    active = torch.arange(k)
    order = torch.empty(0)
    step = 0
    for step in range(max_steps + 1):
        if step % every_n_steps == 0:
            with torch.no_grad():
                losses, train_accuracy, norms = evaluate(params, active.to(x.device))
            values = losses.cpu()
            if rule == "loss_plateau":
                recent[active] = push_cost(recent[active], values)
                values = mean_successive_decrease(recent[active])  # NaN (never below) until the window is full
            elif rule == "grad_norm_below":
                values = norms.detach().cpu()
            before, first[active] = first[active], update_first_hits(first[active], values, thresholds, step)
            if accuracy_on is not None:
                new = (first[active] >= 0) & (before < 0)  # (active, E): the thresholds first met now
                hit = new.any(dim=1)
                if bool(hit.any()):
                    rows, cells = active[hit], new[hit]
                    with torch.no_grad():
                        held = held_out_accuracy({name: v[hit.to(v.device)] for name, v in params.items()}).cpu()
                    trained = train_accuracy[hit.to(train_accuracy.device)].cpu().double()
                    accuracy["held_out"][rows] = torch.where(cells, held[:, None], accuracy["held_out"][rows])
                    accuracy["train"][rows] = torch.where(cells, trained[:, None], accuracy["train"][rows])
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
            order = torch.stack([torch.randperm(m, generator=generators[i]) for i in active.tolist()]).to(x.device)
            if samples is not None:  # positions in the member's own samples -> indices into x
                order = torch.gather(samples[active.to(x.device)], 1, order)
        batch = order[:, (step % steps_per_epoch) * batch_size : (step % steps_per_epoch + 1) * batch_size]
        grads = step_grad(params, x[batch], y[batch])
        params = {name: value - lr * grads[name] for name, value in params.items()}
    if accuracy_on is None:
        return first, step
    censored = (first[active] < 0).any(dim=1)
    if bool(censored.any()):  # the members still running at last_step: measured with their final parameters
        rows, cells = active[censored], first[active][censored] < 0
        kept = {name: v[censored.to(v.device)] for name, v in params.items()}
        with torch.no_grad():
            _, trained, _ = evaluate(kept, rows.to(x.device))
            held = held_out_accuracy(kept).cpu()
        accuracy["held_out"][rows] = torch.where(cells, held[:, None], accuracy["held_out"][rows])
        accuracy["train"][rows] = torch.where(cells, trained.cpu().double()[:, None], accuracy["train"][rows])
    return first, step, accuracy
