"""Image datamodules on fixture files in the original formats (tests/data/make_images.py)."""

import pytest
import torch

from iclr17.datamodules import CelebADataModule, ImageFolderDataModule, LSUNDataModule
from iclr17.datamodules.storage import DataFormatError, MissingDataError
from tests.data.make_images import write_celeba, write_lsun


def test_celeba_follows_the_partition_file_and_serves_64px_in_tanh_range(fixture_data_root):
    dm = CelebADataModule(data_dir=str(fixture_data_root), batch_size=4)
    dm.setup("fit")
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [8, 2, 2]
    assert dm.splits["val"][0].name == "000009.jpg"
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 64, 64) and x.dtype == torch.float32 and y.tolist() == [0] * 4
    assert -1.0 <= x.min() < x.max() <= 1.0


def test_celeba_reports_a_bad_partition_line(tmp_path):
    folder = write_celeba(tmp_path)
    (folder / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 7\n")
    with pytest.raises(DataFormatError, match=r"list_eval_partition.txt:2"):
        CelebADataModule(data_dir=str(tmp_path)).setup()
    (folder / "list_eval_partition.txt").write_text("000001.jpg 0\n999999.jpg 1\n")
    with pytest.raises(MissingDataError, match="999999.jpg"):
        CelebADataModule(data_dir=str(tmp_path)).setup()


def test_lsun_reads_the_exported_webp_layout(fixture_data_root):
    dm = LSUNDataModule(data_dir=str(fixture_data_root), batch_size=4, image_size=32)
    dm.setup("fit")
    assert len(dm.splits["train"]) == 8 and len(dm.splits["val"]) == 4
    first = dm.splits["train"][0]
    assert first.suffix == ".webp" and "/".join(first.parent.parts[-6:]) == "/".join(first.stem[:6])
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 32)


def test_lsun_points_to_the_export_tool_when_only_lmdb_exists(tmp_path):
    (tmp_path / "lsun" / "bedroom_train_lmdb").mkdir(parents=True)
    with pytest.raises(MissingDataError, match="export"):
        LSUNDataModule(data_dir=str(tmp_path)).setup()


def test_image_folder_split_is_seeded_and_grayscale_works(fixture_data_root):
    a = ImageFolderDataModule(data_dir=str(fixture_data_root), val_size=4, channels=1, image_size=16, batch_size=4)
    b = ImageFolderDataModule(data_dir=str(fixture_data_root), val_size=4, channels=1, image_size=16, batch_size=4)
    a.setup(), b.setup()
    assert a.splits == b.splits and len(a.splits["train"]) == 8
    assert not set(a.splits["train"]) & set(a.splits["val"])
    x, _ = next(iter(a.val_dataloader()))
    assert x.shape == (4, 1, 16, 16)


def test_training_loader_drops_the_incomplete_batch(tmp_path):
    write_lsun(tmp_path, n_train=7, n_val=2)
    dm = LSUNDataModule(data_dir=str(tmp_path), batch_size=4, image_size=8)
    dm.setup()
    assert [len(x) for x, _ in dm.train_dataloader()] == [4]
