"""SemiSupervisedMNISTDataModule: the balanced, seeded labelled subset, the paired batches, the two validation
settings, and labels of unlabelled images that never reach a batch."""

from collections import Counter

import pytest
import torch

from iclr17.datamodules import SemiSupervisedMNISTDataModule
from iclr17.datamodules.mnist import load_mnist_split
from iclr17.datamodules.semi_supervised_mnist import InOrderShares, PairedExamples, PairedSampler, pair_index


def _dm(root, **kwargs) -> SemiSupervisedMNISTDataModule:
    dm = SemiSupervisedMNISTDataModule(data_dir=str(root), **{"num_labelled": 20, "batch_size": 8, **kwargs})
    dm.setup("fit")
    return dm


def _subset(dm) -> list[tuple]:
    """The labelled examples as hashable (pixels, label) rows, sorted."""
    images, labels = dm.train_set.labelled_images, dm.train_set.labels
    return sorted((tuple(x.tolist()), int(y)) for x, y in zip(images, labels, strict=True))


def test_labelled_subset_is_exactly_balanced_and_seeded(mnist_fixture_dir):
    first, again, other = _dm(mnist_fixture_dir, seed=1), _dm(mnist_fixture_dir, seed=1), _dm(mnist_fixture_dir, seed=2)
    assert Counter(first.train_set.labels.tolist()) == {label: 2 for label in range(10)}
    assert _subset(first) == _subset(again)
    assert _subset(first) != _subset(other)


