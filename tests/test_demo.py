import re

import torch

from iclr17.demo import ValidationCurve, main


def test_demo_ends_with_its_test_error_and_a_figure_however_short_the_budget(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    threads = torch.get_num_threads()
    line, run = main(
        ["--trainer.max_time=00:00:00:01", "--trainer.val_check_interval=2", "--trainer.logger=false",
         f"--trainer.default_root_dir={tmp_path}", "--trainer.enable_progress_bar=false",
         "--data.init_args.n_train=64", "--data.init_args.n_val=16", "--data.init_args.n_test=50"]
    )  # fmt: skip
    assert torch.get_num_threads() == threads  # the demo's one thread does not leak into the caller
    *_, printed_line, printed_figure = capsys.readouterr().out.strip().splitlines()
    assert printed_line == line
    found = re.fullmatch(
        r"world-model test error (\d\.\d\d) on stories of 2-6 sentences after \d+ s of training "
        r"\((\d+) updates; guessing: 0\.99; paper: 0\.00 at T = 10 after full training\)",
        line,
    )
    assert found, line
    figure = tmp_path / "validation_error.png"
    assert printed_figure == f"figure: {figure}" and figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (curve,) = (c for c in run.trainer.callbacks if isinstance(c, ValidationCurve))
    assert curve.points and int(found[2]) == run.trainer.global_step > 0

    model, wrong, total = run.model.eval(), 0, 0  # the printed error, recomputed by hand on the test split
    with torch.no_grad():
        for batch in run.datamodule.test_dataloader():
            logits, _ = model(batch["story"], batch["query"])
            wrong += int((logits.argmax(-1) != batch["answer"]).sum())
            total += len(batch["answer"])
    assert total == 100 and abs(float(found[1]) - wrong / total) <= 0.005
