"""`boxguard serve` flags come from Settings: every field, its help text, default and panel."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from boxguard.cli import commands as cli
from boxguard.server.serve import (
    ServeError,
    build_settings,
    check_model,
    flag_name,
    listen_socket,
)
from boxguard.server.settings import FLAG_GROUPS, Settings
from typer.testing import CliRunner

runner = CliRunner()
WIDE = {"COLUMNS": "400", "TERMINAL_WIDTH": "400"}


pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What `serve` hands to the server's run(), which is replaced for the test."""
    calls: list[dict[str, Any]] = []
    stub = types.ModuleType("boxguard.server.serve")
    stub.run = calls.append  # type: ignore[attr-defined]
    stub.ServeError = ServeError  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "boxguard.server.serve", stub)
    return calls


def _help() -> str:
    result = runner.invoke(cli.app, ["serve", "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    return re.sub(r"\s+", " ", re.sub(r"[│╭╮╰╯─]", " ", result.output))


def test_every_setting_has_a_description_and_one_group() -> None:
    grouped = [name for names in FLAG_GROUPS.values() for name in names]
    assert sorted(grouped) == sorted(Settings.model_fields)
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no description (its --help text)"


def test_help_lists_every_setting_with_its_help_and_default() -> None:
    text = _help()
    for name, field in Settings.model_fields.items():
        assert flag_name(name) in text, name
        assert " ".join(str(field.description).split()) in text, name
    assert "--max-new-tokens <int> Answer token budget. [default: 128]" in text
    assert "--min-confidence <float> Confidence threshold; none = policy file, else 0.25" in text
    # Policy flags default to "not given", so the policy file or Policy's default decides.
    assert "--visual-check --no-visual-check" in text
    assert "[default: no-visual-check]" not in text
    assert "--policy-file <str>" in text or "--policy-file <text>" in text
    assert "[default: 127.0.0.1]" in text and "[default: 20971520]" in text


def test_help_groups_flags_in_panels_in_order() -> None:
    text = _help()
    positions = [text.index(f" {group} ") for group in FLAG_GROUPS]
    assert positions == sorted(positions)
    assert text.index("--port") < text.index(" Model ") < text.index("--backend ")
    assert text.index(" vLLM engine ") < text.index("--tensor-parallel-size")


def test_only_flags_given_on_the_command_line_are_passed(
    captured: list[dict[str, Any]],
) -> None:
    argv = ["serve", "--max-new-tokens", "64", "--min-confidence", "0.5", "--visual-check"]
    argv += ["--api-keys", "a, b", "--request-timeout-s", "9.5", "--no-enforce-eager"]
    result = runner.invoke(cli.app, argv)
    assert result.exit_code == 0, result.output
    assert captured == [
        {
            "max_new_tokens": 64,
            "min_confidence": 0.5,
            "visual_check": True,
            "api_keys": "a, b",
            "request_timeout_s": 9.5,
            "enforce_eager": False,
        }
    ]
    settings = build_settings(captured[0])
    assert (settings.max_new_tokens, settings.min_confidence, settings.visual_check) == (
        64,
        0.5,
        True,
    )
    assert settings.api_keys == ["a", "b"]


def test_env_applies_unless_a_flag_is_given(
    captured: list[dict[str, Any]], clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("BOXGUARD_PORT", "9001")
    clean_env.setenv("BOXGUARD_MAX_NEW_TOKENS", "77")
    assert runner.invoke(cli.app, ["serve"]).exit_code == 0
    assert runner.invoke(cli.app, ["serve", "--port", "9002"]).exit_code == 0
    assert captured == [{}, {"port": 9002}]
    assert build_settings(captured[0]).port == 9001
    assert build_settings(captured[1]).port == 9002
    assert build_settings(captured[1]).max_new_tokens == 77


def test_bad_values_name_the_flag_and_the_env_var(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ServeError, match=r"--max-new-tokens \(BOXGUARD_MAX_NEW_TOKENS\): "):
        build_settings({"max_new_tokens": 4})
    clean_env.setenv("BOXGUARD_PORT", "not-a-port")
    with pytest.raises(ServeError, match=r"--port \(BOXGUARD_PORT\): "):
        build_settings({})


def test_a_busy_port_is_refused_before_anything_loads() -> None:
    first = listen_socket("127.0.0.1", 0)
    first.listen()
    port = first.getsockname()[1]
    try:
        with pytest.raises(ServeError, match=f"127.0.0.1:{port} is already in use"):
            listen_socket("127.0.0.1", port)
    finally:
        first.close()


def test_light_install_serve_prints_the_install_hint_whatever_the_flags() -> None:
    import subprocess

    code = (
        "import sys\n"
        "sys.modules['pydantic_settings'] = None  # the light install has no server extra\n"
        "from typer.testing import CliRunner\n"
        "from boxguard.cli import commands as cli\n"
        "r = CliRunner().invoke(cli.app, ['serve', '--port', '8000', '--model', 'm'])\n"
        "print(r.exit_code, r.output)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.startswith("1 "), done.stdout + done.stderr
    assert 'pip install "boxguard[server]"' in done.stdout


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (None, "no config.json"),
        ('{"model_type": "llama"}', "model_type 'llama' is not supported"),
        ("not json", "cannot read"),
    ],
)
def test_model_directories_serve_cannot_use_are_refused(
    tmp_path: Path, config: str | None, message: str
) -> None:
    if config is not None:
        (tmp_path / "config.json").write_text(config)
    with pytest.raises(ServeError, match=re.escape(message)):
        check_model(Settings(model=str(tmp_path)))
