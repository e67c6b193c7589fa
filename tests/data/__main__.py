"""Write the fixture datasets in their original on-disk formats under a data root (the sizes the tests use).

    python -m tests.data OUT_DIR [--only mnist cifar10 babi cbt ptb war_and_peace images]

Point ``ICLR17_DATA_DIR`` (or a datamodule's ``data_dir``) at ``OUT_DIR`` to read them.
"""

from __future__ import annotations

import argparse

from tests.data.make_babi import write_babi
from tests.data.make_cbt import write_cbt
from tests.data.make_cifar10 import write_cifar10
from tests.data.make_images import write_images
from tests.data.make_mnist import write_mnist
from tests.data.make_text import write_ptb, write_war_and_peace

WRITERS = {  # dataset -> writer of its files under a data root, at its default (the tests') size
    "mnist": write_mnist,
    "cifar10": write_cifar10,
    "babi": write_babi,
    "cbt": write_cbt,
    "ptb": write_ptb,
    "war_and_peace": write_war_and_peace,
    "images": write_images,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.data", description=__doc__.splitlines()[0])
    parser.add_argument("root", help="the data root to write into")
    parser.add_argument("--only", nargs="+", choices=list(WRITERS), default=list(WRITERS), help="datasets to write")
    args = parser.parse_args(argv)
    for name in args.only:
        print(f"{name}: {WRITERS[name](args.root)}")


if __name__ == "__main__":
    main()
