"""Measurement never changes training: for every exported LightningModule, a few steps through the real CLI with
our callbacks attached end with the same weights, buffers, plain attributes (carried states, counters),
optimizer state and RNG state, bit for bit, as the same steps without them.

The callbacks run at every step (from before the first), and their full-data losses and Hessian products run the
module's loss on batches the training does not see at that moment, so a loss path that writes module state (a
carried BPTT state, a flag), draws from the global RNG (dropout) or iterates the training loader shows up as a
difference.
Every module is measured through its own ``loss(batch)`` (the contract of ``modules/objective.py``: side-effect
free, the objective its ``training_step`` calls), manual-optimization modules included.
"""

from __future__ import annotations

import inspect
import json
import math
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from torch import Tensor

from iclr17.cli import cli
from tests.test_exports import MODULES, SMOKE

BATCHES = 2  # training batches (a GAN takes two optimizer steps on each)
NEVER = 1e-30  # a threshold no run reaches, so the callbacks measure at every step and never stop training


# Second-order measurement needs a loss that torch.func can differentiate twice: EntNet's recorded memory
SECOND_ORDER_ARGS = {"EntNet": ["--model.init_args.fused_memory=false"]}


def _callbacks(module: pl.LightningModule) -> list[dict[str, Any]]:
    """The measurement callbacks that apply to ``module``, as CLI callback specs, measuring at every step."""
    specs: list[dict[str, Any]] = [
        {"class_path": "HaltingTime", "init_args": {"rule": "grad_norm_below", "thresholds": NEVER, "stop": False}}
    ]
    full_data = {"rule": "train_loss_below", "thresholds": NEVER, "loss_source": "full_data", "stop": False}
    hessian = {"method": "lanczos", "n_samples": 8, "top_k": 2, "lanczos_steps": 4, "every_n_steps": 1}
    hessian |= {"save_files": False}
    assert inspect.ismethod(getattr(module, "loss", None)), f"{type(module).__name__} has no loss(batch) method"
    specs.append({"class_path": "HaltingTime", "init_args": full_data})
    specs.append({"class_path": "HessianSpectrum", "init_args": hessian})
    if callable(getattr(module, "sample_noise", None)):
        specs.append({"class_path": "ImageGrids", "init_args": {"every_n_batches": 1, "n_images": 4}})
    return specs


def _fit(cls: type[pl.LightningModule], callbacks: list[dict[str, Any]]) -> Any:
    args = [
        "fit", "--config", str(SMOKE / f"{cls.__name__}.yaml"), "--seed_everything=0", "--trainer.max_epochs=1",
        f"--trainer.limit_train_batches={BATCHES}", "--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0",
        "--trainer.logger=false", "--trainer.enable_checkpointing=false", "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false", "--trainer.accelerator=cpu",
        *SECOND_ORDER_ARGS.get(cls.__name__, []),
    ]  # fmt: skip
    args += [f"--trainer.callbacks+={json.dumps(spec)}" for spec in callbacks]
    return cli(args)


def _plain(value: Any) -> Any:
    """``value`` as nested Python values and tensors, or ``_OPAQUE`` for objects that are not state."""
    if isinstance(value, Tensor):
        return value.detach().clone()
    if isinstance(value, torch.Generator):
        return value.get_state()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return _OPAQUE


_OPAQUE = object()
# Lightning's own bookkeeping on the module: which hook ran last (callbacks' hooks set it too)
LIGHTNING_BOOKKEEPING = {"_current_fx_name"}


def _state(result: Any) -> dict[str, Any]:
    """Everything training leaves behind: tensors of every submodule, their plain attributes, the optimizers'
    state, the step counter and the global RNG."""
    module, trainer = result.model, result.trainer
    state: dict[str, Any] = {"global_step": trainer.global_step, "rng": torch.random.get_rng_state()}
    state |= {f"param {n}": p.detach().clone() for n, p in module.named_parameters()}
    state |= {f"buffer {n}": b.clone() for n, b in module.named_buffers()}
    for name, submodule in module.named_modules():
        for key, value in vars(submodule).items():
            if key in ("_parameters", "_buffers", "_modules", *LIGHTNING_BOOKKEEPING):
                continue
            if (plain := _plain(value)) is not _OPAQUE:
                state[f"attribute {name}.{key}"] = plain
    for i, optimizer in enumerate(trainer.optimizers):
        state[f"optimizer {i}"] = _plain(optimizer.state_dict())
    return state


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        same = a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
        return [] if same else [path]
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{path} keys {sorted(map(str, a.keys() ^ b.keys()))}"]
        return [d for k in a for d in _differences(a[k], b[k], f"{path}[{k!r}]")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _differences(x, y, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return []
    return [] if type(a) is type(b) and a == b else [path]


@pytest.mark.parametrize("cls", MODULES, ids=lambda c: c.__name__)
def test_callbacks_leave_training_as_it_would_be_without_them(cls, monkeypatch, fixture_data_root):
    monkeypatch.setenv("ICLR17_DATA_DIR", str(fixture_data_root))
    plain = _fit(cls, [])
    without = _state(plain)
    assert _differences(without, _state(_fit(cls, _callbacks(plain.model)))) == []
