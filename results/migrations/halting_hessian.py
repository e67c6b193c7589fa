"""One-off migration (issue 14): the halting-time and Hessian raw results of commit 978148c into ledgers.

    .venv/bin/python results/migrations/halting_hessian.py           # writes the five ledgers
    .venv/bin/python results/migrations/halting_hessian.py --check   # and recomputes every halting statistic
                                                                     # from the rows against the raw JSON (minutes)

Reads the raw files from git, so it still works after they were deleted:

- ``results/halting_time/<name>_times.npz`` (every halting time and censoring flag) and ``<name>.json`` (system,
  n_runs, seed; the wall time of each ensemble's runs from the JSON as first committed, a96b911, since the later
  re-analysis at 68210e7 left it empty) -> one row per ensemble in ``results/ledgers/halting_{spin_glass,cg,mlp}
  .jsonl``. The raw files name no commit: ``commit`` is the commit that added them (a96b911; RESULTS.md: the runs
  were made during session 2 with ``python -m iclr17.modules.halting.study --config configs/halting_time/<name>.yml``).
  ``config`` and ``config_digest`` are what :class:`HaltingStudy` plans for the system the JSON describes; the
  script checks that the shipped study config (``configs/studies/halting_*.yaml``) describes the same system,
  so those runs count as done.
- ``results/hessian/{blobs,width_sweep,mnist_small}.json`` -> ``results/ledgers/hessian_{blobs,width_sweep,
  mnist_small}.jsonl``: the statistics before and after training (no eigenvalues: the JSON holds none, so the
  study's figure needs new runs). Commit, machine and command from RESULTS.md at 978148c ("code of 1aa3720");
  ``config_digest`` is the digest of the fit config's text at 1aa3720, so the shipped study reruns them.
"""

from __future__ import annotations

import inspect
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from iclr17.studies import halting
from iclr17.studies.ledger import append, digest, read

RAW = "978148c"
ROOT = Path(__file__).resolve().parents[2]
LEDGERS = ROOT / "results" / "ledgers"

HALTING = {  # raw name -> (ledger stem, study config)
    "spin_glass_n32": ("halting_spin_glass", "configs/studies/halting_spin_glass_n32.yaml"),
    "spin_glass_n64": ("halting_spin_glass", "configs/studies/halting_spin_glass_n64.yaml"),
    "cg_wishart_n100": ("halting_cg", "configs/studies/halting_cg_wishart_n100.yaml"),
    "mlp_mnist_vs_random": ("halting_mlp", "configs/studies/halting_mlp_mnist_vs_random.yaml"),
}
HALTING_MACHINE = "dev (2 shared cores), shared with other jobs (RESULTS.md: timings are wall clock under that load)"

HESSIAN_COMMIT = "1aa3720"  # RESULTS.md at 978148c: every Hessian run below used the "code of 1aa3720"
WIDTHS = "model.init_args.net.init_args.widths"
HESSIAN = {  # raw name -> (ledger stem, fit config, machine)
    "blobs": ("hessian_blobs", "configs/hessian/blobs.yaml", "dev (session 2 rerun; the load was not recorded)"),
    "width_sweep": (
        "hessian_width_sweep",
        "configs/hessian/blobs_width_sweep.yaml",
        "dev, one run after the other while other jobs shared the CPU (50-101 s per width)",
    ),
    "mnist_small": (
        "hessian_mnist_small",
        "configs/hessian/mnist_small.yaml",
        "dev, while other jobs shared the CPU (280 s wall)",
    ),
}


def git(*args: str) -> bytes:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, check=True).stdout


def show(commit: str, path: str) -> bytes:
    return git("show", f"{commit}:{path}")


def full(commit: str) -> str:
    return git("rev-parse", commit).decode().strip()


def added_by(path: str) -> str:
    """The commit that added ``path`` (the oldest, should it have been added twice)."""
    return git("log", "--diff-filter=A", "--format=%H", RAW, "--", path).decode().split()[-1]


def system_from_json(described: dict) -> halting.HaltingSystem:
    """The system a raw JSON's ``system`` entry describes (attribute names of the code that wrote it)."""
    cls = getattr(halting, described["system"])
    arguments = {k: v for k, v in described.items() if k in inspect.signature(cls).parameters}
    arguments[cls.threshold_name] = described["thresholds"]
    if "dtype" in arguments:
        arguments["dtype"] = arguments["dtype"].removeprefix("torch.")
    return cls(**arguments)


def system_from_config(path: str) -> tuple[halting.HaltingSystem, int, int, str]:
    """``(system, n_runs, seed, name)`` of a shipped study config."""
    config = yaml.safe_load((ROOT / path).read_text())
    cls = getattr(halting, config["system"]["class_path"].rsplit(".", 1)[-1])
    return cls(**config["system"]["init_args"]), config["n_runs"], config["seed"], config["name"]


