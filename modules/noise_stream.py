"""``NoiseStream``: a LightningModule's own noise generator, kept in its checkpoints so that a resumed run draws the
same noise as an uninterrupted one (EBGAN's z, the Ladder Network's corruption)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch


class NoiseStream:
    """Mixin for a ``pl.LightningModule`` (list it first among the bases) that draws its noise from its own CPU
    generator.

    The generator is seeded on first use from ``torch.initial_seed()`` (so ``seed_everything`` fixes it) plus the
    process rank; it lives on the CPU whatever the device, so its state means the same on every device and a
    checkpoint written on a GPU resumes on a CPU. Checkpoints hold rank 0's state under ``noise_checkpoint_key``; on
    resume, rank 0 continues that stream and every other rank derives its own stream from it.
    """

    noise_checkpoint_key: ClassVar[str]
    noise_rng: torch.Generator | None = None
    _pending_noise_state: torch.Tensor | None = None

    def _noise_generator(self) -> torch.Generator:
        if self.noise_rng is None:
            self.noise_rng = torch.Generator().manual_seed(int(torch.initial_seed()) % 2**62 + self.global_rank)
        return self.noise_rng

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[self.noise_checkpoint_key] = self._noise_generator().get_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._pending_noise_state = checkpoint.get(self.noise_checkpoint_key)

    def on_train_start(self) -> None:
        state = self._pending_noise_state
        if state is not None:
            rng = self._noise_generator()
            rng.set_state(state)
            if self.global_rank:
                rng.manual_seed(int(torch.randint(2**62, (), generator=rng)) + self.global_rank)
            self._pending_noise_state = None
