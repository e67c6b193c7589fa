"""PTBDataModule and CharTextDataModule: BPTT batching by hand, the DDP column split, formats and errors."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch

from iclr17.datamodules import CharTextDataModule, PTBDataModule
from iclr17.datamodules.storage import DataFormatError, MissingDataError
from iclr17.modules import LanguageModel
from tests.data.make_text import FIXTURE_CHAR_VOCAB_SIZE, FIXTURE_PTB_VOCAB_SIZE, write_ptb


def _stream_module(n_tokens: int = 30, **kwargs) -> PTBDataModule:
    """A PTBDataModule whose three splits are the stream 0, 1, ..., n_tokens - 1 (no files)."""
    dm = PTBDataModule(**kwargs)
    dm.vocab = [str(i) for i in range(n_tokens)]
    dm.tokens = {split: torch.arange(n_tokens) for split in ("train", "val", "test")}
    return dm


def test_bptt_batches_match_a_hand_built_example():
    # 30 tokens in 2 columns of 15: 0..14 and 15..29; (15 - 1) // 4 = 3 batches; 13, 14, 28, 29 are never targets
    dm = _stream_module(batch_size=2, bptt=4)
    batches = list(dm.train_dataloader())
    expected_inputs = [
        [[0, 1, 2, 3], [15, 16, 17, 18]],
        [[4, 5, 6, 7], [19, 20, 21, 22]],
        [[8, 9, 10, 11], [23, 24, 25, 26]],
    ]
    assert len(dm.train_dataloader()) == len(batches) == 3
    for (inputs, targets), expected in zip(batches, expected_inputs, strict=True):
        assert inputs.tolist() == expected
        assert torch.equal(targets, inputs + 1)  # the next token of the same column
    assert [len(b) for b in (dm.val_dataloader(), dm.test_dataloader())] == [3, 3]


def test_batches_per_step_stacks_consecutive_minibatches_in_time_order():
    dm = _stream_module(n_tokens=42, batch_size=2, bptt=4, batches_per_step=2)  # columns of 21: 5 minibatches
    single = list(_stream_module(n_tokens=42, batch_size=2, bptt=4).train_dataloader())
    stacked = list(dm.train_dataloader())
    assert len(stacked) == 2  # the fifth minibatch does not fill a step and is dropped
    for j, (inputs, targets) in enumerate(stacked):
        assert inputs.shape == targets.shape == (4, 4)
        for i, (chunk_x, chunk_y) in enumerate(zip(inputs.chunk(2), targets.chunk(2), strict=True)):
            assert torch.equal(chunk_x, single[2 * j + i][0]) and torch.equal(chunk_y, single[2 * j + i][1])
    assert len(dm.val_dataloader()) == 5  # evaluation is not stacked


@pytest.mark.parametrize("batches_per_step", [1, 3])
def test_ddp_ranks_get_disjoint_columns_that_make_up_the_single_process_batch(batches_per_step):
    dm_kwargs = {"n_tokens": 200, "batch_size": 4, "bptt": 3, "batches_per_step": batches_per_step}
    single = list(_stream_module(**dm_kwargs).train_dataloader())
    per_rank = []
    for rank in range(2):
        dm = _stream_module(**dm_kwargs)
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        per_rank.append(list(dm.train_dataloader()))
    assert len(per_rank[0]) == len(per_rank[1]) == len(single)  # equal step counts: no rank waits for another
    for batch, rank0, rank1 in zip(single, *per_rank, strict=True):
        for one, r0, r1 in zip(batch, rank0, rank1, strict=True):  # inputs, then targets
            assert r0.shape == r1.shape == (one.shape[0] // 2, one.shape[1])
            assert not set(r0.flatten().tolist()) & set(r1.flatten().tolist())
            for k in range(batches_per_step):  # each stacked minibatch is the two ranks' halves of the single one
                assert torch.equal(torch.cat([r0.chunk(batches_per_step)[k], r1.chunk(batches_per_step)[k]]),
                                   one.chunk(batches_per_step)[k])  # fmt: skip


def test_global_batch_must_divide_over_processes():
    dm = _stream_module(batch_size=3, bptt=2)
    dm.trainer = SimpleNamespace(global_rank=0, world_size=2)
    with pytest.raises(ValueError, match="3 columns .* 2 processes"):
        dm.train_dataloader()


def test_lightning_injects_no_distributed_sampler_under_ddp(fixture_data_root):
    """The check Lightning runs on every loader under DDP (a map-style loader would get a DistributedSampler)."""
    from pytorch_lightning.trainer.states import RunningStage
    from torch.utils.data import DataLoader, DistributedSampler

    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False)
    connector = trainer._data_connector
    dm = PTBDataModule(data_dir=str(fixture_data_root), batch_size=4, bptt=5)
    dm.setup()
    loader = dm.val_dataloader()
    assert connector._prepare_dataloader(loader, shuffle=False, mode=RunningStage.VALIDATING) is loader
    map_style = connector._prepare_dataloader(DataLoader(range(8)), shuffle=False, mode=RunningStage.VALIDATING)
    assert isinstance(map_style.sampler, DistributedSampler)  # what the iterable dataset avoids


class RecordBatches(pl.Callback):
    """Each spawned process writes the validation batches it saw (spawned callbacks do not come back)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.batches = folder, []

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.batches.append([t.clone() for t in batch])

    def on_validation_end(self, trainer, pl_module):
        torch.save(self.batches, self.folder / f"rank{trainer.global_rank}.pt")


