"""One policy source: request > flags/env > policy file > Policy's defaults, merged in one place."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from boxguard.guards import Policy
from boxguard.server.errors import InvalidPolicy
from boxguard.server.policy_source import (
    POLICY_FILE,
    PolicyFileError,
    request_policy,
    server_policy,
)
from boxguard.server.settings import Settings

FILE = {
    "_calibration": "val, n=600",
    "visual_check": True,
    "visual_min_yes": 0.3,
    "min_confidence": 0.1,
}


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("BOXGUARD_"):
            monkeypatch.delenv(name)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A model directory with its own policy file."""
    (tmp_path / POLICY_FILE).write_text(json.dumps(FILE))
    return tmp_path


def test_the_defaults_are_the_guards_own(tmp_path: Path) -> None:
    applied = server_policy(Settings(), str(tmp_path))
    assert applied.values == Policy() and applied.sources == {} and applied.file is None
    # The server's policy flags default to "not given", so they cannot disagree with Policy.
    assert Settings().visual_check is None and Settings().self_consistency_k is None


def test_a_model_directory_brings_its_policy_file(model_dir: Path) -> None:
    applied = server_policy(Settings(), str(model_dir))
    assert applied.values.visual_check and applied.values.visual_min_yes == 0.3
    assert applied.sources == {
        "visual_check": "file",
        "visual_min_yes": "file",
        "min_confidence": "file",
    }
    assert applied.file == str(model_dir / POLICY_FILE)


def test_flags_and_env_override_the_file(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    applied = server_policy(Settings(visual_check=False, min_confidence=0.6), str(model_dir))
    assert not applied.values.visual_check and applied.values.min_confidence == 0.6
    assert applied.values.visual_min_yes == 0.3  # no flag for it: still the file's
    assert applied.sources["visual_check"] == "server"
    assert applied.sources["visual_min_yes"] == "file"
    monkeypatch.setenv("BOXGUARD_VISUAL_CHECK", "false")
    assert not server_policy(Settings(), str(model_dir)).values.visual_check


def test_policy_file_flag_wins_over_the_model_directory(model_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "calibrated.json"
    other.write_text(json.dumps({"visual_min_yes": 0.8}))
    applied = server_policy(Settings(policy_file=str(other)), str(model_dir))
    assert applied.values.visual_min_yes == 0.8 and not applied.values.visual_check
    assert applied.file == str(other)


def test_a_request_overrides_everything_within_the_bounds(model_dir: Path) -> None:
    base = server_policy(Settings(visual_check=True), str(model_dir))
    applied = request_policy(base, {"visual_min_yes": 0.9, "visual_check": False}, max_samples=8)
    assert applied.values.visual_min_yes == 0.9 and not applied.values.visual_check
    assert applied.sources["visual_check"] == "request"
    assert applied.sources["min_confidence"] == "file"
    assert request_policy(base, None, max_samples=8) is base
    with pytest.raises(InvalidPolicy):
        request_policy(base, {"visual_min_yes": 2.0}, max_samples=8)
    with pytest.raises(InvalidPolicy, match="at most 8"):
        request_policy(base, {"self_consistency_k": 9}, max_samples=8)
    with pytest.raises(InvalidPolicy):
        request_policy(base, {"min_conf": 0.5}, max_samples=8)


@pytest.mark.parametrize(
    ("content", "message"),
    [("[1, 2]", "JSON object"), ("{not json", "cannot read"), ('{"min_confidence": 7}', "valid")],
)
def test_a_bad_policy_file_is_refused_with_its_path(
    tmp_path: Path, content: str, message: str
) -> None:
    (tmp_path / POLICY_FILE).write_text(content)
    with pytest.raises(PolicyFileError, match=message):
        server_policy(Settings(), str(tmp_path))
    with pytest.raises(PolicyFileError, match="no such file"):
        server_policy(Settings(policy_file=str(tmp_path / "missing.json")), str(tmp_path))


def test_the_bundled_checkpoint_policy_file_is_valid() -> None:
    from boxguard.server.model_source import resolve_model_dir

    applied = server_policy(Settings(), resolve_model_dir(None)[0])
    assert applied.file is not None and applied.values.visual_check
