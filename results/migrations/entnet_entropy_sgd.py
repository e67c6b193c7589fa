"""One-off: the EntNet (arXiv:1612.03969) and Entropy-SGD (arXiv:1611.01838) raw result files -> ledgers.

    .venv/bin/python results/migrations/entnet_entropy_sgd.py      # from the repository root; rewrites the ledgers

Reads every raw file from git at 978148c and writes, through ``iclr17.studies.ledger.append`` (each target deleted
first, so the script reruns):

- ``entnet_babi10k.jsonl``: ``results/entnet_babi10k_paper_schedule_seed1.json`` (bAbI 10k at the paper's
  schedule, seed 1, the seven weakest tasks, each with its own wall-clock cap);
- ``entnet_babi10k_5min.jsonl``: ``results/entnet_babi10k_seed1_5min.json`` (19 tasks, 5-minute cap);
- ``entnet_world_model.jsonl``: ``results/entnet_world_model.json`` (Table 1 at lr 0.001: T = 10, 20, 40, the
  generalisation row, and T = 10, 20 with moves of one square), then the 11 rows of the committed ledger
  ``results/ledgers/entnet_world_model.jsonl`` unchanged but for the keys they lacked (``config_digest``,
  ``params``);
- ``entnet_world_model_t10_explore.jsonl``: ``results/world_model_t10_explore.json`` (session 1: 10,000 stories,
  lr x max_step at T = 10, 3.5-minute cap);
- ``entropy_sgd_mnist_table1.jsonl``: ``results/entropy_sgd_mnist_table1.json`` (mnistfc and LeNet-BN rows) and
  ``results/mnistfc_adam_100epochs_3seeds.json`` (mnistfc's Adam baseline, 100 epochs): Table 1's MNIST rows;
- ``entropy_sgd_char_lstm.jsonl``: ``results/entropy_sgd_char_lstm.json``.

How the raw fields map. ``commit``: the run's commit as the raw file names it (for the world model's T = 10 and
40 the fit's, 9e19398; their tests ran at adffeb0), else the commit that added the file (the 5-minute bAbI runs:
345a3ac, whose tree RESULTS.md says they ran before its rewrite of the memory loop). ``command``: the raw
file's, with its placeholders (``TRAIN``, ``$s``, ``<config>`` ...) filled in for the run. ``overrides``: what
the runs passed that changes a run (caps, accelerator and loggers are in ``command`` only), in a study's order
(the run's own overrides, then ``--seed_everything``). ``params``: bAbI's task; the world model's variant, lr and
max_step; for Entropy-SGD the variant, named as the raw files name their run groups (``mnistfc_entropy_v5``,
``lenet_adam``, ``char_adam`` ...; ``mnistfc_adam`` for the 100-epoch baseline), as the study configs do.
``status``: ``capped`` where RESULTS.md says a time cap stopped the run (the sets below, each checked against the
raw numbers). ``fit_seconds``: bAbI's ``seconds`` timed the fit and the test together; the world-model explore
runs and the mnistfc Adam runs recorded none (null), nor did the explore runs record steps. ``steps`` of the
Entropy-SGD, mnistfc and char-LSTM runs: the ``step=`` of the checkpoint they tested. ``metrics["epochs"]``:
bAbI's ``epochs`` (the trainer's epoch count), elsewhere the number of validations (one per epoch). Validation
curves are kept as ``val/..._by_step`` or ``_by_epoch`` lists.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from iclr17.studies.ledger import ROW_KEYS, append, digest, read
from iclr17.studies.world_model import variant_overrides

SOURCE = "978148c"
LEDGERS = Path("results/ledgers")
# RESULTS.md at 978148c, "stopped by" and the tables' text: the runs a time cap cut
BABI_PAPER_CAPPED = {2, 17, 18}  # 55-, 8- and 20-minute caps
BABI_5MIN_CAPPED = {2, 5, 6, 7, 8, 13, 14, 16, 17, 18, 19}  # "5-min cap"
MNISTFC_ADAM_CAPPED = {3}  # "the 3.5-minute guard stopped it 202 steps short"
CHAR_LSTM_CAPPED = {"char_lstm_adam"}  # "28 of 50 epochs (the cap)"; Entropy-Adam ran its 30 passes


def git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


def raw(path: str) -> Any:
    return json.loads(git("show", f"{SOURCE}:{path}"))


def full(short: str) -> str:
    return git("rev-parse", short).strip()


def config_digest(commit: str, config: str) -> str:
    """The digest of the config's text at ``commit`` (bytes, as ``FitStudy.planned`` reads it)."""
    path = "configs/" + config.removeprefix("configs/")
    text = subprocess.run(["git", "show", f"{commit}:{path}"], capture_output=True, check=True).stdout
    return digest(text)


def checkpoint_step(name: str) -> int:
    return int(re.search(r"step=(\d+)", name).group(1))


