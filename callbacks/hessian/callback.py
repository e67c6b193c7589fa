"""``HessianSpectrum``: the spectrum of the training loss's Hessian, measured during any Lightning run."""

from __future__ import annotations

import functools
import itertools
import re
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.utils.data import DataLoader, IterableDataset

from iclr17.functional.hessian import (
    count_outliers,
    exact_hessian,
    flat_loss,
    hessian_vector_product,
    hutchinson_trace,
    hutchpp_trace,
    lanczos_extremes,
    slq_density,
    spectrum_statistics,
)

from ..measurement import (
    LossFn,
    check_loss_contract,
    forked_rng,
    log_image,
    measurement_mode,
    module_loss,
    reduce_over_processes,
)
from ..run_folder import run_folder


class HessianSpectrum(pl.Callback):
    """Eigenvalues of the Hessian of the training loss on a fixed data subset, for any LightningModule.

    Contract with the model: the loss is ``loss_fn(module, batch)``, by default the module's side-effect-free
    ``loss(batch)`` method, which every iclr17 module has; a model of your own defines that method or is given
    ``loss_fn`` (checked in ``setup``; see ``iclr17.callbacks.measurement``)::

        spectrum = HessianSpectrum(method="auto", n_samples=512, loss_fn=lambda model, batch: F.cross_entropy(
            model(batch[0]), batch[1]))  # not needed when model.loss(batch) exists
        pl.Trainer(max_epochs=3, callbacks=[spectrum]).fit(model, datamodule)
        before, after = spectrum.history[0], spectrum.history[-1]
        print(after["stats"]["lambda_max"], after["stats"]["n_outliers"])

    The loss must be twice differentiable by ``torch.func``: a custom
    ``autograd.Function`` without a double backward is not (use ``EntNet(fused_memory=False)``). The Hessian
    subset is ``n_samples`` examples drawn once (seeded) from the dataset of the Trainer's own training
    DataLoader (``trainer.train_dataloader``: the datamodule's, or the loader passed to
    ``trainer.fit(model, loader)``) and collated by that loader into one batch. A loader over an
    ``IterableDataset`` gives its first ``n_samples`` examples instead; a loader that does not batch
    (``batch_size=None``, e.g. a BPTT language model or a spin glass whose items are whole batches) gives its
    dataset's first item, and ``n_samples`` does not apply.

    Measured at the start of training (the paper's "before"), at fit end ("after"), every ``every_n_epochs``
    epochs and every ``every_n_steps`` optimizer steps. Each measurement appends a record to ``history``
    (``step``, ``epoch``, ``when``, ``method``, ``eigenvalues``, ``density``, ``stats``, ``n_params``,
    ``n_samples``, ``mode``, ``seconds``; plain tensors without autograd history, and floats) and logs
    ``<name>/<stat>``. Several HessianSpectrum callbacks may share a Trainer (Lanczos and SLQ, or one per
    ``param_filter``) if each has its own ``name``: its metric prefix and file folder; each keeps its own
    history in checkpoints (``state_key``).
    Methods: ``exact`` (dense Hessian, all eigenvalues), ``lanczos`` (``top_k`` largest and smallest),
    ``slq`` (spectral density), ``trace`` (Hutch++ or Hutchinson with ``trace_matvecs`` products), ``auto``
    (exact up to ``exact_max_params`` parameters, else lanczos).
    The measurement runs with gradients enabled even under ``Trainer(inference_mode=True)``; it restores the
    modules' train/eval flags, buffers (BatchNorm statistics), parameters' dtype and the RNG state, and does not
    touch the optimizer. ``mode="eval"`` (default) measures with BatchNorm's running statistics and without
    dropout; ``mode="train"`` uses batch statistics and dropout with one fixed mask per measurement (every
    evaluation of the loss starts from the same RNG state). History lives in checkpoints.

    Under DDP the subset is split evenly over the processes and Hessian-vector products are averaged across
    them (``trainer.strategy.reduce``), so every process holds the same record (loggers write from rank 0).

    Args:
        method: ``auto``, ``exact``, ``lanczos``, ``slq`` or ``trace``.
        n_samples: size of the fixed Hessian subset.
        exact_max_params: largest parameter count ``auto`` measures exactly.
        top_k: eigenvalues reported at each end by ``lanczos``.
        lanczos_steps: Lanczos iterations (``lanczos`` and each ``slq`` probe).
        slq_probes: Rademacher probes of ``slq``.
        trace_estimator: ``hutchpp`` (default: low variance when outliers carry the trace) or ``hutchinson``.
        trace_matvecs: Hessian-vector products of the ``trace`` method.
        every_n_epochs: also measure after every this many epochs (None: only at start and end).
        every_n_steps: also measure after every this many optimizer steps (None: never by steps).
        at_fit_start: measure before training.
        at_fit_end: measure after training.
        mode: ``eval`` or ``train`` (see above).
        dtype: ``float64`` (exact arithmetic for small models; default) or ``float32``.
        param_filter: regular expression; only parameters whose name matches are included (per-block spectra).
        num_classes: number of classes, logged beside the outlier count.
        seed: seeds the subset and the probes.
        loss_fn: ``(module, batch) -> scalar``; default: the module's ``loss(batch)``.
        save_files: write ``<run folder>/<name>/<when>_step<N>.npz`` (eigenvalues or density, and the
            statistics) and ``.png`` (the paper's plots) on rank 0, and send the figure to wandb or TensorBoard.
            The run folder is the run's own (``iclr17.callbacks.run_folder``): ``runs/iclr17/<run id>`` with
            the default wandb logger, ``default_root_dir`` without a logger.
        name: prefix of the logged statistics and folder of the files; one per HessianSpectrum in a Trainer.
    """

    def __init__(
        self,
        method: Literal["auto", "exact", "lanczos", "slq", "trace"] = "auto",
        n_samples: int = 512,
        exact_max_params: int = 6000,
        top_k: int = 10,
        lanczos_steps: int = 100,
        slq_probes: int = 10,
        trace_estimator: Literal["hutchpp", "hutchinson"] = "hutchpp",
        trace_matvecs: int = 99,
        every_n_epochs: int | None = None,
        every_n_steps: int | None = None,
        at_fit_start: bool = True,
        at_fit_end: bool = True,
        mode: Literal["eval", "train"] = "eval",
        dtype: Literal["float64", "float32"] = "float64",
        param_filter: str | None = None,
        num_classes: int | None = None,
        seed: int = 0,
        loss_fn: LossFn | None = None,
        save_files: bool = True,
        name: str = "hessian",
    ) -> None:
        if n_samples < 1 or top_k < 1 or lanczos_steps < 1 or slq_probes < 1 or trace_matvecs < 3:
            raise ValueError("n_samples, top_k, lanczos_steps and slq_probes must be positive, trace_matvecs >= 3")
        if method not in ("auto", "exact", "lanczos", "slq", "trace"):
            raise ValueError(f"method must be auto, exact, lanczos, slq or trace; got {method!r}")
        self.method, self.n_samples, self.exact_max_params = method, n_samples, exact_max_params
        self.top_k, self.lanczos_steps, self.slq_probes = top_k, lanczos_steps, slq_probes
        self.trace_estimator, self.trace_matvecs = trace_estimator, trace_matvecs
        self.every_n_epochs, self.every_n_steps = every_n_epochs, every_n_steps
        self.at_fit_start, self.at_fit_end = at_fit_start, at_fit_end
        self.mode, self.dtype = mode, getattr(torch, dtype)
        self.param_filter, self.num_classes, self.seed = param_filter, num_classes, seed
        self.loss_fn = loss_fn or module_loss
        self.save_files, self.name = save_files, name
        self.history: list[dict[str, Any]] = []
        self.batch: Any = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(
            name=self.name, method=self.method, param_filter=self.param_filter, mode=self.mode
        )

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        check_loss_contract("HessianSpectrum", pl_module, self.loss_fn)
        names = [c.name for c in trainer.callbacks if isinstance(c, HessianSpectrum)]
        if names.count(self.name) > 1:
            raise ValueError(
                f"HessianSpectrum: {names.count(self.name)} callbacks share name={self.name!r}, so their metrics "
                "and files would overwrite each other; give each its own name"
            )

    def _draw_subset(self, trainer: pl.Trainer) -> None:
        """The fixed subset from the trainer's training DataLoader, collated by that loader (this process's share
        under DDP); the loader itself is never iterated, so training sees the same batches."""
        loader = trainer.train_dataloader
        if not isinstance(loader, DataLoader):
            raise ValueError(
                "HessianSpectrum draws its subset from trainer.train_dataloader, which must be one torch "
                f"DataLoader; got {type(loader).__name__}"
            )
        dataset = loader.dataset
        if loader.batch_size is None and loader.batch_sampler is None:  # no batching: every item is a batch
            first = next(iter(dataset)) if isinstance(dataset, IterableDataset) else dataset[0]
            self.batch = loader.collate_fn(first)
            self.n_subset = _rows(self.batch) * trainer.world_size
            return
        if isinstance(dataset, IterableDataset):  # it splits itself over processes, if it is meant to
            items = list(itertools.islice(iter(dataset), self.n_samples))
            self.batch, self.n_subset = loader.collate_fn(items), len(items) * trainer.world_size
            return
        generator = torch.Generator().manual_seed(self.seed)
        indices = torch.randperm(len(dataset), generator=generator)[: self.n_samples].tolist()
        if len(indices) % trainer.world_size:
            raise ValueError(
                f"HessianSpectrum: the {len(indices)}-sample subset must split evenly over {trainer.world_size} "
                "processes (set n_samples to a multiple of the world size)"
            )
        self.n_subset = len(indices)
        shard = indices[trainer.global_rank :: trainer.world_size]  # every rank the same share of one subset
        self.batch = loader.collate_fn([dataset[i] for i in shard])

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.batch is None:  # the training DataLoader exists from here on, with or without a datamodule
            with forked_rng(pl_module):  # a dataset may draw (augmentations): training's
                torch.manual_seed(self.seed)  # RNG stays as it was, and the subset depends on seed alone
                self._draw_subset(trainer)
        if self.at_fit_start and not any(r["when"] == "start" for r in self.history):
            self.measure(trainer, pl_module, "start")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.measure(trainer, pl_module, "epoch")

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if self.every_n_steps and step % self.every_n_steps == 0 and not any(r["step"] == step for r in self.history):
            self.measure(trainer, pl_module, "step")

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.at_fit_end:
            self.measure(trainer, pl_module, "end")

    def measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule, when: str) -> dict[str, Any]:
        """Measure now and return the record (also appended to ``history`` and logged)."""
        start = time.perf_counter()
        names = [n for n, p in pl_module.named_parameters() if p.requires_grad]
        if self.param_filter is not None:
            names = [n for n in names if re.search(self.param_filter, n)]
        if not names:
            raise ValueError(f"HessianSpectrum: no trainable parameter matches param_filter={self.param_filter!r}")
        n_params = sum(dict(pl_module.named_parameters())[n].numel() for n in names)
        method = self.method if self.method != "auto" else ("exact" if n_params <= self.exact_max_params else "lanczos")
        with measurement_mode(pl_module, train=self.mode == "train", grad=True), self._in_dtype(pl_module):
            batch = _to(self.batch, pl_module.device, self.dtype)
            loss_of, theta = flat_loss(pl_module, self._seeded(self.loss_fn), batch, names)
            mean = functools.partial(reduce_over_processes, trainer, op="mean")
            eigenvalues, density, stats = self._spectrum(method, loss_of, theta, mean)
        if self.num_classes is not None:
            stats["num_classes"] = float(self.num_classes)
        record = {
            "step": trainer.global_step,
            "epoch": trainer.current_epoch,
            "when": when,
            "method": method,
            "eigenvalues": None if eigenvalues is None else eigenvalues.cpu(),
            "density": density,
            "stats": stats,
            "n_params": n_params,
            "n_samples": self.n_subset,
            "mode": self.mode,
            "seconds": time.perf_counter() - start,
        }
        self.history.append(record)
        for logger in trainer.loggers:
            logger.log_metrics({f"{self.name}/{k}": v for k, v in stats.items()}, step=trainer.global_step)
        if self.save_files and trainer.is_global_zero:
            self._save(trainer, record, run_folder(trainer) / self.name)
        return record

    def _save(self, trainer: pl.Trainer, record: dict[str, Any], folder: Path) -> None:
        """``<folder>/<when>_step<N>.{npz,png}``; the figure also goes to wandb and TensorBoard."""
        import numpy as np

        from .figures import spectrum_figure

        folder.mkdir(parents=True, exist_ok=True)
        stem = folder / f"{record['when']}_step{record['step']}"
        arrays = {"eigenvalues": record["eigenvalues"].numpy()} if record["eigenvalues"] is not None else {}
        if record["density"] is not None:
            arrays.update(grid=record["density"]["grid"].numpy(), density=record["density"]["density"].numpy())
        np.savez(f"{stem}.npz", **arrays, **{k: np.float64(v) for k, v in record["stats"].items()})
        if not arrays:
            return  # a trace record has numbers only: they are logged
        figure = spectrum_figure(record)
        log_image(trainer, f"{self.name}/{record['when']}", figure, record["step"], self.name, always_file=True)
        import matplotlib.pyplot as plt

        plt.close(figure)

    def _spectrum(
        self, method: str, loss_of, theta: Tensor, mean: Callable[[Tensor], Tensor]
    ) -> tuple[Tensor | None, dict | None, dict[str, float]]:
        """Eigenvalues (all for exact, the extremes for lanczos, None for slq), density (slq) and statistics.

        Under DDP each process holds an equal shard of the subset, so the subset's Hessian is the mean of the
        shards' Hessians: dense Hessians and every product ``H v`` are averaged across processes by ``mean`` (a
        plain ``torch.func`` product bypasses DDP's gradient hooks). Probes come from the same seeded generator on
        every process, so all of them run the same number of products and reach the same result.
        """
        generator = torch.Generator().manual_seed(self.seed)
        if method == "exact":
            eigenvalues = torch.linalg.eigvalsh(mean(self._dense(loss_of, theta)).double()).cpu()
            return eigenvalues, None, spectrum_statistics(eigenvalues)
        local_matvec = hessian_vector_product(loss_of, theta)

        def matvec(v: Tensor) -> Tensor:
            return mean(local_matvec(v))

        v = torch.randn(len(theta), generator=torch.Generator().manual_seed(self.seed), dtype=torch.float64).to(theta)
        rebuilt = hessian_vector_product(loss_of, theta)  # a second graph: is the loss itself deterministic?
        if not torch.allclose(matvec(v), mean(rebuilt(v)), rtol=1e-5, atol=1e-8):
            rank_zero_warn("HessianSpectrum: H v differs between two evaluations; the loss is not deterministic")
        if method == "trace":
            estimator = hutchpp_trace if self.trace_estimator == "hutchpp" else hutchinson_trace
            trace = estimator(matvec, len(theta), self.trace_matvecs, generator, theta.dtype, device=theta.device)
            return None, None, {"trace": trace}
        if method == "lanczos":
            top, bottom = lanczos_extremes(
                matvec, len(theta), self.top_k, self.lanczos_steps, generator, theta.dtype, device=theta.device
            )
            stats = {"lambda_max": top[0].item(), "lambda_min": bottom[0].item()}
            return torch.cat([top, bottom.flip(0)]), None, {**stats, "n_outliers": float(count_outliers(top))}
        grid, values, info = slq_density(
            matvec, len(theta), self.lanczos_steps, self.slq_probes, generator, theta.dtype, device=theta.device
        )
        stats = {"lambda_max": info["lambda_max"], "lambda_min": info["lambda_min"], "trace": info["trace"]}
        return None, {"grid": grid, "density": values, "sigma": info["sigma"]}, stats

    def _seeded(self, loss_fn: LossFn) -> LossFn:
        """Every evaluation starts from the same RNG state, so with ``mode="train"`` dropout uses one fixed
        mask and the Hessian is that of one deterministic function (the RNG is restored afterwards)."""

        def seeded(module: nn.Module, batch: Any) -> Tensor:
            torch.manual_seed(self.seed)
            return loss_fn(module, batch)

        return seeded

    @staticmethod
    def _dense(loss_of, theta: Tensor) -> Tensor:
        try:
            return exact_hessian(loss_of, theta)
        except RuntimeError as err:  # e.g. data-dependent control flow in the loss, which vmap cannot batch
            warnings.warn(
                f"HessianSpectrum: torch.func.hessian failed ({err}); building H column by column", stacklevel=2
            )
            matvec = hessian_vector_product(loss_of, theta)
            eye = torch.eye(len(theta), dtype=theta.dtype, device=theta.device)
            h = torch.stack([matvec(e) for e in eye], dim=1)
            return (h + h.T) / 2

    @contextmanager
    def _in_dtype(self, pl_module: pl.LightningModule) -> Iterator[None]:
        """Parameters and floating buffers in the measurement's dtype, and their original storage (values, dtype,
        BatchNorm statistics) back on the way out, exception or not."""
        tensors = [*pl_module.parameters(), *pl_module.buffers()]
        saved = [(t, t.data) for t in tensors]
        for tensor in tensors:
            if tensor.is_floating_point():
                tensor.data = tensor.data.to(self.dtype)
        try:
            yield
        finally:
            for tensor, data in saved:
                tensor.data = data
            for m in pl_module.modules():
                for name, parameter in list(m.named_parameters(recurse=False)):
                    # registering again runs the module's own hook: an RNN refreshes its flat weights,
                    # which functional_call leaves pointing at the measurement's float64 tensors
                    setattr(m, name, parameter)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict["history"])


def _rows(batch: Any) -> int:
    """The leading size of the first tensor in ``batch`` (the number of examples of a ready-made batch)."""
    if isinstance(batch, Tensor):
        return batch.shape[0] if batch.dim() else 1
    values = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (list, tuple)) else []
    return next((_rows(b) for b in values), 1)


def _to(batch: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """Move a batch to ``device``; floating tensors also to ``dtype``."""
    if isinstance(batch, Tensor):
        return batch.to(device, dtype) if batch.is_floating_point() else batch.to(device)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(b, device, dtype) for b in batch)
    if isinstance(batch, dict):
        return {k: _to(v, device, dtype) for k, v in batch.items()}
    return batch
