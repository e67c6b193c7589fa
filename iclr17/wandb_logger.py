"""A WandbLogger that never stops at a login prompt: offline unless the user has credentials."""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from urllib.parse import urlparse

from pytorch_lightning.loggers import WandbLogger


def wandb_credentials_present() -> bool:
    """True when wandb would find an API key without asking: ``$WANDB_API_KEY`` or a netrc entry.

    This reads the same places ``wandb login`` writes to (the netrc file for ``$WANDB_BASE_URL``'s host,
    default api.wandb.ai) without importing wandb's private authentication module.
    """
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    netrc_path = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    try:
        return netrc.netrc(netrc_path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_wandb_offline(offline: bool | None) -> bool:
    """``offline=None`` means: follow ``$WANDB_MODE`` if set, else online only with credentials."""
    if offline is not None:
        return offline
    mode = os.environ.get("WANDB_MODE")
    if mode:
        return mode in ("offline", "dryrun")
    return not wandb_credentials_present()


class OfflineFirstWandbLogger(WandbLogger):
    """Lightning's WandbLogger with a run directory created up front and offline mode chosen for you.

    With ``offline=None`` (default) the run is online only when ``$WANDB_MODE=online`` or a wandb API key
    is present (``wandb login`` or ``$WANDB_API_KEY``); otherwise it is written offline under
    ``<save_dir>/wandb/offline-run-*`` and can be uploaded later with ``wandb sync <that folder>``.
    ``$WANDB_MODE=disabled`` turns wandb off entirely (the tests do this).

    Args:
        project: wandb project, also the folder name of the run's checkpoints and config.
        save_dir: folder for wandb's files, checkpoints and the saved config.
        offline: force offline (True) or online (False); None decides as above.
        name: display name of the run.
        log_model: upload checkpoints as wandb artifacts (see Lightning's WandbLogger).
    """

    def __init__(
        self,
        project: str = "iclr17",
        save_dir: str = "runs",
        offline: bool | None = None,
        name: str | None = None,
        log_model: bool | str = False,
    ) -> None:
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        super().__init__(
            project=project,
            save_dir=save_dir,
            offline=resolve_wandb_offline(offline),
            name=name,
            log_model=log_model,
        )
