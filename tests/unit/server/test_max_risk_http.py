"""`{"max_risk": r}` over HTTP: a real server on the tiny checkpoint with a calibrated policy
file picks the `_by_risk` policy; an uncalibrated risk is a 422 listing the calibrated ones."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support import b64, png_bytes, serve_in_thread

BY_RISK = {
    "_comment": "written by hand in the shape `boxguard calibrate` writes",
    "min_confidence": 0.0,
    "accept_no_object": True,
    "_by_risk": {
        "0.1": {"min_confidence": 0.9, "accept_no_object": False, "fatal": ["format", "geometry"]},
        "0.2": {"min_confidence": 0.4, "accept_no_object": True},
    },
}


@pytest.fixture(scope="module")
def server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from boxguard.server.app import create_app
    from boxguard.server.policy_source import calibrated_policies
    from boxguard.server.settings import Settings

    path = tmp_path_factory.mktemp("policy") / "policy.json"
    path.write_text(json.dumps(BY_RISK))
    calibrated_policies.cache_clear()
    settings = Settings(model=str(tiny_checkpoint), policy_file=str(path), max_new_tokens=32)
    with serve_in_thread(create_app(settings)) as url:
        yield url


def _ground(url: str, policy: dict[str, object]) -> httpx.Response:
    body = {"image": b64(png_bytes()), "expression": "the cat", "policy": policy}
    return httpx.post(f"{url}/ground", json=body, timeout=120)


def test_max_risk_picks_the_calibrated_policy(server: str) -> None:
    response = _ground(server, {"max_risk": 0.1})
    assert response.status_code == 200, response.text
    values = response.json()["policy"]["values"]
    assert values["min_confidence"] == 0.9 and values["accept_no_object"] is False
    assert sorted(values["fatal"]) == ["format", "geometry"]
    loose = _ground(server, {"max_risk": 0.2}).json()["policy"]["values"]
    assert loose["min_confidence"] == 0.4 and loose["accept_no_object"] is True


def test_an_uncalibrated_risk_is_a_422_listing_the_calibrated(server: str) -> None:
    response = _ground(server, {"max_risk": 0.05})
    assert response.status_code == 422
    problem = response.json()
    assert problem["code"] == "invalid_policy"
    assert "calibrated: 0.1, 0.2" in problem["detail"]