@pytest.mark.slow  # about 40 s on the shared 2-core machine (two spawned interpreters)
@pytest.mark.timeout(300)
def test_two_gloo_processes_see_their_own_columns_in_order_and_the_exact_perplexity(fixture_data_root, tmp_path):
    """Lightning must not put a DistributedSampler in front of the time-ordered batches; val/ppl sums every
    scored token of both processes, so it equals the single-process value."""
    pl.seed_everything(0)
    model = LanguageModel(vocab_size=FIXTURE_PTB_VOCAB_SIZE, hidden_size=6, num_layers=1, dropout=0.0, init_range=0.3)
    dm = PTBDataModule(data_dir=str(fixture_data_root), batch_size=4, bptt=5)
    results = {}
    for name, kwargs in (("ddp", {"strategy": "ddp_spawn", "devices": 2}), ("single", {"devices": 1})):
        folder = tmp_path / name
        folder.mkdir()
        trainer = pl.Trainer(
            accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=[RecordBatches(folder)], **kwargs
        )
        (results[name],) = trainer.validate(model, dm)
    single = torch.load(tmp_path / "single" / "rank0.pt")
    rank0, rank1 = torch.load(tmp_path / "ddp" / "rank0.pt"), torch.load(tmp_path / "ddp" / "rank1.pt")
    assert len(rank0) == len(rank1) == len(single) > 1
    for (x, y), (x0, y0), (x1, y1) in zip(single, rank0, rank1, strict=True):
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)
    assert results["ddp"]["val/ppl"] == pytest.approx(results["single"]["val/ppl"], rel=1e-5)


def test_ptb_fixture_vocabulary_tokens_and_eos(fixture_data_root):
    dm = PTBDataModule(data_dir=str(fixture_data_root), batch_size=4, bptt=5)
    dm.setup()
    assert dm.vocab_size == FIXTURE_PTB_VOCAB_SIZE and "<eos>" in dm.vocab
    lines = (fixture_data_root / "ptb" / "ptb.valid.txt").read_text().splitlines()
    assert dm.num_tokens["val"] == sum(len(line.split()) + 1 for line in lines)
    first = lines[0].split() + ["<eos>"]
    assert [dm.vocab[i] for i in dm.tokens["val"][: len(first)]] == first


