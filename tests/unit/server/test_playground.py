"""The playground's server side: what it tells the page, and its sample scenes."""

from __future__ import annotations

import io

from boxguard.guards import Policy
from boxguard.server.model_source import resolve_model_dir
from boxguard.server.playground import SAMPLES, playground_config, sample_png
from boxguard.server.policy_source import server_policy
from boxguard.server.settings import Settings
from PIL import Image


def test_config_reports_the_servers_policy_defaults_and_key_requirement() -> None:
    settings = Settings(min_confidence=0.4, visual_check=True, self_consistency_k=3, api_keys=["k"])
    config = playground_config(settings, server_policy(settings, "/nonexistent").values)
    assert config["api_key_required"] is True
    assert config["policy"] == {
        "min_confidence": 0.4,
        "visual_check": True,
        "self_consistency_k": 3,
    }


def test_config_without_overrides_reports_the_policy_in_force() -> None:
    settings = Settings()
    policy = server_policy(settings, resolve_model_dir(None)[0])
    config = playground_config(settings, policy.values)
    assert config["api_key_required"] is False
    assert config["policy"]["min_confidence"] == policy.values.min_confidence
    # No --model: the bundled checkpoint, with its policy file (visual re-check on).
    assert config["policy"]["visual_check"] is policy.values.visual_check is True
    assert policy.sources["visual_check"] == "file"
    assert config["max_policy_samples"] == Settings().max_policy_samples


def test_samples_are_pngs_with_expressions() -> None:
    config = playground_config(Settings(), Policy())
    assert [s["name"] for s in config["samples"]] == list(SAMPLES)
    for name, sample in SAMPLES.items():
        image = Image.open(io.BytesIO(sample_png(name)))
        assert image.format == "PNG" and image.width > 0 and image.height > 0
        assert sample.expressions and all(e.strip() for e in sample.expressions)
    assert sample_png("stars") is sample_png("stars")  # read once
