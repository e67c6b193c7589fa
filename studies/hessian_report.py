"""Compare the spectra that ``HessianSpectrum`` wrote for several runs (a width sweep, say) in one figure and
one JSON table::

    python -m iclr17.studies.hessian_report runs/width_5 runs/width_10 --out results/hessian/width_sweep.png

Each run folder is searched for ``hessian/start_step*.npz`` and ``hessian/end_step*.npz`` (the callback's files,
in whatever logger sub-folder they sit). The figure shows, per run, the ordered eigenvalues after training on a
symmetric log scale and the log-count histograms before and after; the JSON (next to the figure) holds each
snapshot's statistics, recomputed from the saved eigenvalues with the current definitions.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from iclr17.functional.hessian import spectrum_statistics


def snapshot(run: Path, when: str) -> dict | None:
    """The statistics and eigenvalues of the run's ``when`` snapshot (the last one if several), or None."""
    files = sorted(run.rglob(f"hessian/{when}_step*.npz"), key=lambda p: int(p.stem.split("step")[-1]))
    if not files:
        return None
    data = np.load(files[-1])
    stats = {k: float(data[k]) for k in data.files if data[k].ndim == 0}
    eigenvalues = data.get("eigenvalues")
    if eigenvalues is not None:  # today's definitions, whatever version wrote the file
        stats.update(spectrum_statistics(torch.from_numpy(eigenvalues)))
    return {"file": str(files[-1]), "eigenvalues": eigenvalues, **stats}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders written with HessianSpectrum(save_files=True)")
    parser.add_argument("--out", type=Path, required=True, help="figure path (.png); the JSON goes beside it")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    fig, (ordered, before, after) = plt.subplots(1, 3, figsize=(15, 4))
    for run in args.runs:
        start, end = snapshot(run, "start"), snapshot(run, "end")
        if end is None or end["eigenvalues"] is None:
            raise SystemExit(f"{run}: no hessian/end_step*.npz with eigenvalues (was the run fitted to the end?)")
        label = f"{run.name} ({len(end['eigenvalues'])} params)"
        values = np.sort(end["eigenvalues"])[::-1]
        ordered.plot(np.arange(1, len(values) + 1) / len(values), values, ".", markersize=2, label=label)
        after.hist(values, bins=100, log=True, histtype="step", label=label)
        if start is not None and start["eigenvalues"] is not None:
            before.hist(start["eigenvalues"], bins=100, log=True, histtype="step", label=label)
        strip = {k: v for k, v in (start or {}).items() if k not in ("eigenvalues",)}
        rows.append({"run": str(run), "n_params": len(values), "start": strip, "end": {
            k: v for k, v in end.items() if k != "eigenvalues"
        }})  # fmt: skip
    ordered.set(xscale="linear", yscale="symlog", xlabel="rank / number of parameters", ylabel="eigenvalue (symlog)")
    ordered.set_title("after training, ordered")
    before.set(xlabel="eigenvalue", ylabel="count (log)", title="before training")
    after.set(xlabel="eigenvalue", ylabel="count (log)", title="after training")
    ordered.legend(fontsize=7)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    for row in rows:
        end = row["end"]
        print(
            f"{row['run']}: {row['n_params']} params, lambda_max {end['lambda_max']:.4g}, "
            f"|lambda| < 1e-3 lambda_max: {end['frac_zero_rel']:.1%}, outliers {end['n_outliers']:.0f}"
        )


if __name__ == "__main__":
    main()
