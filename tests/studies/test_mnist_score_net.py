"""``iclr17 score-net``: the I' classifier's weights out of a Classifier checkpoint, whole or not at all."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from iclr17.__main__ import main
from iclr17.modules.ebgan.nets import MNISTScoreNet
from iclr17.studies.mnist_score_net import export_score_net


def _checkpoint(path, net: nn.Module) -> None:
    state = {f"net.{k}": v for k, v in net.state_dict().items()} | {"other.weight": torch.zeros(2)}
    torch.save({"state_dict": state, "epoch": 3}, path)


def test_the_nets_weights_are_exported_exactly(tmp_path):
    torch.manual_seed(0)
    net = MNISTScoreNet()
    _checkpoint(tmp_path / "run.ckpt", net)
    written = export_score_net(tmp_path / "run.ckpt", tmp_path / "score.pt")
    exported = torch.load(written, weights_only=True)
    assert exported.keys() == net.state_dict().keys()
    assert all(torch.equal(exported[k], v) for k, v in net.state_dict().items())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.ckpt", "score.pt"]  # no partial file left


def test_a_checkpoint_of_another_net_is_refused_and_nothing_is_written(tmp_path):
    _checkpoint(tmp_path / "run.ckpt", nn.Linear(3, 2))
    with pytest.raises(RuntimeError, match="state_dict"):
        export_score_net(tmp_path / "run.ckpt", tmp_path / "score.pt")
    assert not (tmp_path / "score.pt").exists() and not (tmp_path / "score.pt.partial").exists()


def test_the_subcommand_exports_and_scores_on_the_test_images(tmp_path, real_data_dir, monkeypatch, capsys):
    monkeypatch.setenv("ICLR17_DATA_DIR", str(real_data_dir))
    _checkpoint(tmp_path / "run.ckpt", MNISTScoreNet())
    main(["score-net", str(tmp_path / "run.ckpt"), "--out", str(tmp_path / "score.pt")])
    out = capsys.readouterr().out
    assert "score.pt" in out and "test accuracy 0." in out  # an untrained net: about chance
