"""Every package the distribution maps reaches the images' build (no engine needed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# pyproject's package-dir line, `"boxguard.x" = "folder", ...` (tomllib is Python 3.11+ only).
_PACKAGE_DIR = re.search(r"^package-dir = \{(.*)\}$", (ROOT / "pyproject.toml").read_text(), re.M)
assert _PACKAGE_DIR is not None
FOLDERS = sorted(set(re.findall(r'= "(\w+)"', _PACKAGE_DIR.group(1))))


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cpu"])
def test_each_image_copies_every_package_folder(dockerfile: str) -> None:
    text = (ROOT / "docker" / dockerfile).read_text()
    missing = [f for f in FOLDERS if f"COPY {f}/ /tmp/build/src/{f}/" not in text]
    assert not missing, f"{dockerfile} does not copy {missing}: the wheel build fails"


def test_the_build_context_admits_every_package_folder() -> None:
    assert "records" in FOLDERS and "server" in FOLDERS
    allowed = (ROOT / ".dockerignore").read_text().splitlines()
    assert [f for f in FOLDERS if f"!{f}/" not in allowed] == []
