"""`boxguard ground FILE` uploads the file as multipart: what the body limit allows is sent."""

from __future__ import annotations

import json
import os
from pathlib import Path

from boxguard.cli import commands as cli
from PIL import Image
from typer.testing import CliRunner


def test_a_file_too_large_as_base64_is_grounded(live_server: str, tmp_path: Path) -> None:
    path = tmp_path / "noise.png"
    Image.frombytes("RGB", (800, 760), os.urandom(800 * 760 * 3)).save(path)
    size, limit = path.stat().st_size, 2 * 1024 * 1024  # conftest's server_settings
    assert size < limit < size * 4 / 3, "not a file that only fits as multipart"
    args = ["ground", str(path), "the red circle", "--server", live_server, "--json"]
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["image"]["width"] == 800
