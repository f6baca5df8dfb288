"""Settings: BOXGUARD_ environment variables, comma-separated lists, overrides, validation."""

from __future__ import annotations

import pytest
from boxguard.server.settings import Settings
from pydantic import ValidationError

pytestmark = pytest.mark.usefixtures("clean_env")


def test_defaults() -> None:
    s = Settings()
    assert (s.host, s.port, s.backend) == ("127.0.0.1", 8000, "transformers")
    assert s.api_keys == [] and s.image_url_allowlist == [] and s.cors_origins == []
    assert s.min_pixels is None and s.max_pixels is None
    assert s.max_aspect_ratio == 200.0


def test_port_from_env(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("BOXGUARD_PORT", "9123")
    assert Settings().port == 9123


def test_env_names_are_case_insensitive(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("boxguard_port", "9124")
    assert Settings().port == 9124


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a, b", ["a", "b"]),
        ("a,b", ["a", "b"]),
        ("single", ["single"]),
        (" a ,, b , ", ["a", "b"]),
        ("", []),
    ],
)
def test_api_keys_are_comma_separated(
    clean_env: pytest.MonkeyPatch, value: str, expected: list[str]
) -> None:
    clean_env.setenv("BOXGUARD_API_KEYS", value)
    assert Settings().api_keys == expected


def test_other_lists_are_comma_separated(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("BOXGUARD_IMAGE_URL_ALLOWLIST", "example.com, images.example.org")
    clean_env.setenv("BOXGUARD_CORS_ORIGINS", "http://a.test,http://b.test")
    s = Settings()
    assert s.image_url_allowlist == ["example.com", "images.example.org"]
    assert s.cors_origins == ["http://a.test", "http://b.test"]


def test_list_kwargs_are_kept_and_strings_split() -> None:
    assert Settings(api_keys=["x", "y"]).api_keys == ["x", "y"]
    assert Settings(api_keys="x, y").api_keys == ["x", "y"]


def test_typed_env_values(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("BOXGUARD_IMAGE_URL_ENABLED", "true")
    clean_env.setenv("BOXGUARD_MAX_PIXELS", "1003520")
    clean_env.setenv("BOXGUARD_REQUEST_TIMEOUT_S", "2.5")
    clean_env.setenv("BOXGUARD_MODEL", "/models/qwen")
    s = Settings()
    assert s.image_url_enabled is True
    assert s.max_pixels == 1_003_520
    assert s.request_timeout_s == 2.5
    assert s.model == "/models/qwen"


def test_explicit_kwargs_override_env(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("BOXGUARD_PORT", "9123")
    clean_env.setenv("BOXGUARD_API_KEYS", "env-key")
    s = Settings(port=9000, api_keys=["kw-key"])
    assert s.port == 9000
    assert s.api_keys == ["kw-key"]


def test_unrelated_env_is_ignored(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PORT", "1")
    clean_env.setenv("BOXGUARD_NOT_A_SETTING", "x")
    assert Settings().port == 8000


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BOXGUARD_PORT", "not-a-number"),
        ("BOXGUARD_PORT", "70000"),
        ("BOXGUARD_PORT", "-1"),
        ("BOXGUARD_MAX_BATCH_SIZE", "0"),
        ("BOXGUARD_QUEUE_SIZE", "0"),
        ("BOXGUARD_MAX_ASPECT_RATIO", "201"),
        ("BOXGUARD_MAX_ASPECT_RATIO", "1"),
        ("BOXGUARD_REQUEST_TIMEOUT_S", "0"),
        ("BOXGUARD_MIN_CONFIDENCE", "1.5"),
        ("BOXGUARD_IMAGE_URL_ENABLED", "maybe"),
        ("BOXGUARD_MAX_NEW_TOKENS", "4"),
        ("BOXGUARD_MAX_PIXELS", "0"),
    ],
)
def test_invalid_env_values_raise(clean_env: pytest.MonkeyPatch, name: str, value: str) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"port": 65536},
        {"max_detections": 0},
        {"max_detections": 101},
        {"self_consistency_k": 33},
        {"gpu_memory_utilization": 0},
        {"max_body_bytes": 10},
        {"sample_temperature": 0},
    ],
)
def test_invalid_kwargs_raise(kwargs: dict) -> None:
    with pytest.raises(ValidationError):
        Settings(**kwargs)


def test_engine_frames_need_the_vllm_backend() -> None:
    assert Settings(backend="vllm", frame_resizer="engine").frame_resizer == "engine"
    assert Settings().frame_resizer == "pil"
    for backend in ("transformers", "openai"):
        with pytest.raises(ValidationError, match="frame_resizer=engine needs --backend vllm"):
            Settings(backend=backend, frame_resizer="engine")
    with pytest.raises(ValidationError):
        Settings(backend="vllm", frame_resizer="torchvision")