def row(study: str, config: str, commit: str, **keys: Any) -> dict[str, Any]:
    """A ledger row in ``ROW_KEYS`` order; ``commit`` may be short."""
    commit = full(commit)
    values = {"study": study, "config": config, "config_digest": config_digest(commit, config), "commit": commit,
              "dirty": False} | keys  # fmt: skip
    assert set(values) == set(ROW_KEYS), set(values) ^ set(ROW_KEYS)
    return {key: values[key] for key in ROW_KEYS}


def babi_rows() -> dict[str, list[dict[str, Any]]]:
    paper = raw("results/entnet_babi10k_paper_schedule_seed1.json")
    five = raw("results/entnet_babi10k_seed1_5min.json")
    five_machine = "h200-host CPUs (RESULTS.md; the raw file names none), one thread per run, 16 runs at once"
    sources = {
        "entnet_babi10k": (paper["runs"], BABI_PAPER_CAPPED, paper["machine"],
                           lambda t: "adffeb0" if t in (2, 19) else "c858d0f", lambda t: paper["commands"][str(t)]),
        "entnet_babi10k_5min": (five["runs"], BABI_5MIN_CAPPED, five_machine, lambda t: "345a3ac",
                                lambda t: " ".join(five["command"])),
    }  # fmt: skip
    ledgers = {}
    for study, (runs, capped, machine, commit_of, command_of) in sources.items():
        ledgers[study] = []
        for run in runs:
            task = run["task"]
            # the cap's runs are exactly those that stopped short of 200 epochs with a validation error above 0
            assert (task in capped) == (run["epochs"] < 200 and run["val_error"] > 0), (study, task)
            ledgers[study].append(row(
                study, "configs/entnet/babi10k.yaml", commit_of(task), params={"task": task},
                overrides=[f"--data.init_args.tasks=[{task}]", f"--seed_everything={run['seed']}"], seed=run["seed"],
                machine=machine, command=command_of(task), status="capped" if task in capped else "finished",
                steps=run["steps"], fit_seconds=run["seconds"],
                metrics={"val/error": run["val_error"], "test/error": run["test_error"], "epochs": run["epochs"]},
            ))  # fmt: skip
    return ledgers


def world_model_rows() -> list[dict[str, Any]]:
    data = raw("results/entnet_world_model.json")
    template = "--data.init_args.train_lengths=TRAIN --data.init_args.test_lengths=TEST"
    assert template in data["command"]
    runs = {  # raw run -> (variant, max_step, commit of the fit); lr is the config's 0.001, max_step 5 its default
        "t10": ("t10", 5, "9e19398"), "t20": ("t20", 5, "adffeb0"), "t40": ("t40", 5, "9e19398"),
        "gen": ("gen", 5, "adffeb0"), "t10_step1": ("t10", 1, "c858d0f"), "t20_step1": ("t20", 1, "c858d0f"),
    }  # fmt: skip
    rows = []
    for name, (variant, max_step, commit) in runs.items():
        run = data["runs"][name]
        assert ("--data.init_args.max_step=1" in run.get("extra_flags", "")) == (max_step == 1)
        overrides = variant_overrides(variant) + (["--data.init_args.max_step=1"] if max_step == 1 else [])
        curve = run["val_error_by_step"]
        assert curve[-1][0] == 99_999  # the last validation after the config's 100,000 updates: no cap cut it
        rows.append(row(
            "entnet_world_model", "configs/entnet/world_model.yaml", commit,
            params={"variant": variant, "lr": 0.001, "max_step": max_step}, overrides=overrides, seed=1,
            machine=data["machine"], command=data["command"].replace(template, " ".join(overrides)),
            status="finished", steps=100_000, fit_seconds=run["fit_seconds"],
            metrics=run["test"] | {"val/error": curve[-1][1], "val/error_by_step": curve},
        ))  # fmt: skip
    return rows


def world_model_ledger_rows() -> list[dict[str, Any]]:
    """The committed ledger's rows with ``config_digest`` and ``params`` added, everything else kept."""
    text = git("show", f"{SOURCE}:results/ledgers/entnet_world_model.jsonl")
    rows = []
    for line in text.splitlines():
        old = json.loads(line)
        values = dict(o.removeprefix("--").split("=", 1) for o in old["overrides"])
        variant = next(v for v in ("t10", "t20", "t40", "gen") if set(variant_overrides(v)) <= set(old["overrides"]))
        params = {"variant": variant, "lr": json.loads(values["model.init_args.optimizer.init_args.lr"]),
                  "max_step": json.loads(values["data.init_args.max_step"])}  # fmt: skip
        new = old | {"config_digest": config_digest(old["commit"], old["config"]), "params": params}
        assert set(new) == set(ROW_KEYS)
        rows.append({key: new[key] for key in ROW_KEYS})
    assert len(rows) == 11
    return rows


