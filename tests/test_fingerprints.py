"""Every shipped config (in its fast form) and every smoke config trains exactly as recorded.

The fast form: the fixture data root, 20 optimizer steps, no validation, one CPU thread, seed 0, plus the few
overrides below where a config names data that the fixtures do not have.

Float results depend on the CPU's kernels (AVX-512 vs AVX2 reductions differ in the last bits), so the records
are kept per machine kind in ``tests/fingerprints/<machine>.json``. On a machine kind with a record the
comparison is bit for bit (losses and the weights' digest); on any other, where 20 steps of training can drift
apart (Langevin and GAN runs by up to 100%), only the number of logged steps (with every other record) and the first
step's losses (the initial weights, the data, the forward pass; to a relative 1e-2 of at least one other record: an
Entropy-SGD step's loss, averaged over its Langevin loop, differs by 2% between AMD and Intel AVX-512 kinds) are
compared.
Only a commit that changes training on purpose regenerates a record, and
says why; a new machine kind adds its own: ``ICLR17_UPDATE_FINGERPRINTS=1 python -m pytest tests/test_fingerprints.py
-m ""`` writes ``tests/fingerprints/<this machine>.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from iclr17.cli import resolve_config_path, shipped_configs
from tests.conftest import REPO_ROOT
from tests.fingerprint import fingerprint, machine_kind

RECORDS = Path(__file__).parent / "fingerprints"
OWN_RECORD = RECORDS / f"{machine_kind()}.json"
UPDATE = os.environ.get("ICLR17_UPDATE_FINGERPRINTS") == "1"

FIXTURE_DATA = {  # per datamodule: what the fixture data root can serve, small enough for 20 fast steps
    "MNISTDataModule": ["--data.init_args.val_size=100", "--data.init_args.batch_size=8"],
    "SemiSupervisedMNISTDataModule": [
        "--data.init_args.num_labelled=20",
        "--data.init_args.batch_size=8",
        "--data.init_args.val_size=100",
    ],
    "CIFAR10DataModule": ["--data.init_args.val_size=50", "--data.init_args.batch_size=2"],
    "ImageFolderDataModule": ["--data.init_args.val_size=4", "--data.init_args.batch_size=2"],
    "CelebADataModule": ["--data.init_args.batch_size=4"],
    "LSUNDataModule": ["--data.init_args.batch_size=4"],
    "PTBDataModule": ["--data.init_args.batch_size=4", "--model.init_args.vocab_size=24"],
    "CharTextDataModule": ["--data.init_args.batch_size=4", "--model.init_args.vocab_size=40"],
}
FIXTURE_OVERRIDES = {  # configs whose data the fixture root holds under another name or in fewer tasks
    "ebgan/imagenet128.yaml": ["--data.init_args.folder=images"],
    "entnet/babi10k_joint.yaml": ["--data.init_args.tasks=[1,2]"],
    # the fixture's 8-image minibatches make the Lua LeNet's Langevin loop diverge at eta' = 0.1 (real MNIST does not)
    "entropy_sgd/lenet_lua_entropy.yaml": ["--model.init_args.optimizer.init_args.eta_prime=0.01"],
}


def fast_form(name: str, path: str) -> list[str]:
    """The overrides that make ``path`` train on the fixture data root."""
    data = yaml.safe_load(Path(path).read_text()).get("data") or {}
    data_class = (data.get("class_path") or "").split(".")[-1]
    return FIXTURE_DATA.get(data_class, []) + FIXTURE_OVERRIDES.get(name.removeprefix("configs/"), [])


CONFIGS = [name for name in shipped_configs() if not name.startswith("studies/")]  # fit configs only
SMOKE = sorted(p.name for p in (REPO_ROOT / "tests" / "smoke").glob("*.yaml"))
SLOW = {  # over 10 s each on the 2-core dev machine: run with -m slow
    "configs/entropy_sgd/ptb_lstm_large_entropy.yaml",
    "configs/entropy_sgd/ptb_lstm_large_sgd.yaml",
    "configs/entropy_sgd/ptb_lstm_medium_entropy.yaml",
    "configs/entropy_sgd/allcnn_entropy.yaml",
    "configs/hessian/mnist_small.yaml",
    "configs/ebgan/imagenet128.yaml",
    "configs/entnet/world_model.yaml",
}
CASES = [
    pytest.param(name, path, id=name, marks=[pytest.mark.slow] if name in SLOW else [])
    for name, path in [(f"configs/{name}", resolve_config_path(name)) for name in CONFIGS]
    + [(f"tests/smoke/{name}", str(REPO_ROOT / "tests" / "smoke" / name)) for name in SMOKE]
]


@pytest.fixture(scope="module")
def record() -> dict:
    recorded = json.loads(OWN_RECORD.read_text()) if OWN_RECORD.is_file() else {}
    yield recorded
    if UPDATE:
        OWN_RECORD.write_text(json.dumps(dict(sorted(recorded.items())), indent=1) + "\n")


def other_machines() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(RECORDS.glob("*.json")) if p != OWN_RECORD}


@pytest.mark.parametrize(("name", "path"), CASES)
def test_training_matches_its_fingerprint(name, path, record, monkeypatch, fixture_data_root):
    monkeypatch.setenv("ICLR17_DATA_DIR", str(fixture_data_root))
    measured = fingerprint(path, fast_form(name, path))
    assert measured["losses"], f"{name}: no training loss was logged"
    if UPDATE:
        record[name] = measured
        return
    if name in record:  # this machine kind's own record: bit for bit
        assert measured["losses"] == record[name]["losses"], f"{name}: the first training losses changed"
        assert measured["weights"] == record[name]["weights"], f"{name}: the weights after 20 steps changed"
        return
    others = {machine: fingerprints[name] for machine, fingerprints in other_machines().items() if name in fingerprints}
    assert others, f"{name} has no fingerprint: run with ICLR17_UPDATE_FINGERPRINTS=1 and commit it"
    for machine, recorded in others.items():
        assert len(measured["losses"]) == len(recorded["losses"]), f"{name}: {machine} logged other steps"
    # training is chaotic across kernels (an Entropy-SGD step's loss averages its Langevin loop): the first step only,
    # within float noise of at least one other machine kind's record
    first_steps = {machine: recorded["losses"][0] for machine, recorded in others.items()}
    assert any(measured["losses"][0] == pytest.approx(first, rel=1e-2) for first in first_steps.values()), (
        f"{name}: the first step's losses {measured['losses'][0]} differ beyond float noise from every other machine "
        f"kind's record: {first_steps}"
    )
