import itertools
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pytorch_lightning.callbacks import RichProgressBar

from iclr17.__main__ import main
from iclr17.cli import cli, resolve_config_path, shipped_configs
from iclr17.studies.catalog import STUDIES
from tests.conftest import REPO_ROOT

BIN = Path(sys.executable).parent
DEMO = "configs/classifier/gaussian_mixture.yaml"


def test_console_script_fits_a_shipped_config_from_any_folder(tmp_path):
    """The shipped config is found by name even though tmp_path holds no configs/ folder."""
    run = subprocess.run(
        [BIN / "iclr17", "fit", "--config", DEMO, "--trainer.fast_dev_run=true"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]


def test_python_m_print_config_resolves_bare_names(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "iclr17", "fit", "--config", "classifier/mnistfc.yaml", "--print_config"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    config = yaml.safe_load(run.stdout)
    assert config["model"]["class_path"] == "iclr17.Classifier"
    assert config["model"]["init_args"]["net"]["class_path"] == "iclr17.MNISTFC"
    assert config["data"]["class_path"] == "iclr17.MNISTDataModule"
    assert config["seed_everything"] == 0


def test_shipped_configs_are_the_repository_configs():
    on_disk = sorted(str(p.relative_to(REPO_ROOT / "configs")) for p in (REPO_ROOT / "configs").rglob("*.yaml"))
    assert shipped_configs() == on_disk
    assert Path(resolve_config_path("configs/classifier/mnistfc.yaml")).is_file()
    assert resolve_config_path("no/such.yaml") == "no/such.yaml"


def test_configs_subcommand_lists_them(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["iclr17", "configs"])
    main()
    assert "classifier/mnistfc.yaml" in capsys.readouterr().out.split()


def test_fit_saves_config_with_seed_next_to_checkpoint_then_validate_test_predict(tmp_path):
    fit = cli(["fit", "--config", DEMO, "--seed_everything=true", "--trainer.max_epochs=2"])
    assert any(isinstance(c, RichProgressBar) for c in fit.trainer.callbacks)
    (run_dir,) = (tmp_path / "runs" / "iclr17").iterdir()
    (checkpoint,) = (run_dir / "checkpoints").glob("*.ckpt")
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert isinstance(saved["seed_everything"], int) and saved["seed_everything"] is not True

    rerun = ["--config", str(run_dir / "config.yaml"), "--ckpt_path", str(checkpoint), "--trainer.logger=false"]
    validated = cli(["validate", *rerun])
    assert validated.trainer.callback_metrics["val/acc"] == pytest.approx(
        float(fit.trainer.callback_metrics["val/acc"]), abs=1e-6
    )
    tested = cli(["test", *rerun])
    assert "test/acc" in tested.trainer.callback_metrics
    predicted = cli(["predict", *rerun])
    assert predicted.trainer.predict_loop.predictions[0].shape == (100,)


def test_no_progress_bar_when_disabled():
    result = cli(["fit", "--config", DEMO, "--trainer.fast_dev_run=true", "--trainer.enable_progress_bar=false"])
    assert result.trainer.progress_bar_callback is None


def _cli_error(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli(args)
    assert exit_info.value.code != 0
    return capsys.readouterr().err


def test_unknown_class_name_names_the_key(capsys):
    err = _cli_error(["fit", "--config", DEMO, "--model.init_args.net=NoSuchNet"], capsys)
    assert "net" in err and "NoSuchNet" in err


def test_wrong_type_names_the_key(capsys):
    err = _cli_error(["fit", "--config", DEMO, "--data.init_args.batch_size=many"], capsys)
    assert "batch_size" in err


def test_unknown_yaml_key_names_the_key(tmp_path, capsys):
    config = yaml.safe_load((REPO_ROOT / DEMO).read_text())
    config["model"]["init_args"]["learning_rat"] = 0.1
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(config))
    err = _cli_error(["fit", "--config", str(path)], capsys)
    assert "learning_rat" in err


@pytest.mark.parametrize("name", shipped_configs())
def test_every_shipped_config_has_a_header_and_parses(name, capsys):
    lines = Path(resolve_config_path(name)).read_text().splitlines()
    header = "\n".join(itertools.takewhile(lambda line: line.startswith("#"), lines))
    assert "Command:" in header and ("Paper:" in header or "paper" in header), f"{name} needs its header"
    with pytest.raises(SystemExit) as exit_info:
        if name.startswith("studies/"):  # a study's config: its header's command names the study
            study = re.search(r"Command: +(?:\S+=\S+ )*iclr17 ([\w-]+) --config", header)
            assert study and study.group(1) in STUDIES, f"{name}: the header's Command names no study"
            main([study.group(1), "--config", name, "--print_config"])
        else:
            cli(["fit", "--config", name, "--print_config"])
    assert exit_info.value.code == 0


def test_help_lists_the_lightning_subcommands_the_studies_and_the_tools(capsys):
    main(["--help"])
    out = capsys.readouterr().out
    for name in ["fit", "test", *STUDIES, "results", "score-net", "configs"]:
        assert re.search(rf"^  {re.escape(name)} +\S", out, re.M), name


def test_a_study_finds_a_shipped_study_config_and_names_an_unknown_key(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["ebgan-grid", "--config", "studies/ebgan_grid_reduced.yaml", "--print_config"])
    assert exit_info.value.code == 0 and "limit_batches: 200" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["ebgan-grid", "--config", "studies/ebgan_grid_reduced.yaml", "--n_layer_gg=[2]", "status"])
    assert exit_info.value.code != 0 and "n_layer_gg" in capsys.readouterr().err
