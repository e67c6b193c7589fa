"""Per-task error for bAbI, with sum states so it is exact under DDP (the torchmetrics pattern)."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


def per_task_counts(predictions: Tensor, targets: Tensor, tasks: Tensor, n_tasks: int) -> tuple[Tensor, Tensor]:
    """Numbers of wrong answers and of questions per task id (index = task number)."""
    wrong = torch.zeros(n_tasks + 1, dtype=torch.long, device=targets.device)
    total = torch.zeros_like(wrong)
    wrong.index_add_(0, tasks, (predictions != targets).long())
    total.index_add_(0, tasks, torch.ones_like(tasks))
    return wrong, total


class PerTaskError(Metric):
    """Error rate over all questions and per task id (bAbI task 1-20, or the world model's story length).

    ``compute`` returns ``(error, {task: error})``, the dict holding the tasks that had questions; both come
    from the synchronised counts, so they are exact under DDP.
    """

    full_state_update = False

    def __init__(self, n_tasks: int = 1024) -> None:
        super().__init__()
        self.n_tasks = n_tasks
        self.add_state("wrong", default=torch.zeros(n_tasks + 1, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.zeros(n_tasks + 1, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, predictions: Tensor, targets: Tensor, tasks: Tensor) -> None:
        if tasks.numel() and int(tasks.max()) > self.n_tasks:
            raise ValueError(f"task id {int(tasks.max())} is above this metric's n_tasks={self.n_tasks}")
        wrong, total = per_task_counts(predictions, targets, tasks, self.n_tasks)
        self.wrong += wrong
        self.total += total

    def compute(self) -> tuple[Tensor, dict[int, Tensor]]:
        seen = torch.nonzero(self.total).flatten().tolist()
        overall = self.wrong.sum().float() / self.total.sum().clamp_min(1)
        return overall, {task: self.wrong[task].float() / self.total[task] for task in seen}