def test_char_fixture_strips_the_bom_normalises_crlf_and_maps_unknown_chars(fixture_data_root):
    dm = CharTextDataModule(data_dir=str(fixture_data_root), batch_size=4, bptt=10)
    dm.setup()
    assert dm.vocab_size == FIXTURE_CHAR_VOCAB_SIZE and dm.vocab[0] == "<unk>"
    assert "\r" not in dm.vocab and "\ufeff" not in dm.vocab and "\n" in dm.vocab and "é" in dm.vocab
    text = (fixture_data_root / "war_and_peace" / "warpeace_input.txt").read_bytes().decode("utf-8")
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    assert sum(dm.num_tokens.values()) == len(text)
    assert "".join(dm.vocab[i] for i in dm.tokens["train"][:15]) == text[:15]
    assert dm.unknown_chars["train"] == 0
    assert dm.unknown_chars["test"] == sum(c not in dm.vocab for c in text[-dm.num_tokens["test"] :]) > 0


def test_char_module_reads_any_text_file_by_absolute_path(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text("abcabcabd" * 40, encoding="utf-8")
    dm = CharTextDataModule(path=str(path), batch_size=2, bptt=4)
    dm.setup()
    assert dm.vocab == ["<unk>", "a", "b", "c", "d"] and dm.num_tokens == {"train": 324, "val": 18, "test": 18}


def test_out_of_vocabulary_word_names_file_and_line(tmp_path):
    folder = write_ptb(tmp_path)
    with open(folder / "ptb.test.txt", "a", encoding="utf-8") as f:
        f.write(" the zebra sat \n")
    n_lines = len((folder / "ptb.test.txt").read_text().splitlines())
    with pytest.raises(DataFormatError, match=rf"ptb\.test\.txt:{n_lines}: word 'zebra'"):
        PTBDataModule(data_dir=str(tmp_path), batch_size=2, bptt=3).setup()


def test_clear_errors_for_missing_empty_and_too_small_data(tmp_path):
    with pytest.raises(MissingDataError, match=r"ptb\.train\.txt"):
        PTBDataModule(data_dir=str(tmp_path)).setup()
    folder = write_ptb(tmp_path)
    (folder / "ptb.valid.txt").write_text("")
    with pytest.raises(DataFormatError, match=r"ptb\.valid\.txt: the file holds no tokens"):
        PTBDataModule(data_dir=str(tmp_path), batch_size=2, bptt=3).setup()
    write_ptb(tmp_path)
    with pytest.raises(ValueError, match="the val split has .* tokens, too few"):
        PTBDataModule(data_dir=str(tmp_path), batch_size=4, bptt=200).setup()
    (tmp_path / "empty.txt").write_bytes(b"\xef\xbb\xbf")
    with pytest.raises(DataFormatError, match="empty.txt: the file holds no text"):
        CharTextDataModule(path=str(tmp_path / "empty.txt")).setup()
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(DataFormatError, match="latin1.txt: not UTF-8"):
        CharTextDataModule(path=str(tmp_path / "latin1.txt")).setup()


def test_real_ptb_has_the_mikolov_vocabulary_and_token_counts(real_data_dir):
    dm = PTBDataModule(data_dir=str(real_data_dir))
    dm.setup()
    assert dm.vocab_size == 10_000 and "<eos>" in dm.vocab and "<unk>" in dm.vocab
    assert dm.num_tokens == {"train": 929_589, "val": 73_760, "test": 82_430}  # the published counts, <eos> included
    assert len(dm.train_dataloader()) == (929_589 // 20 - 1) // 35 == 1327  # Zaremba's epoch size


def test_real_war_and_peace_is_the_novel_without_the_appended_trailer(real_data_dir):
    dm = CharTextDataModule(data_dir=str(real_data_dir))
    dm.setup()
    decoded = {split: "".join(dm.vocab[i] for i in tokens[-60:]) for split, tokens in dm.tokens.items()}
    assert sum(dm.num_tokens.values()) == 3_196_213
    assert decoded["test"].endswith("a dependence of which we are not\nconscious.\n")
    assert dm.vocab[dm.tokens["train"][0]] == '"' and "\r" not in dm.vocab
    assert dm.vocab_size == 83 and dm.unknown_chars == {"train": 0, "val": 0, "test": 0}
    kept_all = CharTextDataModule(data_dir=str(real_data_dir), strip_known_trailers=False)
    kept_all.setup()
    assert sum(kept_all.num_tokens.values()) == 3_203_272 and kept_all.unknown_chars["test"] > 0
