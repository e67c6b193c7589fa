"""When a training step logs: each ``self.log`` call costs about 0.7 ms on CPU in Lightning 2.6 (it walks the
stored result's ``__dict__``), 5-15% of a small model's step, so step values are logged only on the steps
the logger records (every ``log_every_n_steps``) and on each epoch's first step (for the progress bar)."""

from __future__ import annotations

import pytorch_lightning as pl


def is_logging_step(module: pl.LightningModule, batch_idx: int) -> bool:
    return batch_idx == 0 or (batch_idx + 1) % module.trainer.log_every_n_steps == 0
