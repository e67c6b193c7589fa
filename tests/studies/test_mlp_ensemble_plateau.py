"""The vmapped MLP ensemble under the plateau rule of arXiv:1511.06444 (stop "when the average of successive
differences in cost values goes below a prescribed value"): each member halts where a plain SGD loop with its seed
and sample order, and a plain first-hit loop over that member's own full-loss sequence, say it does."""

import pytest
import torch
import torch.nn.functional as F

from iclr17.modules.nets import MLP
from iclr17.studies.halting import MLPRuns
from iclr17.studies.mlp_ensemble import init_ensemble, train_until_halted

WIDTHS, SEEDS, ORDER_SEEDS = [5, 8, 3], [11, 12, 13, 14], [21, 22, 23, 24]
LR, BATCH, EVERY, WINDOW, MAX_STEPS = 0.2, 16, 2, 4, 200


def _data():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(60, 5, generator=generator, dtype=torch.float64)
    return x, torch.randint(0, 3, (60,), generator=generator)


def _plain_full_losses(seed, order_seed, x, y):
    """One member by hand: ``nn.Module`` + ``torch.optim.SGD``, a fresh permutation every 60 // 16 = 3 steps; the full
    training loss at every ``EVERY``-th step up to ``MAX_STEPS`` (the costs the rule sees)."""
    torch.manual_seed(seed)
    net = MLP(WIDTHS).double()
    optimizer = torch.optim.SGD(net.parameters(), lr=LR)
    order_generator, costs = torch.Generator().manual_seed(order_seed), []
    for step in range(MAX_STEPS + 1):
        if step % EVERY == 0:
            with torch.no_grad():
                costs.append(F.cross_entropy(net(x), y).item())
        if step == MAX_STEPS:
            break
        if step % 3 == 0:
            order = torch.randperm(60, generator=order_generator)
        batch = order[(step % 3) * BATCH : (step % 3 + 1) * BATCH]
        optimizer.zero_grad()
        F.cross_entropy(net(x[batch]), y[batch]).backward()
        optimizer.step()
    return costs


def _plateau_first_hit(costs, threshold):
    """The first evaluation t whose last ``WINDOW`` differences ``costs[i - 1] - costs[i]`` average below
    ``threshold``, as a step count (``EVERY * t``); -1 if never."""
    for t in range(WINDOW, len(costs)):
        if sum(costs[i - 1] - costs[i] for i in range(t - WINDOW + 1, t + 1)) / WINDOW < threshold:
            return EVERY * t
    return -1


def test_each_member_halts_where_a_plain_loop_over_its_own_losses_does():
    x, y = _data()
    thresholds = [0.003, 0.001, 0.0003]
    base, params = init_ensemble(WIDTHS, SEEDS)
    params = {k: v.double() for k, v in params.items()}
    first, last = train_until_halted(
        base, params, x, y, torch.tensor(thresholds, dtype=torch.float64), ORDER_SEEDS, lr=LR, batch_size=BATCH,
        every_n_steps=EVERY, max_steps=MAX_STEPS, rule="loss_plateau", window=WINDOW,
    )  # fmt: skip
    expected = [
        [_plateau_first_hit(_plain_full_losses(s, o, x, y), th) for th in thresholds]
        for s, o in zip(SEEDS, ORDER_SEEDS, strict=True)
    ]
    assert first.tolist() == expected
    assert min(row[0] for row in expected) >= EVERY * WINDOW  # never before the window is full
    assert len({row[1] for row in expected}) == len(SEEDS)  # members halt at their own steps (and leave the set)
    assert 0 < sum(row[2] == -1 for row in expected) < len(SEEDS) and last == MAX_STEPS  # some censored, not all


def test_plateau_and_loss_rules_differ_and_bad_arguments_are_refused():
    x, y = _data()
    base, params = init_ensemble(WIDTHS, SEEDS[:2])
    args = (base, params, x.float(), y, torch.tensor([0.9]), ORDER_SEEDS[:2])
    below, _ = train_until_halted(*args, lr=LR, batch_size=BATCH, max_steps=300)
    plateau, _ = train_until_halted(*args, lr=LR, batch_size=BATCH, max_steps=300, rule="loss_plateau", window=3)
    assert (plateau == 3).all() and not (below == 3).all()  # any mean decrease is below 0.9: at the first full window
    with pytest.raises(ValueError, match="rule must be"):
        train_until_halted(*args, rule="plateau")
    with pytest.raises(ValueError, match="window"):
        train_until_halted(*args, rule="loss_plateau", window=0)


def test_mlp_runs_pass_the_rule_through_and_keep_the_loss_rules_digest():
    assert "rule" not in MLPRuns().arguments() and "window" not in MLPRuns().arguments()
    plateau = MLPRuns(rule="loss_plateau", window=5).arguments()
    assert plateau["rule"] == "loss_plateau" and plateau["window"] == 5
    with pytest.raises(ValueError, match="rule"):
        MLPRuns(rule="plateau")
    with pytest.raises(ValueError, match="window"):
        MLPRuns(rule="loss_plateau", window=0)
