"""``python -m tests.data``: the fixture writers' one command line."""

from iclr17.datamodules import CIFAR10DataModule, MNISTDataModule
from tests.data.__main__ import WRITERS, main


def test_the_command_writes_only_the_datasets_asked_for_in_a_form_the_datamodules_read(tmp_path):
    main([str(tmp_path), "--only", "mnist", "cifar10"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar10", "mnist"]
    mnist = MNISTDataModule(data_dir=str(tmp_path), val_size=100)
    mnist.setup("fit")
    cifar = CIFAR10DataModule(data_dir=str(tmp_path), val_size=50, preprocessing="none")
    cifar.setup("fit")
    assert len(mnist.train_set) == 500 and len(cifar.train_set) == 250  # the writers' defaults, as the tests use


def test_every_fixture_dataset_has_a_writer():
    assert set(WRITERS) == {"mnist", "cifar10", "babi", "cbt", "ptb", "war_and_peace", "images"}
