"""The CLI's help reads like other CLIs': plain usage lines, no type on flags, nothing cut off."""

from __future__ import annotations

import pytest
from boxguard.cli import commands as cli
from typer.testing import CliRunner

runner = CliRunner()
COMMANDS = ("ground", "eval", "serve", "demo")


def _help(command: str, columns: int) -> str:
    env = {"COLUMNS": str(columns), "TERMINAL_WIDTH": str(columns)}
    result = runner.invoke(cli.app, [command, "--help"], env=env)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_flags_show_no_type_and_usage_has_no_braces(command: str) -> None:
    text = _help(command, 120)
    assert "<bool>" not in text
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert "{" not in usage and "}" not in usage


def test_usage_lines_name_the_arguments() -> None:
    assert "Usage: boxguard ground [OPTIONS] IMAGE EXPRESSION" in _help("ground", 120)
    assert "Usage: boxguard eval [OPTIONS] [DATASET]" in _help("eval", 120)


@pytest.mark.parametrize("command", ["ground", "eval"])
def test_default_server_url_is_whole_at_80_columns(command: str) -> None:
    text = _help(command, 80)
    assert "http://127.0.0.1:8000" in text
    assert "…" not in text


def test_every_eval_option_has_help() -> None:
    text = _help("eval", 200)
    option_lines = [line for line in text.splitlines() if line.strip("│ ").startswith("--")]
    assert len(option_lines) >= 14
    for line in option_lines:
        words = line.strip("│ ").split()
        assert len(words) >= 3, line


def test_top_level_help_shows_no_type() -> None:
    result = runner.invoke(cli.app, ["--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0 and "<bool>" not in result.output


def test_piped_serve_help_cuts_no_flag_name() -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "TERMINAL_WIDTH")}
    done = subprocess.run(
        [sys.executable, "-m", "boxguard.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "…" not in done.stdout and "--gpu-memory-utilization" in done.stdout