def halting_rows(name: str, stem: str, study_config: str) -> list[dict]:
    json_path, npz_path = f"results/halting_time/{name}.json", f"results/halting_time/{name}_times.npz"
    result = json.loads(show(RAW, json_path))
    raw = np.load(io.BytesIO(show(RAW, npz_path)))
    commit = added_by(npz_path)
    seconds = json.loads(show(commit, json_path))["seconds"]
    system = system_from_json(result["system"])
    if not np.allclose(raw["thresholds"], system.thresholds):
        raise ValueError(f"{npz_path}: thresholds {raw['thresholds']}, the JSON {system.thresholds}")
    shipped, n_runs, seed, shipped_name = system_from_config(study_config)
    expected = (system.description(result["n_runs"]), result["seed"], stem)
    if (shipped.description(n_runs), seed, shipped_name) != expected:
        raise ValueError(f"{study_config} no longer describes the runs of {json_path}")
    study = halting.HaltingStudy(system, result["n_runs"], seed=result["seed"], name=stem)
    rows = []
    for run in study.planned():
        ensemble = run.params["ensemble"]
        times, censored = raw[f"{ensemble}_times"], raw[f"{ensemble}_censored"]
        metrics = {
            "threshold_name": system.threshold_name,
            "thresholds": system.thresholds,
            "times": times.T.tolist(),
            "censored_runs": [np.flatnonzero(c).tolist() for c in censored.T],
        }
        rows.append({
            "study": stem, "config": run.config, "config_digest": run.config_digest, "params": run.params,
            "overrides": list(run.overrides), "seed": run.seed, "commit": commit, "dirty": False,
            "machine": HALTING_MACHINE,
            "command": f"python -m iclr17.modules.halting.study --config configs/halting_time/{name}.yml",
            "status": "finished", "steps": None, "fit_seconds": round(seconds[ensemble], 1), "metrics": metrics,
        })  # fmt: skip
    return rows


def hessian_rows(name: str, stem: str, config: str, machine: str) -> list[dict]:
    runs = json.loads(show(RAW, f"results/hessian/{name}.json"))
    commit = full(HESSIAN_COMMIT)
    config_digest = digest(show(commit, config))
    rows = []
    for run in runs:
        folder = run["run"]  # runs/blobs, runs/width_<w>, runs/mnist_small
        params, overrides = {}, []
        if name == "width_sweep":
            w = int(folder.rsplit("_", 1)[-1])
            params = {WIDTHS: [2, w, w, 4]}
            overrides = [f"--{WIDTHS}=[2,{w},{w},4]"]
        overrides += [f"--trainer.default_root_dir={folder}", "--trainer.logger=CSVLogger",
                      f"--trainer.logger.save_dir={folder}"]  # fmt: skip
        metrics = {}
        for when in ("start", "end"):
            saved = {k: v for k, v in run[when].items() if k != "file"}
            saved["num_classes"] = saved.pop("n_classes")  # the callback's name for it since 1aa3720
            step = int(run[when]["file"].rsplit("step", 1)[-1].removesuffix(".npz"))
            metrics[f"hessian/{when}"] = {"step": step, "n_params": run["n_params"], **saved}
        rows.append({
            "study": stem, "config": config, "config_digest": config_digest, "params": params,
            "overrides": overrides, "seed": 0, "commit": commit, "dirty": False, "machine": machine,
            "command": f"iclr17 fit --config {config} " + " ".join(overrides), "status": "finished",
            "steps": metrics["hessian/end"]["step"], "fit_seconds": None, "metrics": metrics,
        })  # fmt: skip
    return rows


def check_halting_statistics() -> None:
    """Every statistic of the raw JSONs, recomputed from the ledger rows by the tables' own route."""
    for name, (stem, _) in HALTING.items():
        result = json.loads(show(RAW, f"results/halting_time/{name}.json"))
        rows = read(LEDGERS / f"{stem}.jsonl")
        (experiment,) = [
            x for x in halting.experiments(rows) if x["thresholds"] == result["system"]["thresholds"]
        ]  # fmt: skip
        for (threshold, report, _), (label, expected) in zip(
            halting.threshold_reports(experiment), result["by_threshold"].items(), strict=True
        ):
            recomputed = json.loads(json.dumps(report, default=lambda v: v.item()).replace("NaN", "null"))
            if recomputed != expected or f"{threshold:g}" != label:
                raise AssertionError(f"{name} threshold {label}: the statistics differ from the raw JSON")
            print(f"{name} threshold {label}: every statistic equals the raw JSON's", flush=True)


def main() -> None:
    ledgers: dict[str, list[dict]] = {}
    for name, (stem, study_config) in HALTING.items():
        ledgers.setdefault(stem, []).extend(halting_rows(name, stem, study_config))
    for name, (stem, config, machine) in HESSIAN.items():
        ledgers.setdefault(stem, []).extend(hessian_rows(name, stem, config, machine))
    for stem, rows in ledgers.items():
        path = LEDGERS / f"{stem}.jsonl"
        path.unlink(missing_ok=True)
        for row in rows:
            append(path, row)
        print(f"{path.relative_to(ROOT)}: {len(read(path))} rows")
    if "--check" in sys.argv[1:]:
        check_halting_statistics()


if __name__ == "__main__":
    main()