@pytest.mark.parametrize("num_labelled", [100, 200, 1000])
def test_real_mnist_subsets_are_balanced_and_every_training_image_is_unlabelled(num_labelled, real_data_dir):
    dm = _dm(real_data_dir, num_labelled=num_labelled, batch_size=100, seed=3)
    assert Counter(dm.train_set.labels.tolist()) == {label: num_labelled // 10 for label in range(10)}
    assert dm.train_set.unlabelled_images.shape == (60_000, 784) and len(dm.train_dataloader()) == 600
    assert dm.val_dataloader() == [] and len(dm.test_set) == 10_000


def test_labelled_images_come_from_the_training_images_and_the_split_is_disjoint(mnist_fixture_dir):
    dm = _dm(mnist_fixture_dir, validation="train_split", val_size=100)
    unlabelled = {tuple(x.tolist()) for x in dm.train_set.unlabelled_images}
    validation = {tuple(x.tolist()) for x in dm.val_set.tensors[0]}
    assert len(dm.train_set.unlabelled_images) == 500 and len(dm.val_set) == 100
    assert all(tuple(x.tolist()) in unlabelled for x in dm.train_set.labelled_images)
    assert not unlabelled & validation
    assert len(dm.val_dataloader()) == 13  # 100 images in batches of 8


def test_batches_pair_labelled_and_unlabelled_and_cover_an_epoch(mnist_fixture_dir):
    dm = _dm(mnist_fixture_dir)
    batches = list(dm.train_dataloader())
    assert len(batches) == 75  # 600 unlabelled images in batches of 8
    x_labelled, y_labelled, x_unlabelled = batches[0]
    assert x_labelled.shape == (8, 784) and y_labelled.shape == (8,) and x_unlabelled.shape == (8, 784)
    assert x_labelled.dtype == torch.float32 and x_unlabelled.min() >= 0.0 and x_unlabelled.max() <= 1.0
    seen = Counter(tuple(x.tolist()) for b in batches for x in b[2])
    assert seen == Counter(tuple(x.tolist()) for x in dm.train_set.unlabelled_images)  # each unlabelled image once
    used = Counter(tuple(x.tolist()) for b in batches for x in b[0])
    assert set(used.values()) == {30}  # 20 labelled examples cycled over 600 slots, each equally often


def test_every_pair_is_an_item_and_the_first_items_are_a_full_pass():
    g = torch.Generator().manual_seed(0)
    n_labelled, n_unlabelled = 7, 30
    dataset = PairedExamples(
        torch.rand(n_labelled, 3, generator=g), torch.arange(n_labelled), torch.rand(n_unlabelled, 3)
    )
    labelled, unlabelled = (
        torch.randint(n_labelled, (50,), generator=g),
        torch.randint(n_unlabelled, (50,), generator=g),
    )
    for k, i, u in zip(pair_index(labelled, unlabelled, n_labelled, n_unlabelled), labelled, unlabelled, strict=True):
        x_l, y_l, x_u = dataset[int(k)]
        assert (
            torch.equal(x_l, dataset.labelled_images[i]) and y_l == i and torch.equal(x_u, dataset.unlabelled_images[u])
        )
    firsts = [dataset[k] for k in range(len(dataset))]
    assert [int(y) for _, y, _ in firsts] == [k % n_labelled for k in range(n_unlabelled)]
    assert all(torch.equal(x_u, dataset.unlabelled_images[k]) for k, (_, _, x_u) in enumerate(firsts))


def test_batch_order_depends_on_seed_and_epoch_only(mnist_fixture_dir):
    def first_batch(dm, epoch):
        dm.sampler.set_epoch(epoch)
        return next(iter(dm.train_dataloader()))

    a, b = _dm(mnist_fixture_dir), _dm(mnist_fixture_dir)
    torch.manual_seed(0)
    x0 = first_batch(a, 0)
    torch.manual_seed(1)  # the global RNG plays no part
    assert all(torch.equal(p, q) for p, q in zip(x0, first_batch(b, 0), strict=True))
    assert not torch.equal(x0[2], first_batch(b, 1)[2])


@pytest.mark.parametrize(("num_unlabelled", "processes"), [(30, 2), (31, 2), (29, 3)])
def test_in_order_shares_deal_every_epoch_of_the_one_process_order(num_unlabelled, processes):
    """Process r takes the items r, r + N, ... of each epoch (set_epoch reaching the paired sampler); an epoch that N
    does not divide deals its first items again to even the shares."""
    sampler = PairedSampler(num_labelled=7, num_unlabelled=num_unlabelled, seed=5)
    shares = [InOrderShares(sampler, processes, rank) for rank in range(processes)]
    by_epoch = {}
    for epoch in (0, 3):
        for share in shares:
            share.set_epoch(epoch)
        dealt = [list(share) for share in shares]
        one_process = PairedSampler(num_labelled=7, num_unlabelled=num_unlabelled, seed=5)
        one_process.set_epoch(epoch)
        order = list(one_process)
        padded = order + order[: -len(order) % processes]
        assert dealt == [padded[rank::processes] for rank in range(processes)]
        assert len({len(d) for d in dealt}) == 1
        by_epoch[epoch] = dealt
    assert by_epoch[0] != by_epoch[3]  # set_epoch reached the paired sampler


def test_a_training_batch_of_one_is_a_clear_error(mnist_fixture_dir):
    dm = _dm(mnist_fixture_dir, validation="train_split", val_size=7)  # 593 = 74 x 8 + 1 training images
    with pytest.raises(ValueError, match="593 training images in batches of 8 over 1 process.* a batch of 1"):
        dm.train_dataloader()


def test_batches_carry_labels_of_the_labelled_images_only(mnist_fixture_dir):
    """Each labelled image comes with its own label; the unlabelled half has no label in the batch or the dataset."""
    dm = _dm(mnist_fixture_dir)
    images, labels = load_mnist_split(dm.raw_dir, "train")
    true_label = {tuple((x.reshape(784).float() / 255.0).tolist()): int(y) for x, y in zip(images, labels, strict=True)}
    for x_labelled, y_labelled, _ in dm.train_dataloader():
        assert [true_label[tuple(x.tolist())] for x in x_labelled] == y_labelled.tolist()
    assert len(dm.train_set.labels) == 20 and len(dm.train_set.unlabelled_images) == 600


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_labelled": 15}, "num_labelled must be a positive multiple of 10"),
        ({"num_labelled": 0}, "num_labelled must be a positive multiple of 10"),
        ({"batch_size": 1}, "batch_size must be at least 2"),
        ({"validation": "test"}, "validation must be 'none' or 'train_split'"),
        ({"val_size": 0}, "val_size must be between"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SemiSupervisedMNISTDataModule(**kwargs)


def test_too_many_labels_for_a_class_is_a_clear_error(mnist_fixture_dir):
    with pytest.raises(ValueError, match="num_labelled=1000 needs 100 examples of class"):
        _dm(mnist_fixture_dir, num_labelled=1000)
