"""Children's Book Test (Hill et al. 2016) with window memories, for EntNet's CBT experiments (paper 5.3).

Files: ``<data root>/cbt/CBTest/data/cbtest_{NE,CN,V,P}_{train.txt,valid_2000ex.txt,test_2500ex.txt}``.
Each example is 20 numbered context sentences, then ``21 <query with XXXXX><TAB><answer><TAB><TAB><c1>|...|<c10>``,
then a blank line. The input follows Hill et al.'s window memory: for every occurrence of a candidate word in
the context, the ``window`` words centred on it; the question is the window centred on XXXXX. Which words
the paper's windows hold at the story's edges is not stated (``docs/papers/entnet.md``): we pad with ``<pad>``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .babi_format import numbered_lines
from .storage import DataFormatError, data_root, download, extract_archive, require_files
from .stories import PAD, UNK, EncodedStories, StoryDataModule

CBT_URL = "http://www.thespermwhale.com/jaseweston/babi/CBTest.tgz"
CBT_SHA256 = "932df0cadc1337b2a12b4c696b1041c1d1c6d4b6bd319874c6288f02e4a61e92"  # as recorded by HF datasets' cbt
CBT_FILES = {"train": "train.txt", "val": "valid_2000ex.txt", "test": "test_2500ex.txt"}
BLANK = "XXXXX"


@dataclass(frozen=True)
class CBTExample:
    context: tuple[tuple[str, ...], ...]
    query: tuple[str, ...]
    answer: str
    candidates: tuple[str, ...]


def cbt_path(root: str | os.PathLike, word_type: str, split: str) -> Path:
    return Path(root) / "cbt" / "CBTest" / "data" / f"cbtest_{word_type}_{CBT_FILES[split]}"


def parse_cbt(path: str | os.PathLike) -> list[CBTExample]:
    """Parse one CBT file.

    Raises:
        DataFormatError: naming the file and line for a bad line number, a query line without answer and
            candidates, a count of candidates other than 10, an answer that is not a candidate, or a query
            without the XXXXX blank.
    """
    examples: list[CBTExample] = []
    context: list[tuple[str, ...]] = []
    for where, number, text in numbered_lines(path):
        if number != len(context) + 1:
            raise DataFormatError(f"{where}: expected line number {len(context) + 1}, got {number}")
        if number <= 20:
            context.append(tuple(text.split()))
            continue
        fields = text.split("\t")
        if len(fields) != 4:
            raise DataFormatError(f"{where}: line 21 must be '<query>\\t<answer>\\t\\t<candidates>'")
        query, answer, candidates = fields[0].split(), fields[1], tuple(fields[3].split("|"))
        if BLANK not in query:
            raise DataFormatError(f"{where}: the query has no {BLANK} blank")
        if len(candidates) != 10 or answer not in candidates:
            raise DataFormatError(f"{where}: expected 10 candidates including the answer {answer!r}")
        examples.append(CBTExample(tuple(context), tuple(query), answer, candidates))
        context = []
    if context:
        raise DataFormatError(f"{path}: the file ends inside an example (no line 21 after line {len(context)})")
    return examples


def window_at(words: list[str], centre: int, size: int) -> tuple[str, ...]:
    """``size`` words centred on ``words[centre]``, padded with ``<pad>`` beyond the ends."""
    half = size // 2
    return tuple(words[i] if 0 <= i < len(words) else PAD for i in range(centre - half, centre - half + size))


def window_memories(example: CBTExample, size: int) -> tuple[list[tuple[str, ...]], tuple[str, ...]]:
    """The story's candidate-centred windows, in order, and the query window centred on the blank."""
    words = [w for sentence in example.context for w in sentence]
    candidates = set(example.candidates)
    windows = [window_at(words, i, size) for i, w in enumerate(words) if w in candidates]
    query = list(example.query)
    return windows, window_at(query, query.index(BLANK), size)


class CBTDataModule(StoryDataModule):
    """CBT named entities (``NE``), common nouns (``CN``), verbs (``V``) or prepositions (``P``) as window
    memories. Batches hold ``story`` ``(B, T, window)``, ``query`` ``(B, window)``, ``candidates`` ``(B, 10)``
    word ids and ``answer``, the index of the right candidate (0-9). The vocabulary comes from the training
    file (words seen fewer than ``min_count`` times become ``<unk>``).

    Args:
        data_dir: the data root (default ``$ICLR17_DATA_DIR``, else ``./data``).
        word_type: which CBT subset.
        window: window size b (paper: 5).
        min_count: training-word frequency below which a word is ``<unk>``.
        max_windows: keep at most this many windows (the last ones) per story.
        batch_size: global batch size.
        num_workers: DataLoader worker processes.
        download: fetch CBTest.tgz (SHA-256 checked) into the data root and extract it there.
    """

    def __init__(
        self,
        data_dir: str | None = None,
        word_type: Literal["NE", "CN", "V", "P"] = "NE",
        window: int = 5,
        min_count: int = 1,
        max_windows: int = 200,
        batch_size: int = 32,
        num_workers: int = 0,
        download: bool = False,
    ) -> None:
        super().__init__(batch_size=batch_size, epoch_sampling="permutation", num_workers=num_workers)
        if window < 1 or window % 2 == 0:
            raise ValueError(f"window must be a positive odd number (it is centred on a word), got {window}")
        self.save_hyperparameters()
        self.root = data_root(data_dir)

    def prepare_data(self) -> None:
        if self.hparams.download and not cbt_path(self.root, self.hparams.word_type, "test").is_file():
            archive = download(CBT_URL, self.root / "cbt" / "CBTest.tgz", CBT_SHA256)
            extract_archive(archive, self.root / "cbt")

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        import pyarrow as pa

        hp = self.hparams
        paths = {split: cbt_path(self.root, hp.word_type, split) for split in CBT_FILES}
        how = "Download CBTest.tgz (or pass download=true) and extract it into <data root>/cbt/."
        require_files(list(paths.values()), "CBT", how)
        parsed = {split: parse_cbt(path) for split, path in paths.items()}
        counts: dict[str, int] = {}
        for example in parsed["train"]:
            for word in (w for s in example.context for w in s):
                counts[word] = counts.get(word, 0) + 1
            for word in (*example.query, *example.candidates):
                counts[word] = counts.get(word, 0) + 1
        self.vocab = [PAD, UNK, *sorted(w for w, c in counts.items() if c >= hp.min_count and w not in (PAD, UNK))]
        index = {w: i for i, w in enumerate(self.vocab)}
        self.sentence_length = self.query_length = hp.window
        self.unknown_words = {}
        for split, examples in parsed.items():
            columns: dict[str, list] = {"story": [], "query": [], "answer": [], "task": [], "candidates": []}
            unknown = 0
            for example in examples:
                windows, query = window_memories(example, hp.window)
                windows = windows[-hp.max_windows :] or [(PAD,) * hp.window]
                ids = [[index.get(w, index[UNK]) for w in window] for window in windows]
                unknown += sum(w not in index for window in windows for w in window)
                columns["story"].append([i for window in ids for i in window])
                columns["query"].append([index.get(w, index[UNK]) for w in query])
                columns["answer"].append(example.candidates.index(example.answer))
                columns["task"].append(0)
                columns["candidates"].append([index.get(c, index[UNK]) for c in example.candidates])
            table = pa.Table.from_pydict(columns)
            self.splits[split] = EncodedStories(table, hp.window)
            self.unknown_words[split] = unknown
