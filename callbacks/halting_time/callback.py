"""``HaltingTime``: the step, epoch and wall time at which a stopping rule first holds, for any Lightning run."""

from __future__ import annotations

import math
import time
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.data import extract_batch_size
from torch import Tensor
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset

from iclr17.functional.halting import mean_successive_decrease, push_cost, update_first_hits

from ..measurement import LossFn, check_loss_contract, measurement_mode, module_loss, reduce_over_processes

Rule = Literal["train_loss_below", "loss_plateau", "grad_norm_below", "metric_at_least", "metric_below"]
LossSource = Literal["full_data", "epoch_mean", "ema"]
RULES: tuple[str, ...] = ("train_loss_below", "loss_plateau", "grad_norm_below", "metric_at_least", "metric_below")
LOSS_SOURCES: tuple[str, ...] = ("full_data", "epoch_mean", "ema")
LOSS_RULES = ("train_loss_below", "loss_plateau")  # the rules that read the training loss from ``loss_source``


class HaltingTime(pl.Callback):
    """Records when a stopping rule first holds: the halting time T of Sagun, Trogdon and LeCun, "Universal
    halting times in optimization and machine learning" (arXiv:1511.06444), for any LightningModule.

    Rules (the value each one watches, and when it is read):

    - ``train_loss_below``: the training loss ``< threshold``, never a single noisy batch, from ``loss_source``:
      ``full_data`` (default: the sample-weighted mean of ``loss_fn(module, batch)`` over the trainer's training
      set, whether it comes from a datamodule or from the loader given to ``fit``, read in order through a
      private loader, in eval mode, without gradients, with the RNG and the training loader left as they were,
      at step 0 and every ``every_n_steps`` optimizer steps), ``epoch_mean`` (the mean of the epoch's batch
      losses, at each epoch end) or ``ema`` (an exponential moving average of the batch losses, ``ema_decay``,
      updated after every training batch; under gradient accumulation each batch's own loss, undoing Lightning's
      division by ``accumulate_grad_batches``). The default ``loss_fn`` is the module's ``loss(batch)`` method,
      which every iclr17 module has and which must be free of side effects (``iclr17.callbacks.measurement``), so
      measuring never changes the training; a model of your own without it is given ``loss_fn`` (checked in
      ``setup``). For a BPTT
      language model (``LanguageModel.loss``) every window starts from a zero state: the full-data loss is a
      function of the weights alone, not of the carried training state, and usually higher than the
      carried-state training loss.
    - ``loss_plateau``: the paper's rule for its MNIST networks, training stops "when the average of successive
      differences in cost values goes below a prescribed value" (arXiv:1511.06444). The costs are the training
      losses ``train_loss_below`` reads (same ``loss_source``, same times); the value compared with each
      threshold is the mean of the last ``window`` successive decreases ``c_{i-1} - c_i`` of those costs, i.e.
      ``(c_{t-window} - c_t) / window``, the mean progress per observation
      (``iclr17.functional.halting.mean_successive_decrease``: signed decreases, our reading of the sentence;
      the window is ours, the paper gives none). It first can hold once ``window + 1`` costs were seen: with
      ``full_data`` and ``every_n_steps=1``, at step ``window``. The differences are between successive
      observations, ``every_n_steps`` steps apart for ``full_data``, so a threshold is per observation. One cost
      per optimizer step: a cost observed again at the same step (the first evaluation of a resumed run)
      replaces the last one instead of adding a zero difference.
    - ``grad_norm_below``: the norm of all parameter gradients ``< threshold``, read just before the optimizer
      step every ``every_n_steps`` steps (full-batch data gives the paper's rule; a module whose loss is
      written on the sphere gives the projected gradient, as ``SpinGlass`` does).
    - ``metric_at_least`` / ``metric_below``: the logged metric ``monitor`` (``>=`` / ``<`` threshold), read
      after each validation run and at each training epoch end.

    Several thresholds are tracked at once (a decreasing list of eps values). The halting step of a threshold is
    ``trainer.global_step`` when the rule is first seen to hold, i.e. the number of optimizer steps taken
    (for ``grad_norm_below`` the step about to be taken is not counted). ``record`` holds one dict per
    threshold (``threshold``, ``step``, ``epoch``, ``wall_time`` in seconds of fitting, ``value``,
    ``censored``); a threshold never reached is right-censored at the last step when fitting ends, never
    dropped. With ``stop=True`` training stops once every threshold is reached (after the current step).
    Each first hit is logged as ``halting/step@<threshold>`` (and ``halting/epoch@...``) to every logger.

    Usage on a model of your own (``loss_fn`` only if the model has no ``loss(batch)`` method)::

        halting = HaltingTime("train_loss_below", thresholds=[0.5, 0.1], loss_fn=lambda model, batch:
            F.cross_entropy(model(batch[0]), batch[1]))
        pl.Trainer(max_steps=10_000, callbacks=[halting]).fit(model, datamodule)
        print(halting.halting_step, halting.record)

    State (record, open thresholds, EMA, the plateau rule's window of recent costs, elapsed time) lives in
    checkpoints, so a resumed run finds the same halting steps; a censored entry is reopened when fitting resumes.
    Under DDP every value is reduced over the processes through ``trainer.strategy`` (losses: sample-weighted means
    over each process's shard; gradients: DDP's averaged ones), so every process records the same steps (the
    plateau rule's window holds the reduced losses, the same on every process) and stops together.

    Args:
        rule: ``train_loss_below``, ``loss_plateau``, ``grad_norm_below``, ``metric_at_least`` or ``metric_below``.
        thresholds: one threshold or a list (theta for losses, the mean decrease per observation for
            ``loss_plateau``, eps for gradient norms, a for metrics).
        loss_source: ``full_data``, ``epoch_mean`` or ``ema`` (``train_loss_below`` and ``loss_plateau``; see above).
        every_n_steps: evaluation period in optimizer steps for ``full_data`` and ``grad_norm_below``.
        ema_decay: weight of the past in the ``ema`` loss.
        monitor: metric name for the metric rules (e.g. ``val/acc``).
        stop: stop training once every threshold is reached.
        loss_fn: ``(module, batch) -> scalar`` for ``full_data``; default: the module's ``loss(batch)``.
        window: number of successive cost differences ``loss_plateau`` averages, >= 1 (10: ours, the paper gives
            none).
    """

    def __init__(
        self,
        rule: Rule = "train_loss_below",
        thresholds: float | list[float] = 0.1,
        loss_source: LossSource = "full_data",
        every_n_steps: int = 1,
        ema_decay: float = 0.9,
        monitor: str | None = None,
        stop: bool = True,
        loss_fn: LossFn | None = None,
        window: int = 10,
    ) -> None:
        if rule not in RULES:
            raise ValueError(f"HaltingTime: rule must be one of {RULES}, got rule={rule!r}")
        if loss_source not in LOSS_SOURCES:
            raise ValueError(f"HaltingTime: loss_source must be one of {LOSS_SOURCES}, got loss_source={loss_source!r}")
        if rule.startswith("metric") and not monitor:
            raise ValueError(f"HaltingTime(rule={rule!r}) needs monitor=<logged metric name>")
        if every_n_steps < 1 or not 0.0 <= ema_decay < 1.0:
            raise ValueError("HaltingTime: every_n_steps must be >= 1 and ema_decay in [0, 1)")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"HaltingTime: window (cost differences averaged by loss_plateau) must be an int >= 1, "
                             f"got window={window!r}")  # fmt: skip
        self.rule, self.loss_source, self.every_n_steps = rule, loss_source, every_n_steps
        self.ema_decay, self.monitor, self.stop = ema_decay, monitor, stop
        self.thresholds = [float(t) for t in (thresholds if isinstance(thresholds, (list, tuple)) else [thresholds])]
        self.loss_fn = loss_fn or module_loss
        self.direction = "at_least" if rule == "metric_at_least" else "below"
        self.record: list[dict[str, Any]] = [self._open(t) for t in self.thresholds]
        self.ema: float | None = None
        self.window = window
        self.recent_costs = torch.full((window + 1,), math.nan, dtype=torch.float64)  # loss_plateau, oldest first
        self._cost_step: int | None = None  # the step of the last cost in recent_costs
        self.elapsed = 0.0
        self._started = time.perf_counter()
        self._epoch_sum, self._epoch_count, self._sum_epoch = 0.0, 0, -1
        self._evaluated_step: int | None = None
        self._eval_loader: Any = None  # built once per fit, at the first full-data evaluation

    @staticmethod
    def _open(threshold: float) -> dict[str, Any]:
        return dict(threshold=threshold, step=None, epoch=None, wall_time=None, value=None, censored=False)

    @property
    def state_key(self) -> str:
        plateau = {"window": self.window} if self.rule == "loss_plateau" else {}
        return self._generate_state_key(
            rule=self.rule, thresholds=self.thresholds, monitor=self.monitor, loss_source=self.loss_source, **plateau
        )

    @property
    def halting_step(self) -> int | None:
        """The step at which every threshold had been reached (the run's halting time); None while one is
        open or was censored."""
        if any(r["step"] is None or r["censored"] for r in self.record):
            return None
        return max(r["step"] for r in self.record)

    @property
    def halting_steps(self) -> dict[float, int | None]:
        """Threshold -> first step it held (None: open or censored)."""
        return {r["threshold"]: None if r["censored"] else r["step"] for r in self.record}

    # ---- hooks ---------------------------------------------------------------------------------------------

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and self._uses_full_data:
            check_loss_contract(
                "HaltingTime(loss_source='full_data')",
                pl_module,
                self.loss_fn,
                ", or use loss_source='epoch_mean'/'ema'",
            )

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._eval_loader = None
        self._started = time.perf_counter()
        for i, r in enumerate(self.record):
            if r["censored"]:  # a resumed run may still halt
                self.record[i] = self._open(r["threshold"])
        if self._uses_full_data and trainer.global_step % self.every_n_steps == 0:
            self._observe_loss(trainer, self._full_data_loss(trainer, pl_module))

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._sum_epoch != trainer.current_epoch:  # not a run resumed in the middle of this epoch
            self._epoch_sum, self._epoch_count, self._sum_epoch = 0.0, 0, trainer.current_epoch
        if trainer.current_epoch > 0:  # the last epoch's logged metrics are final only now (see _observe_metric)
            self._observe_metric(trainer, epoch=trainer.current_epoch - 1)

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if self.rule == "grad_norm_below" and trainer.global_step % self.every_n_steps == 0:
            grads = [p.grad.detach().flatten() for p in pl_module.parameters() if p.grad is not None]
            if not grads:
                raise ValueError("HaltingTime(rule='grad_norm_below'): no parameter has a gradient at this step")
            self._observe(trainer, torch.linalg.vector_norm(torch.cat(grads)).item())

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.rule not in LOSS_RULES:
            return
        if self._uses_full_data:
            # gradient accumulation runs several batches per step: evaluate once per step
            if trainer.global_step % self.every_n_steps == 0 and trainer.global_step != self._evaluated_step:
                self._observe_loss(trainer, self._full_data_loss(trainer, pl_module))
            return
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if not isinstance(loss, Tensor):
            raise TypeError(f"HaltingTime(loss_source={self.loss_source!r}) needs training_step to return the loss")
        loss = float(reduce_over_processes(trainer, loss.detach().float() * trainer.accumulate_grad_batches, "mean"))
        if self.loss_source == "epoch_mean":
            self._epoch_sum, self._epoch_count = self._epoch_sum + loss, self._epoch_count + 1
        else:
            self.ema = loss if self.ema is None else self.ema_decay * self.ema + (1 - self.ema_decay) * loss
            self._observe_loss(trainer, self.ema)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.rule in LOSS_RULES and self.loss_source == "epoch_mean" and self._epoch_count:
            self._observe_loss(trainer, self._epoch_sum / self._epoch_count)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._observe_metric(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._observe_metric(trainer, epoch=max(trainer.current_epoch - 1, 0))
        for r in self.record:
            if r["step"] is None:
                r.update(step=trainer.global_step, epoch=trainer.current_epoch, wall_time=self._wall(), censored=True)
        censored = {f"halting/censored@{r['threshold']:g}": float(r["censored"]) for r in self.record}
        for logger in trainer.loggers:
            logger.log_metrics(censored, step=trainer.global_step)

    # ---- internals -----------------------------------------------------------------------------------------

    @property
    def _uses_full_data(self) -> bool:
        return self.rule in LOSS_RULES and self.loss_source == "full_data"

    def _observe_metric(self, trainer: pl.Trainer, epoch: int | None = None) -> None:
        """Compare the monitored metric with the thresholds. Training-epoch metrics reach ``callback_metrics``
        after the callbacks' ``on_train_epoch_end`` (Lightning 2.6), so they are read at the next epoch's start
        (and at the end of training), attributed to the epoch that logged them. Rank 0's value is used on every
        process, so all processes halt together even for a metric logged without ``sync_dist``."""
        if self.rule.startswith("metric") and self.monitor in trainer.callback_metrics:
            value = trainer.strategy.broadcast(float(trainer.callback_metrics[self.monitor]), src=0)
            self._observe(trainer, value, epoch)

    def _observe_loss(self, trainer: pl.Trainer, loss: float) -> None:
        """A training loss from ``loss_source``: compared with the thresholds (``train_loss_below``), or added to
        the window of recent costs, whose mean successive decrease is compared once the window is full
        (``loss_plateau``). A cost seen again at the same step replaces the last one (a resumed run's first
        full-data evaluation repeats the checkpoint's last), so the window holds one cost per step."""
        if self.rule == "train_loss_below":
            self._observe(trainer, loss)
            return
        if trainer.global_step == self._cost_step:
            self.recent_costs[-1] = loss
        else:
            self.recent_costs = push_cost(self.recent_costs, torch.tensor(loss))
        self._cost_step = trainer.global_step
        plateau = mean_successive_decrease(self.recent_costs)
        if not plateau.isnan():
            self._observe(trainer, plateau.item())

    def _observe(self, trainer: pl.Trainer, value: float, epoch: int | None = None) -> None:
        first = torch.tensor([-1 if r["step"] is None else r["step"] for r in self.record])
        thresholds = torch.tensor(self.thresholds, dtype=torch.float64)
        updated = update_first_hits(first, torch.tensor(float(value)), thresholds, trainer.global_step, self.direction)
        newly = (updated >= 0) & (first < 0)
        for i in newly.nonzero().flatten().tolist():
            r = self.record[i]
            epoch_ = trainer.current_epoch if epoch is None else epoch
            r.update(step=trainer.global_step, epoch=epoch_, wall_time=self._wall(), value=float(value))
            metrics = {f"halting/step@{r['threshold']:g}": r["step"], f"halting/epoch@{r['threshold']:g}": r["epoch"]}
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)
        if self.stop and bool((updated >= 0).all()):
            trainer.should_stop = True

    def _wall(self) -> float:
        return self.elapsed + time.perf_counter() - self._started

    def _full_data_loss(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> float:
        """Sample-weighted mean of ``loss_fn`` over the training dataloader (this process's shard under DDP,
        then summed over processes); eval mode, no gradients, and the RNG left as it was."""
        if self._eval_loader is None:
            self._eval_loader = self._evaluation_loader(trainer)
        loader = self._eval_loader
        total = torch.zeros(2, dtype=torch.float64, device=pl_module.device)
        with measurement_mode(pl_module):
            for batch in loader:
                batch = trainer.strategy.batch_to_device(batch)
                n = extract_batch_size(batch)
                total += torch.stack([self.loss_fn(pl_module, batch).double() * n, torch.tensor(n).to(total)])
        total = reduce_over_processes(trainer, total, "sum")
        self._evaluated_step = trainer.global_step
        return (total[0] / total[1]).item()

    @staticmethod
    def _evaluation_loader(trainer: pl.Trainer) -> DataLoader:
        """A private pass over the trainer's training set (``trainer.train_dataloader``: the datamodule's or the
        loader given to ``fit``), in order and without workers: its dataset, collate function and batch size (for
        a custom batch sampler, its mean batch size), split over processes as its ``DistributedSampler`` splits
        it. Iterating the training loader itself would restart its persistent workers' iterator mid-epoch, and
        drawing from its sampler would advance the sampler's generator: both change the training."""
        loader = trainer.train_dataloader
        if not isinstance(loader, DataLoader):
            raise TypeError(
                "HaltingTime(loss_source='full_data') reads the training set through the trainer's training "
                f"DataLoader, but trainer.train_dataloader is a {type(loader).__name__}; use one torch DataLoader "
                "or loss_source='epoch_mean'/'ema'"
            )
        dataset = loader.dataset
        if isinstance(dataset, IterableDataset):  # it splits itself over processes, if it is meant to
            return DataLoader(dataset, batch_size=loader.batch_size, collate_fn=loader.collate_fn)
        samplers = (loader.sampler, getattr(loader.batch_sampler, "sampler", None))
        split = next((s for s in samplers if isinstance(s, DistributedSampler)), None)
        sampler = None if split is None else DistributedSampler(dataset, split.num_replicas, split.rank, shuffle=False)
        batch_size = loader.batch_size
        if batch_size is None and loader.batch_sampler is not None:  # a custom batch sampler
            batch_size = math.ceil(len(sampler or dataset) / len(loader))
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=loader.collate_fn)

    def state_dict(self) -> dict[str, Any]:
        return {
            "record": [dict(r) for r in self.record],
            "ema": self.ema,
            "recent_costs": self.recent_costs.tolist(),  # loss_plateau's window: a resumed run halts at the same step
            "cost_step": self._cost_step,
            "elapsed": self._wall(),
            "epoch_sum": self._epoch_sum,  # a run resumed mid-epoch keeps its epoch mean whole
            "epoch_count": self._epoch_count,
            "sum_epoch": self._sum_epoch,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.record = [dict(r) for r in state_dict["record"]]
        self.ema, self.elapsed = state_dict["ema"], state_dict["elapsed"]
        self._epoch_sum, self._epoch_count = state_dict.get("epoch_sum", 0.0), state_dict.get("epoch_count", 0)
        self._sum_epoch = state_dict.get("sum_epoch", -1)
        if self.rule == "loss_plateau" and "recent_costs" in state_dict:
            recent = torch.tensor(state_dict["recent_costs"], dtype=torch.float64)
            if len(recent) != self.window + 1:
                raise ValueError(f"HaltingTime: the checkpoint's loss_plateau window holds {len(recent) - 1} "
                                 f"differences, this callback's window={self.window}")  # fmt: skip
            self.recent_costs, self._cost_step = recent, state_dict["cost_step"]
