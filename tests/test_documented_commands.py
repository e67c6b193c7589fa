"""Every ``iclr17`` command the README, the docs pages and the config headers show parses: its subcommand exists,
its config file is found, and every argument is one the subcommand takes, with a value of the right type.

Parsed, not run: a LightningCLI command with ``--print_config`` (nothing is instantiated), a study command by the
study's own parser (``iclr17.__main__.study_parser``), ``iclr17 results`` by a parser of its function's
arguments. Commands with a placeholder (``<run>``, ``S``, ``...``) are left out, and a mention of a bare
subcommand only has to name one that exists. RESULTS.md is not read: it records the commands as they were run."""

from __future__ import annotations

import re
import shlex

import pytest
from jsonargparse import ArgumentParser

from iclr17.__main__ import LIGHTNING, TOOLS, study_parser
from iclr17.cli import cli, resolve_config_args
from iclr17.studies import results_tables
from iclr17.studies.catalog import STUDIES
from tests.conftest import REPO_ROOT

SOURCES = ["README.md", *sorted(str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "docs").rglob("*.md"))]
PLACEHOLDER = re.compile(r"<|\.\.\.|=S\b|\$|\[E\]|\\\||\bCHECKPOINT\b")


def _from_markdown(path: str) -> list[tuple[str, str]]:
    text = (REPO_ROOT / path).read_text()
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for number, line in enumerate(block.replace("\\\n", " ").splitlines()):
            line = line.split(" #")[0].strip()
            if line.startswith("iclr17"):
                found.append((f"{path}, bash block line {number + 1}", line))
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    found += [(f"{path}, inline", m) for m in re.findall(r"`(iclr17(?: [^`\n]*)?)`", prose)]
    return found


def _from_config_headers() -> list[tuple[str, str]]:
    found = []
    for path in sorted((REPO_ROOT / "configs").rglob("*.yaml")):
        lines = path.read_text().splitlines()
        for index, line in enumerate(lines):
            if not line.startswith("#"):
                break
            body = re.sub(r"^(Command|Check|Test):\s*", "", line[1:].strip())
            if not re.match(r"(\w+=\S+\s+)*iclr17 ", body):
                continue
            end = index
            while body.endswith("\\") and end + 1 < len(lines):
                end += 1
                body = body[:-1] + " " + lines[end][1:].strip()
            body = re.split(r"\s{2,}", body)[0].rstrip(")")  # what follows two spaces is a comment
            found.append((f"{path.relative_to(REPO_ROOT)}:{index + 1}", body))
    return found


COMMANDS = [c for source in SOURCES for c in _from_markdown(source)] + _from_config_headers()


def _argv(command: str) -> list[str]:
    tokens = shlex.split(command)
    while "=" in tokens[0]:  # environment assignments
        tokens.pop(0)
    assert tokens[0] == "iclr17", command
    return [t for t in tokens[1:] if not t.startswith("[--")]  # an optional argument shown in brackets


def test_the_sources_hold_the_commands_this_test_checks():
    assert len(COMMANDS) >= 100
    assert {"README.md", "docs/studies.md"} <= {source.split(",")[0] for source, _ in COMMANDS}
    assert sum(source.startswith("configs/") for source, _ in COMMANDS) >= 80


@pytest.mark.parametrize(("source", "command"), COMMANDS, ids=[f"{s} {c}"[:120] for s, c in COMMANDS])
def test_a_documented_command_parses(source, command, monkeypatch, capsys):
    monkeypatch.chdir(REPO_ROOT)
    argv = _argv(command)
    if not argv or argv[0] in ("--help", "-h", "configs"):
        return
    name, rest = argv[0], argv[1:]
    if PLACEHOLDER.search(name):  # iclr17 <fit|validate|test|predict> ...
        return
    assert name in {*LIGHTNING, *STUDIES, *TOOLS}, f"{source}: `{command}` names no iclr17 subcommand"
    if not rest or PLACEHOLDER.search(command):
        return
    if name in LIGHTNING:
        with pytest.raises(SystemExit) as exited:
            cli([name, *rest, "--print_config"])
        assert exited.value.code in (0, None), f"{source}: `{command}`:\n{capsys.readouterr().err[-2000:]}"
    elif name in STUDIES:
        try:
            config = study_parser(STUDIES[name], prog=f"iclr17 {name}").parse_args(resolve_config_args(rest))
        except SystemExit:
            pytest.fail(f"{source}: `{command}` does not parse:\n{capsys.readouterr().err[-2000:]}")
        assert config.subcommand is not None, f"{source}: `{command}` has no run, status or table"
    elif name == "results":
        parser = ArgumentParser(prog="iclr17 results")
        parser.add_function_arguments(results_tables.main, as_positional=False)
        parser.parse_args(rest)


def test_a_wrong_documented_command_fails_here(monkeypatch, capsys):
    """The check itself can fail: a config that does not exist, an argument a study does not take."""
    monkeypatch.chdir(REPO_ROOT)
    for command in ("iclr17 entnet-babi --config studies/entnet_babi10k_paper.yaml run",
                    "iclr17 ebgan-grid --config studies/ebgan_grid_subset.yaml --resume=false run",
                    "iclr17 fit --config classifier/mnistfc.yaml --trainer.epochs=3"):  # fmt: skip
        with pytest.raises((AssertionError, pytest.fail.Exception)):
            test_a_documented_command_parses("here", command, monkeypatch, capsys)
