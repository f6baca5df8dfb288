"""Policy files `boxguard calibrate` writes: another model's refuses to load unless forced, and
a request picks a calibrated risk with `max_risk` (an uncalibrated one is a 422)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from boxguard.server.errors import InvalidPolicy
from boxguard.server.policy_source import (
    POLICY_FILE,
    PolicyFileError,
    calibrated_policies,
    request_policy,
    server_policy,
)
from boxguard.server.settings import Settings

CALIBRATED = {
    "_model": {"name": "boxguard-demo-shapes", "family": "qwen2_5_vl"},
    "_calibration": {"risk": 0.2, "delta": 0.1, "n": 600},
    "visual_check": True,
    "visual_min_yes": 0.98,
    "accept_no_object": False,
    "_by_risk": {
        "0.2": {
            "visual_check": True,
            "visual_min_yes": 0.98,
            "accept_no_object": False,
            "_calibration": {"risk": 0.2},
        },
        "0.3": {"visual_check": True, "visual_min_yes": 0.7, "accept_no_object": False},
    },
}


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("BOXGUARD_"):
            monkeypatch.delenv(name)
    calibrated_policies.cache_clear()


def _model_dir(tmp_path: Path, family: str = "qwen2_5_vl") -> Path:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": family}))
    return model


def _file(tmp_path: Path, doc: dict | None = None) -> Path:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(doc or CALIBRATED))
    return path


def test_a_file_for_the_served_model_loads(tmp_path: Path) -> None:
    settings = Settings(policy_file=str(_file(tmp_path)))
    applied = server_policy(settings, str(_model_dir(tmp_path)), "boxguard-demo-shapes")
    assert applied.values.visual_min_yes == 0.98 and not applied.values.accept_no_object


def test_another_models_file_refuses_to_load_unless_forced(tmp_path: Path) -> None:
    path, model = _file(tmp_path), _model_dir(tmp_path)
    with pytest.raises(PolicyFileError, match="calibrated on another model.*'other-model'"):
        server_policy(Settings(policy_file=str(path)), str(model), "other-model")
    forced = server_policy(Settings(policy_file=str(path), policy_force=True), str(model), "x")
    assert forced.values.visual_min_yes == 0.98


def test_another_family_refuses_even_beside_the_model(tmp_path: Path) -> None:
    model = _model_dir(tmp_path, family="qwen3_vl")
    (model / POLICY_FILE).write_text(json.dumps(CALIBRATED))
    with pytest.raises(PolicyFileError, match="family 'qwen2_5_vl', this model's is 'qwen3_vl'"):
        server_policy(Settings(), str(model), "model")


def test_the_model_directorys_own_file_is_not_checked_by_name(tmp_path: Path) -> None:
    model = _model_dir(tmp_path)
    (model / POLICY_FILE).write_text(json.dumps(CALIBRATED))
    assert server_policy(Settings(), str(model), "model").values.visual_min_yes == 0.98


def test_max_risk_picks_the_calibrated_policy(tmp_path: Path) -> None:
    base = server_policy(Settings(policy_file=str(_file(tmp_path))), str(_model_dir(tmp_path)))
    applied = request_policy(base, {"max_risk": 0.3}, max_samples=8)
    assert applied.values.visual_min_yes == 0.7 and applied.sources["visual_min_yes"] == "request"
    # Other overrides still apply on top of the risk's policy.
    both = request_policy(base, {"max_risk": 0.2, "min_confidence": 0.4}, max_samples=8)
    assert both.values.visual_min_yes == 0.98 and both.values.min_confidence == 0.4


@pytest.mark.parametrize("risk", [0.1, "0.2", True])
def test_an_uncalibrated_risk_is_a_422_listing_the_calibrated(tmp_path: Path, risk: object) -> None:
    base = server_policy(Settings(policy_file=str(_file(tmp_path))), str(_model_dir(tmp_path)))
    with pytest.raises(
        InvalidPolicy, match=r"is not calibrated on this server; calibrated: 0.2, 0.3"
    ) as caught:
        request_policy(base, {"max_risk": risk}, max_samples=8)
    assert caught.value.status_code == 422 and caught.value.code == "invalid_policy"


def test_max_risk_without_a_calibrated_file(tmp_path: Path) -> None:
    base = server_policy(Settings(), str(tmp_path))
    with pytest.raises(InvalidPolicy, match="calibrated: none"):
        request_policy(base, {"max_risk": 0.1}, max_samples=8)


def test_an_invalid_risk_policy_fails_at_startup(tmp_path: Path) -> None:
    bad = {**CALIBRATED, "_by_risk": {"0.1": {"visual_min_yes": 2}}}
    with pytest.raises(PolicyFileError, match=r"_by_risk\['0.1'\].*visual_min_yes"):
        server_policy(Settings(policy_file=str(_file(tmp_path, bad))), str(tmp_path))