def world_model_explore_rows() -> list[dict[str, Any]]:
    data = raw("results/world_model_t10_explore.json")
    rows = []
    for run in data["runs"]:
        lr, step = json.dumps(run["lr"]), json.dumps(run["max_step"])
        curve = run.get("val_error_by_epoch")
        metrics = {"val/error": curve[-1] if curve else run["last_val_error"], "validations": run["validations"]}
        rows.append(row(
            "entnet_world_model_t10_explore", "entnet/world_model.yaml", "2a5a964",
            params={"variant": "t10", "lr": run["lr"], "max_step": run["max_step"]},
            overrides=[f"--model.init_args.optimizer.init_args.lr={lr}", f"--data.init_args.max_step={step}",
                       "--trainer.max_epochs=200"], seed=1, machine=data["machine"],
            command=data["command"].replace("$LR", lr).replace("$STEP", step), status="capped", steps=None,
            fit_seconds=None, metrics=metrics | ({"val/error_by_epoch": curve} if curve else {}),
        ))  # fmt: skip
    return rows


def entropy_sgd_rows() -> list[dict[str, Any]]:
    data = raw("results/entropy_sgd_mnist_table1.json")
    rows = []
    for name, run in data["runs"].items():
        group, seed = name.rsplit("_s", 1)
        config, *variant_override = data["configs"][group].split()
        commands = [c.replace("<config>", config).replace("$s", seed) for c in data["command_per_seed"]]
        commands = [c.replace(" [variant override]", "".join(" " + o for o in variant_override)) for c in commands]
        rows.append(row(
            "entropy_sgd_mnist_table1", config, "1aa3720", params={"variant": group},
            overrides=[*variant_override, f"--seed_everything={seed}"], seed=int(seed), machine=data["machine"],
            command="; then ".join(commands), status="finished", steps=checkpoint_step(run["checkpoint"]),
            fit_seconds=run["fit_seconds"],
            metrics={"test/acc": run["test_acc"], "test/loss": run["test_loss"], "val/acc": run["final_val_acc"],
                     "epochs": run["n_validations"]},
        ))  # fmt: skip
    data = raw("results/mnistfc_adam_100epochs_3seeds.json")
    commit = data["commit"].split()[0]
    for run in data["runs"]:
        seed, steps = run["seed"], checkpoint_step(run["checkpoint"])
        assert (seed in MNISTFC_ADAM_CAPPED) == (steps < 100 * 391)  # 391 steps an epoch (50,000 images, batch 128)
        rows.append(row(
            "entropy_sgd_mnist_table1", "classifier/mnistfc.yaml", commit, params={"variant": "mnistfc_adam"},
            overrides=[f"--seed_everything={seed}"], seed=seed, machine=data["machine"],
            command="; then ".join(c.replace("$s", str(seed)) for c in data["command_per_seed"]),
            status="capped" if seed in MNISTFC_ADAM_CAPPED else "finished", steps=steps, fit_seconds=None,
            metrics={"test/acc": run["test_acc"], "test/loss": run["test_loss"]},
        ))  # fmt: skip
    return rows


def char_lstm_rows() -> list[dict[str, Any]]:
    data = raw("results/entropy_sgd_char_lstm.json")
    rows = []
    for name, run in data["runs"].items():
        group, seed = name.rsplit("_s", 1)
        stem = group.replace("char_", "char_lstm_", 1)
        config = f"entropy_sgd/{stem}.yaml"
        commands = [c.replace("<char_lstm_adam|char_lstm_entropy_adam>", stem).replace("<same>", config)
                    .replace("$s", seed) for c in data["command_per_seed"]]  # fmt: skip
        curve = run["val_ppl_per_epoch"]
        assert (stem in CHAR_LSTM_CAPPED) == (len(curve) < (50 if stem == "char_lstm_adam" else 30))
        rows.append(row(
            "entropy_sgd_char_lstm", config, data["commit"].split()[0], params={"variant": group},
            overrides=[f"--seed_everything={seed}"], seed=int(seed), machine=data["machine"],
            command="; then ".join(commands), status="capped" if stem in CHAR_LSTM_CAPPED else "finished",
            steps=checkpoint_step(run["checkpoint"]), fit_seconds=run["fit_seconds"],
            metrics={"test/loss": run["test_loss_nats"], "test/ppl": run["test_ppl"],
                     "test/bits_per_char": run["test_bits_per_char"], "epochs": len(curve), "val/ppl": curve[-1],
                     "val/ppl_by_epoch": curve},
        ))  # fmt: skip
    return rows


def main() -> None:
    ledgers = babi_rows() | {
        "entnet_world_model": world_model_rows() + world_model_ledger_rows(),
        "entnet_world_model_t10_explore": world_model_explore_rows(),
        "entropy_sgd_mnist_table1": entropy_sgd_rows(),
        "entropy_sgd_char_lstm": char_lstm_rows(),
    }
    for stem, rows in ledgers.items():
        path = LEDGERS / f"{stem}.jsonl"
        path.unlink(missing_ok=True)
        for r in rows:
            append(path, r)
        print(f"{path}: {len(read(path))} rows")


if __name__ == "__main__":
    main()
