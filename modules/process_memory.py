"""``unshare_memory``: a process's own copy of the tensors that ``ddp_spawn`` leaves shared between processes.

``torch.multiprocessing`` moves every CPU tensor it pickles into shared memory, so after ``strategy="ddp_spawn"``
starts its workers, the main process and every worker hold the same storage. Lightning copies the parameters and
buffers back into private memory in each worker (``lightning_fabric``'s ``_disable_module_memory_sharing``), but
not the states of torchmetrics metrics, which are plain attributes: a metric updated in place
(``self.total += ...``, as torchmetrics' own metrics do) then adds every process's counts into one tensor, before
the metric's DDP sum adds them again, and the main process's model keeps the workers' counts for its next run.
"""

from __future__ import annotations

from torch import Tensor, nn
from torchmetrics import Metric


def _private(value: object) -> object:
    if isinstance(value, Tensor) and value.is_shared():
        return value.clone()
    if isinstance(value, list) and any(isinstance(v, Tensor) and v.is_shared() for v in value):
        return [_private(v) for v in value]  # torchmetrics' list states ("cat" reduction)
    return value


def unshare_memory(module: nn.Module) -> None:
    """Replace every shared-memory tensor held as a plain attribute of ``module`` or of its submodules (metric
    states and their defaults included; parameters and buffers are Lightning's to copy) by a private copy with
    the same values. A no-op in a process that shares nothing; LightningModules call it from ``setup``."""
    for submodule in module.modules():
        attributes = vars(submodule)
        for name, value in list(attributes.items()):
            attributes[name] = _private(value)
        if isinstance(submodule, Metric):
            defaults = submodule._defaults  # what reset() restores; torchmetrics keeps no public accessor
            for name, value in list(defaults.items()):
                defaults[name] = _private(value)
