import os
import re

import pytest
import torch

from iclr17.datamodules import babi as babi_module
from iclr17.datamodules.babi import BabiDataModule
from iclr17.datamodules.babi_format import BABI_TASKS, BabiExample, babi_path, parse_babi, tokenize
from iclr17.datamodules.storage import DataFormatError, MissingDataError
from iclr17.datamodules.stories import build_vocabulary, encode, pad_batch
from tests.data.make_babi import write_babi

STORY = (
    "1 Mary moved to the bathroom.\n"
    "2 John went to the hallway.\n"
    "3 Where is Mary? \tbathroom\t1\n"
    "4 Daniel went back to the hallway.\n"
    "5 What is Daniel carrying? \tapple,milk\t4 2\n"
    "1 Sandra journeyed to the garden.\n"
    "2 Where is Sandra? \tgarden\t1\n"
)


def _write(tmp_path, text, name="qa1_single-supporting-fact_train.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_parser_against_hand_parsed_examples(tmp_path):
    examples = parse_babi(_write(tmp_path, STORY))
    assert examples == [
        BabiExample((("mary", "moved", "to", "the", "bathroom"), ("john", "went", "to", "the", "hallway")),
                    ("where", "is", "mary"), "bathroom", (1,), 0),
        BabiExample((("mary", "moved", "to", "the", "bathroom"), ("john", "went", "to", "the", "hallway"),
                     ("daniel", "went", "back", "to", "the", "hallway")),
                    ("what", "is", "daniel", "carrying"), "apple,milk", (4, 2), 0),
        BabiExample((("sandra", "journeyed", "to", "the", "garden"),), ("where", "is", "sandra"), "garden", (1,), 1),
    ]  # fmt: skip
    assert tokenize("Where is Mary? ") == ("where", "is", "mary")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 Mary moved.\nx2 John went.\n", r":2: expected '<number> <text>'"),
        ("1 Mary moved.\n3 John went.\n", r":2: expected id 2 \(or 1 to start a story\), got 3"),
        ("2 Mary moved.\n3 John went.\n", r":1: expected id 1 \(the first line of a story\), got 2"),
        ("0 Mary moved.\n", r":1: expected id 1"),
        # a question that lost its TABs, with or without its "?", is not a statement
        ("1 Mary moved.\n2 Where is Mary? bathroom 1\n", r":2: expected a statement ending in '\.' or a question"),
        ("1 Mary moved.\n2 Where is Mary bathroom 1\n", r":2: expected a statement ending in '\.' or a question"),
        ("1 Mary moved.\n2 Where is Mary?\n", r":2: expected a statement ending in '\.' or a question"),
        ("1 Mary moved.\n2 Mary is in the \tbathroom\t1\n", r":2: the question before the first TAB must end"),
        ("1 Mary moved.\n2 Where is Mary? \tbathroom\t1\textra\n", r":2: a question line has 3 TAB-separated fields "
         r"\(question, answer, supporting facts\); got 4"),
        ("1 Mary moved.\n2 Where is Mary? \tbathroom\n", r":2: a question line has 3 TAB-separated fields.*got 2"),
        ("1 Mary moved.\n2 Where is Mary? \t \t1\n", r":2: expected a one-word answer"),
        ("1 Mary moved.\n2 Where is Mary? \tthe bathroom\t1\n", r":2: expected a one-word answer"),
        ("1 Where is Mary? \tbathroom\t1\n", r":1: question with an empty story"),
        ("1 Mary moved.\n2 Where is Mary? \tbathroom\tone\n", r":2: expected the ids of earlier statements"),
        ("1 Mary moved.\n2 Where is Mary? \tbathroom\t\n", r":2: expected the ids of earlier statements"),
        ("1 Mary moved.\n2 Where is Mary? \tbathroom\t2\n", r":2: expected the ids of earlier statements"),
        ("1 Mary moved.\n2 Where? \tbathroom\t1\n3 Where? \tbathroom\t2\n", r":3: expected the ids of earlier"),
        ("1 Mary moved.\n2 Where? \tbathroom\t1\n3 John went.\n1 Mary moved.\n",
         r":3: the story ends without a question after this statement"),
        ("1 Mary moved.\n2 Where? \tbathroom\t1\n3 John went.\n", r":3: the story ends without a question"),
        ("", r": the file holds no questions"),
        ("\n\n", r": the file holds no questions"),
    ],
)  # fmt: skip
def test_malformed_lines_name_file_and_line(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(DataFormatError, match=re.escape(str(path)) + message):
        parse_babi(path)


def test_non_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "qa1_single-supporting-fact_train.txt"
    path.write_bytes(b"1 Mary moved.\n2 Where is M\xe4ry? \tbathroom\t1\n")
    with pytest.raises(DataFormatError, match=re.escape(str(path)) + r":2: not UTF-8 text \(byte 12"):
        parse_babi(path)


def test_crlf_line_ends_parse_like_lf(tmp_path):
    crlf = parse_babi(_write(tmp_path, STORY.replace("\n", "\r\n"), name="crlf.txt"))
    assert crlf == parse_babi(_write(tmp_path, STORY))


def test_vocabulary_encoding_and_unknown_words():
    train = [BabiExample((("a", "b"), ("c",)), ("q",), "b", (), 0)]
    vocab = build_vocabulary(train)
    assert vocab == ["<pad>", "<unk>", "a", "b", "c", "q"]
    index = {w: i for i, w in enumerate(vocab)}
    test = [BabiExample((("a", "zzz"), ("c",), ("b", "a", "c")), ("q", "yyy"), "b", (), 0)]
    columns, unknown = encode(test, index, horizon=2, sentence_length=2, query_length=3, task=7)
    assert unknown == 1  # "yyy"; "zzz" sits in a sentence beyond the horizon
    assert columns["story"] == [[4, 0, 3, 2]]  # last 2 sentences, each padded/cut to 2 words
    assert columns["query"] == [[5, 1, 0]] and columns["answer"] == [3] and columns["task"] == [7]


def test_pad_batch_pads_stories_with_empty_sentences():
    def row(story):
        return {"story": story, "query": torch.ones(2), "answer": torch.tensor(1), "task": torch.tensor(1)}

    rows = [row(torch.ones(1, 3, dtype=torch.long)), row(torch.full((3, 3), 2))]
    batch = pad_batch(rows)
    assert batch["story"].shape == (2, 3, 3)
    assert batch["story"][0, 1:].eq(0).all() and batch["story"][1].eq(2).all()


def _datamodule(root, **kwargs):
    dm = BabiDataModule(data_dir=str(root), **kwargs)
    dm.setup()
    return dm


def test_official_split_is_the_last_tenth(fixture_data_root):
    dm = _datamodule(fixture_data_root, tasks=[1])
    all_train = parse_babi(babi_path(fixture_data_root, 1, "train", "en-10k"))
    assert (len(dm.splits["train"]), len(dm.splits["val"]), len(dm.splits["test"])) == (180, 20, 50)
    last = all_train[-1]
    index = {w: i for i, w in enumerate(dm.vocab)}
    assert dm.splits["val"][19]["answer"].item() == index[last.answer]


def test_story_level_split_never_splits_a_story(fixture_data_root):
    examples = parse_babi(babi_path(fixture_data_root, 1, "train", "en"))
    split = BabiDataModule._split_validation(examples, "story_level", 0.1, torch.Generator().manual_seed(3))
    val_stories = {e.story_index for e in split["val"]}
    assert len(val_stories) == 4 and len(split["val"]) == 20  # 4 of 40 stories, 5 questions each
    assert not val_stories & {e.story_index for e in split["train"]}
    again = BabiDataModule._split_validation(examples, "story_level", 0.1, torch.Generator().manual_seed(3))
    assert again == split


def test_memory_horizon_keeps_the_last_statements(fixture_data_root):
    full = _datamodule(fixture_data_root, tasks=[1], memory_horizon=70)
    short = _datamodule(fixture_data_root, tasks=[1], memory_horizon=3)
    long_story = max(range(len(full.splits["train"])), key=lambda i: len(full.splits["train"][i]["story"]))
    assert len(full.splits["train"][long_story]["story"]) == 10
    assert torch.equal(short.splits["train"][long_story]["story"], full.splits["train"][long_story]["story"][-3:])


def test_joint_tasks_and_batches(fixture_data_root):
    dm = _datamodule(fixture_data_root, tasks=[1, 2], batch_size=8, epoch_sampling="official")
    assert set(dm.splits["train"].tasks.tolist()) == {1, 2}
    loader = dm.train_dataloader()
    assert len(loader) == 360 // 8
    batch = next(iter(loader))
    assert batch["story"].shape[0] == 8 and batch["story"].shape[2] == dm.sentence_length
    assert batch["query"].shape == (8, dm.query_length)


def test_drop_last_test_reproduces_the_authors_992(fixture_data_root):
    whole = BabiDataModule(data_dir=str(fixture_data_root), tasks=[1], batch_size=16)
    dropped = BabiDataModule(data_dir=str(fixture_data_root), tasks=[1], batch_size=16, drop_last_test=True)
    whole.setup(), dropped.setup()
    assert sum(len(b["answer"]) for b in whole.test_dataloader()) == 50
    assert sum(len(b["answer"]) for b in dropped.test_dataloader()) == 48


def test_second_setup_reads_the_cache_without_parsing(fixture_data_root, monkeypatch):
    _datamodule(fixture_data_root, tasks=[2])

    def fail(*args, **kwargs):
        raise AssertionError("parsed again instead of reading the cache")

    monkeypatch.setattr(babi_module, "parse_babi", fail)
    assert len(_datamodule(fixture_data_root, tasks=[2]).splits["test"]) == 50
    with pytest.raises(AssertionError, match="parsed again"):
        _datamodule(fixture_data_root, tasks=[2], memory_horizon=5)  # a different option is a new cache entry


def test_missing_file_names_it(tmp_path):
    with pytest.raises(MissingDataError, match=re.escape(str(babi_path(tmp_path, 5, "train", "en-10k")))):
        _datamodule(tmp_path, tasks=[5])


@pytest.mark.parametrize("split", ["train", "test"])
def test_bad_file_publishes_no_cache_entry_and_a_fixed_file_then_works(tmp_path, split):
    root = tmp_path / "data"
    write_babi(root, tasks=(1,))
    path = babi_path(root, 1, split, "en")
    good = path.read_text()
    cache = tmp_path / "cache" / "babi"  # the conftest's ICLR17_CACHE_DIR
    path.write_text("")
    with pytest.raises(DataFormatError, match=re.escape(str(path)) + ": the file holds no questions"):
        _datamodule(root, tasks=[1], subset="en")
    path.write_text(good.replace("\t", " ", 2))  # the first question (line 3) lost its TABs
    with pytest.raises(DataFormatError, match=re.escape(str(path)) + ":3: expected a statement ending in"):
        _datamodule(root, tasks=[1], subset="en")
    assert not cache.exists() or os.listdir(cache) == []
    path.write_text(good)
    dm = _datamodule(root, tasks=[1], subset="en")
    assert len(dm.splits[split]) == {"train": 180, "test": 50}[split]
    assert len(os.listdir(cache)) == 1


@pytest.mark.parametrize(("val_split", "empty"), [("official", "val"), ("story_level", "train")])
def test_a_split_left_empty_names_the_file_and_the_arguments(tmp_path, val_split, empty):
    root = tmp_path / "data"
    write_babi(root, tasks=(1,))
    path = babi_path(root, 1, "train", "en")
    path.write_text("1 Mary moved to the garden.\n2 Where is Mary? \tgarden\t1\n")
    fraction = {"val": 0.1, "train": 0.9}[empty]
    message = rf"{re.escape(str(path))}: val_split='{val_split}' and val_fraction={fraction} leave no {empty} questions"
    with pytest.raises(ValueError, match=message):
        _datamodule(root, tasks=[1], subset="en", val_split=val_split, val_fraction=fraction)
    assert not (tmp_path / "cache" / "babi").exists() or os.listdir(tmp_path / "cache" / "babi") == []


def test_bad_arguments():
    with pytest.raises(ValueError, match="tasks"):
        BabiDataModule(tasks=[0])
    with pytest.raises(ValueError, match="val_fraction"):
        BabiDataModule(val_fraction=1.0)


@pytest.mark.parametrize("task", sorted(BABI_TASKS))
def test_real_files_have_the_published_question_counts(real_data_dir, task):
    """Also checks that every line of the release follows ``parse_babi``'s rules (it raises otherwise)."""
    assert len(parse_babi(babi_path(real_data_dir, task, "test", "en"))) == 1000
    assert len(parse_babi(babi_path(real_data_dir, task, "train", "en"))) == 1000
    assert len(parse_babi(babi_path(real_data_dir, task, "test", "en-10k"))) == 1000
    train_10k = babi_path(real_data_dir, task, "train", "en-10k")
    if task == 3 and not train_10k.exists():
        pytest.skip(f"{train_10k} is missing from this data root (the project's copy lacks it)")
    assert len(parse_babi(train_10k)) == 10_000


def test_real_joint_1k_datamodule(real_data_dir):
    dm = _datamodule(real_data_dir, tasks=list(range(1, 21)), subset="en")
    assert (len(dm.splits["train"]), len(dm.splits["val"]), len(dm.splits["test"])) == (18_000, 2_000, 20_000)
    assert dm.unknown_words["train"] == 0


def test_official_sampling_needs_one_whole_batch(fixture_data_root):
    dm = BabiDataModule(data_dir=str(fixture_data_root), tasks=[1], batch_size=512)
    dm.setup()
    with pytest.raises(ValueError, match="fewer than batch_size=512"):
        dm.train_dataloader()
