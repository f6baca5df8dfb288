"""The bundled checkpoint's recommended policy: used without --model, below env/flags/request."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from boxguard.server import model_source
from boxguard.server.errors import InvalidPolicy
from boxguard.server.grounding import base_policy, request_policy
from boxguard.server.settings import Settings

RECOMMENDED = {"_comment": "calibrated on val", "visual_check": True, "visual_min_yes": 0.3,
               "min_confidence": 0.1}


@pytest.fixture(autouse=True)
def bundled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bundled checkpoint dir holding a recommended policy; no BOXGUARD_ env."""
    for name in list(os.environ):
        if name.upper().startswith("BOXGUARD_"):
            monkeypatch.delenv(name)
    (tmp_path / model_source.POLICY_FILE).write_text(json.dumps(RECOMMENDED))
    monkeypatch.setattr(model_source, "BUNDLED_CHECKPOINT", tmp_path)
    return tmp_path


def test_the_bundled_checkpoint_brings_its_policy() -> None:
    policy = base_policy(Settings())
    assert policy.visual_check and policy.visual_min_yes == 0.3 and policy.min_confidence == 0.1


def test_a_users_model_keeps_the_server_defaults(tmp_path: Path) -> None:
    policy = base_policy(Settings(model=str(tmp_path)))
    assert not policy.visual_check and policy.visual_min_yes == 0.5
    assert policy.min_confidence == 0.25


def test_flags_and_env_override_the_recommended_policy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policy = base_policy(Settings(visual_check=False, min_confidence=0.6))
    assert not policy.visual_check and policy.min_confidence == 0.6
    assert policy.visual_min_yes == 0.3  # not a server setting: still the checkpoint's
    monkeypatch.setenv("BOXGUARD_VISUAL_CHECK", "false")
    assert not base_policy(Settings()).visual_check


def test_a_request_policy_overrides_everything() -> None:
    base = base_policy(Settings())
    policy = request_policy(base, {"visual_min_yes": 0.9, "visual_check": False}, Settings())
    assert policy.visual_min_yes == 0.9 and not policy.visual_check
    with pytest.raises(InvalidPolicy):
        request_policy(base, {"visual_min_yes": 2.0}, Settings())


def test_without_a_policy_file_the_defaults_stay(bundled: Path) -> None:
    (bundled / model_source.POLICY_FILE).unlink()
    policy = base_policy(Settings())
    assert not policy.visual_check and policy.min_confidence == 0.25


def test_a_policy_file_that_is_not_an_object_is_refused(bundled: Path) -> None:
    (bundled / model_source.POLICY_FILE).write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        base_policy(Settings())
