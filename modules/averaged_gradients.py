"""``AveragedManualBackward``: manual optimisation under DDP for modules that step one network at a time (EBGAN's
and EBGAN-LN's D and G steps), where DDP's own gradient reducer would wait for the network not stepped."""

from __future__ import annotations

import torch
from pytorch_lightning.strategies import DDPStrategy
from torch import Tensor


class AveragedManualBackward:
    """Mixin for a ``pl.LightningModule`` with ``automatic_optimization = False``.

    :meth:`backward_averaged` is ``manual_backward`` that under DDP runs without DDP's reducer (which expects
    gradients for every parameter of the wrapped module, and would wait for those of the network not stepped) and
    then replaces the gradients of the optimizer's parameters by their mean over processes, in one reduction of
    them all. So ``strategy="ddp"`` works without ``find_unused_parameters``, and each step equals one process's
    step on the gradient averaged over the processes' shares of the batch.
    """

    def backward_averaged(self, optimizer: torch.optim.Optimizer, loss: Tensor) -> None:
        strategy = self.trainer.strategy
        if isinstance(strategy, DDPStrategy):
            with strategy.block_backward_sync():
                self.manual_backward(loss)
            self._average_gradients(optimizer)
        else:
            self.manual_backward(loss)

    def _average_gradients(self, optimizer: torch.optim.Optimizer) -> None:
        """Replace the optimizer's gradients by their mean over processes, in one reduction of them all."""
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        flat = self.trainer.strategy.reduce(torch.cat([grad.flatten() for grad in grads]), reduce_op="mean")
        for grad, averaged in zip(grads, flat.split([grad.numel() for grad in grads]), strict=True):
            grad.copy_(averaged.view_as(grad))
