"""A 422's field errors reach people: phrased by the server, shown by the SDK and the CLI."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from boxguard.cli import commands as cli
from boxguard.clients import BadRequest, Client
from support import b64, png_bytes
from typer.testing import CliRunner


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "scene.png"
    path.write_bytes(png_bytes())
    return path


def test_server_phrases_each_error_and_keeps_loc_and_type(live_server: str) -> None:
    body = {"image": b64(png_bytes()), "expression": "x", "think": "maybe", "policy": {"k": 1}}
    problem = httpx.post(live_server + "/ground", json=body, timeout=60).json()
    assert problem["errors"] == [
        {"loc": ["think"], "msg": "think must be true or false", "type": "bool_parsing"}
    ]
    body = {"image": b64(png_bytes()), "expression": "x", "policy": {"min_confidence": 7}}
    problem = httpx.post(live_server + "/ground", json=body, timeout=60).json()
    assert problem["code"] == "invalid_policy"
    assert problem["errors"] == [
        {
            "loc": ["min_confidence"],
            "msg": "policy.min_confidence must be at most 1",
            "type": "less_than_equal",
        }
    ]
    form = httpx.post(live_server + "/ground", files={"image": ("a.png", png_bytes())}, timeout=60)
    assert form.json()["errors"][0]["msg"] == "expression is required"


def test_sdk_error_text_names_the_field(live_server: str, image: Path) -> None:
    with Client(live_server) as client, pytest.raises(BadRequest) as caught:
        client.ground(image, "the circle", policy={"min_conf": 0.5})
    assert caught.value.code == "invalid_policy"
    assert "policy.min_conf is not a known field" in str(caught.value)


def test_cli_prints_the_field_errors(live_server: str, image: Path) -> None:
    args = ["ground", str(image), "the circle", "--server", live_server]
    result = CliRunner().invoke(cli.app, [*args, "--policy", '{"min_conf": 0.5}'])
    assert result.exit_code == 2
    assert "the policy override is invalid: policy.min_conf is not a known field" in result.output
