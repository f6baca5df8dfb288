"""A blank expression (whitespace, NULs, control or zero-width characters only) is a 422
validation_error saying "expression is blank": JSON, multipart, SDK, CLI."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from boxguard.cli import commands as cli
from boxguard.clients import BadRequest, Client, InvalidRequest
from support import b64, png_bytes
from typer.testing import CliRunner

BLANKS = ["", "   ", "\t\n", "\u3000", "\x00", "\x00\x01\x1f\x7f", " \u200b\x00 "]


def _assert_validation_error(response: httpx.Response) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["code"] == "validation_error"
    assert [e["loc"] for e in problem["errors"]] == [["expression"]]
    assert "expression is blank" in problem["errors"][0]["msg"]


@pytest.mark.parametrize("expression", BLANKS)
def test_json_refuses_blank_expressions(live_server: str, expression: str) -> None:
    r = httpx.post(
        live_server + "/ground",
        json={"image": b64(png_bytes()), "expression": expression},
        timeout=60,
    )
    _assert_validation_error(r)


@pytest.mark.parametrize("expression", BLANKS)
def test_multipart_refuses_blank_expressions(live_server: str, expression: str) -> None:
    r = httpx.post(
        live_server + "/ground",
        files={"image": ("scene.png", png_bytes(), "image/png")},
        data={"expression": expression},
        timeout=60,
    )
    _assert_validation_error(r)


def test_padded_expression_is_still_grounded(live_server: str) -> None:
    r = httpx.post(
        live_server + "/ground",
        json={"image": b64(png_bytes()), "expression": "  the red circle  "},
        timeout=60,
    )
    assert r.status_code == 200, r.text


def test_sdk_refuses_before_sending(live_server: str) -> None:
    with Client(live_server) as client, pytest.raises(InvalidRequest) as info:
        client.ground(png_bytes(), "   ")
    assert isinstance(info.value, BadRequest) and isinstance(info.value, ValueError)
    assert info.value.code == "validation_error"
    assert str(info.value).startswith("[validation_error] expression is blank")


@pytest.mark.parametrize("expression", ["", "   "])
def test_cli_prints_one_line_and_exits_2(live_server: str, tmp_path: Path, expression: str) -> None:
    image = tmp_path / "scene.png"
    image.write_bytes(png_bytes())
    result = CliRunner().invoke(
        cli.app, ["ground", str(image), expression, "--server", live_server]
    )
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: [validation_error] expression is ")
    assert "Traceback" not in result.output
