"""The ``iclr17`` console script and ``python -m iclr17``: the front door over the LightningCLI and the studies.

iclr17 fit --config classifier/mnistfc.yaml      # any LightningCLI subcommand (iclr17.cli)
iclr17 configs                                   # the configs shipped in the package
iclr17 halting-study --config halting_time/study/spin_glass_n32.yaml
"""

from __future__ import annotations

import sys

from iclr17.cli import cli, shipped_configs
from iclr17.studies.halting import main as halting_study


def main() -> None:
    """Entry point of the ``iclr17`` console script and ``python -m iclr17``."""
    if sys.argv[1:2] == ["configs"]:
        print("\n".join(shipped_configs()))
    elif sys.argv[1:2] == ["halting-study"]:
        halting_study(sys.argv[2:])
    else:
        cli()


if __name__ == "__main__":
    main()
