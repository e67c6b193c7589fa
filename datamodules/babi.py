"""bAbI question answering (v1.2, ``en`` and ``en-10k``) for the Recurrent Entity Network.

Parsed examples are encoded with a vocabulary built from the training questions only and kept in a Hugging
Face ``datasets`` cache (Arrow, memory-mapped) under the cache root, keyed by the files' checksums and every
option that changes the result, so a second run starts at once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

import torch
from pytorch_lightning.utilities import rank_zero_info
from torch.utils.data import DataLoader

from .babi_format import BabiExample, babi_path, parse_babi
from .storage import atomic_publish, cache_entry, data_root, require_files
from .stories import EncodedStories, StoryDataModule, build_vocabulary, encode

_CACHE_VERSION = 2  # 2: stricter parsing; an entry from a file that now fails is not reused


class BabiDataModule(StoryDataModule):
    """The 20 bAbI tasks, one task or several jointly, from the original text files.

    Files: ``<data root>/babi/tasks_1-20_v1-2/{en,en-10k}/qa<N>_<name>_{train,test}.txt``. Validation is
    held out of the training questions: ``official`` takes the last ``val_fraction`` of each task's
    questions (the authors' code); ``story_level`` takes a seeded ``val_fraction`` of each task's stories,
    so no story is split between train and validation. The vocabulary is built from the training questions
    only; unknown words at validation and test time become ``<unk>``, and their count is reported.

    Args:
        data_dir: the data root (default ``$ICLR17_DATA_DIR``, else ``./data``).
        tasks: task numbers 1-20, one model for all of them (the paper trains one per task).
        subset: ``en-10k`` (10,000 training questions per task, the paper's setting) or ``en`` (1,000).
        memory_horizon: keep the last this many statements of each story (paper: 70).
        task3_memory_horizon: the horizon for task 3 (paper 130, the authors' code 150).
        val_split: ``official`` (last questions) or ``story_level`` (seeded whole stories).
        val_fraction: share of the training questions (or stories) held out.
        seed: seeds the story-level split.
        batch_size: global batch size (divided over DDP processes).
        epoch_sampling: ``official`` draws floor(train / batch) batches with replacement each epoch (the
            authors' code); ``permutation`` is one pass over a shuffled training set.
        cache_dir: cache root for the encoded data (default ``$ICLR17_CACHE_DIR``, else the XDG cache).
        num_workers: DataLoader worker processes.
        drop_last_test: test only whole batches, as the authors' code does (992 of 1,000 questions at batch
            32); default: every question.
    """

    def __init__(
        self,
        data_dir: str | None = None,
        tasks: list[int] | None = None,
        subset: Literal["en", "en-10k"] = "en-10k",
        memory_horizon: int = 70,
        task3_memory_horizon: int = 130,
        val_split: Literal["official", "story_level"] = "official",
        val_fraction: float = 0.1,
        seed: int = 0,
        batch_size: int = 32,
        epoch_sampling: Literal["official", "permutation"] = "official",
        cache_dir: str | None = None,
        num_workers: int = 0,
        drop_last_test: bool = False,
    ) -> None:
        super().__init__(batch_size=batch_size, epoch_sampling=epoch_sampling, num_workers=num_workers)
        tasks = [1] if tasks is None else list(tasks)
        if not tasks or any(t not in range(1, 21) for t in tasks) or len(set(tasks)) != len(tasks):
            raise ValueError(f"tasks must be distinct numbers from 1 to 20, got {tasks}")
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if min(memory_horizon, task3_memory_horizon, batch_size) < 1:
            raise ValueError("memory_horizon, task3_memory_horizon and batch_size must be positive")
        self.save_hyperparameters()
        self.hparams.tasks = tasks
        self.root = data_root(data_dir)

    def _files(self) -> dict[int, dict[str, os.PathLike]]:
        hp = self.hparams
        files = {t: {s: babi_path(self.root, t, s, hp.subset) for s in ("train", "test")} for t in hp.tasks}
        require_files(
            [p for per_task in files.values() for p in per_task.values()],
            "bAbI",
            "They are the v1.2 release files (tasks_1-20_v1-2.tar.gz from the bAbI page, or the 'en' and 'en-10k' "
            "folders of it) under <data root>/babi/tasks_1-20_v1-2/. The en-10k qa3 train file is missing from "
            "this project's shared copy.",
        )
        return files

    def _cache_path(self, files: dict[int, dict[str, os.PathLike]]) -> Path:
        """``<cache root>/babi/<key>``, keyed by the files and every option that changes the parsed data."""
        parse_options = ("tasks", "subset", "memory_horizon", "task3_memory_horizon", "val_split", "val_fraction")
        options = {k: self.hparams[k] for k in (*parse_options, "seed")}
        labelled = {f"{t}/{s}": p for t, per_task in files.items() for s, p in per_task.items()}
        return cache_entry(self.hparams.cache_dir, "babi/{key}", _CACHE_VERSION, options, labelled)

    def prepare_data(self) -> None:
        """Parse and encode into the cache (once per machine; rank 0 under DDP)."""
        files = self._files()
        target = self._cache_path(files)
        if (target / "meta.json").is_file():
            return
        splits, meta = self._parse_and_encode(files, target.name)  # every check runs before anything is written
        import datasets

        datasets.disable_progress_bars()
        with atomic_publish(target, folder=True) as staging:
            datasets.DatasetDict(splits).save_to_disk(str(staging))
            (staging / "meta.json").write_text(json.dumps(meta))

    def _parse_and_encode(self, files: dict[int, dict[str, os.PathLike]], key: str) -> tuple[dict, dict]:
        hp = self.hparams
        per_task: dict[int, dict[str, list[BabiExample]]] = {}
        generator = torch.Generator().manual_seed(hp.seed)
        for task, paths in files.items():
            train_all, test = parse_babi(paths["train"]), parse_babi(paths["test"])
            per_task[task] = {**self._split_validation(train_all, hp.val_split, hp.val_fraction, generator)}
            per_task[task]["test"] = test
            for split in ("train", "val"):
                if not per_task[task][split]:
                    raise ValueError(
                        f"{paths['train']}: val_split={hp.val_split!r} and val_fraction={hp.val_fraction} leave no "
                        f"{split} questions out of its {len(train_all)}"
                    )
        vocab = build_vocabulary([e for splits in per_task.values() for e in splits["train"]])
        index = {w: i for i, w in enumerate(vocab)}
        train_examples = [e for splits in per_task.values() for e in splits["train"]]
        sentence_length = max(len(s) for e in train_examples for s in e.story)
        query_length = max(len(e.query) for e in train_examples)
        columns: dict[str, dict[str, list]] = {}
        unknown = {"train": 0, "val": 0, "test": 0}
        for split in ("train", "val", "test"):
            merged: dict[str, list] = {"story": [], "query": [], "answer": [], "task": []}
            for task, splits in per_task.items():
                horizon = hp.task3_memory_horizon if task == 3 else hp.memory_horizon
                encoded, n_unknown = encode(splits[split], index, horizon, sentence_length, query_length, task)
                unknown[split] += n_unknown
                for key in merged:
                    merged[key].extend(encoded[key])
            columns[split] = merged
        # Our cache key already identifies the data, so it serves as the fingerprint; datasets' own would hash
        # the whole table with dill, which fails on some Python and pyarrow versions.
        import datasets
        import pyarrow as pa

        splits = {
            name: datasets.Dataset(pa.Table.from_pydict(cols), fingerprint=f"{key}-{name}")
            for name, cols in columns.items()
        }
        meta = {"vocab": vocab, "sentence_length": sentence_length, "query_length": query_length, "unknown": unknown}
        return splits, meta

    @staticmethod
    def _split_validation(
        examples: list[BabiExample], how: str, fraction: float, generator: torch.Generator
    ) -> dict[str, list[BabiExample]]:
        if how == "official":
            n_val = int(round(fraction * len(examples)))
            return {"train": examples[: len(examples) - n_val], "val": examples[len(examples) - n_val :]}
        n_stories = examples[-1].story_index + 1
        val_stories = set(torch.randperm(n_stories, generator=generator)[: round(fraction * n_stories)].tolist())
        return {
            "train": [e for e in examples if e.story_index not in val_stories],
            "val": [e for e in examples if e.story_index in val_stories],
        }

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        files = self._files()
        target = self._cache_path(files)
        if not (target / "meta.json").is_file():
            self.prepare_data()  # e.g. setup() called directly, outside a Trainer
        with open(target / "meta.json") as f:
            meta = json.load(f)
        self.vocab = meta["vocab"]
        self.sentence_length, self.query_length = meta["sentence_length"], meta["query_length"]
        self.unknown_words = meta["unknown"]
        import datasets

        loaded = datasets.load_from_disk(str(target))
        self.splits = {
            name: EncodedStories(loaded[name].data.table, self.sentence_length) for name in ("train", "val", "test")
        }
        for split in ("val", "test"):
            if self.unknown_words[split]:
                n_unknown = self.unknown_words[split]
                rank_zero_info(f"bAbI {split}: {n_unknown} words not in the training vocabulary became <unk>")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", drop_last=self.hparams.drop_last_test)
