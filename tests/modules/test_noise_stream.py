"""``NoiseStream`` on a bare LightningModule: seeded by seed_everything and the rank, kept in checkpoints, resumed
exactly, and a distinct stream on every other rank (the modules' own resume tests cover EBGAN and the Ladder)."""

import pytorch_lightning as pl
import torch

from iclr17.modules.noise_stream import NoiseStream


class Noisy(NoiseStream, pl.LightningModule):
    noise_checkpoint_key = "noisy_rng"

    def __init__(self, rank: int = 0) -> None:
        super().__init__()
        self.rank = rank

    @property
    def global_rank(self) -> int:
        return self.rank

    def draw(self) -> torch.Tensor:
        return torch.randn(5, generator=self._noise_generator())


def test_the_stream_follows_seed_everything_and_the_rank():
    pl.seed_everything(7, verbose=False)
    a, b = Noisy().draw(), Noisy(rank=1).draw()
    expected = torch.randn(5, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, expected) and torch.equal(b, torch.randn(5, generator=torch.Generator().manual_seed(8)))


def test_a_checkpoint_resumes_the_stream_and_other_ranks_derive_their_own():
    pl.seed_everything(3, verbose=False)
    module = Noisy()
    module.draw()
    checkpoint = {}
    module.on_save_checkpoint(checkpoint)
    uninterrupted = module.draw()
    saved = checkpoint["noisy_rng"]
    resumed = Noisy()
    resumed.on_load_checkpoint(checkpoint)
    resumed.on_train_start()
    assert torch.equal(resumed.draw(), uninterrupted)
    other = Noisy(rank=1)
    other.on_load_checkpoint({"noisy_rng": saved})
    other.on_train_start()
    rng = torch.Generator()
    rng.set_state(saved)
    derived = torch.Generator().manual_seed(int(torch.randint(2**62, (), generator=rng)) + 1)
    assert torch.equal(other.draw(), torch.randn(5, generator=derived))
    fresh = Noisy()
    fresh.on_load_checkpoint({})  # a checkpoint without the key (an older one) leaves the stream as seeded
    fresh.on_train_start()
    assert fresh._pending_noise_state is None
