"""Where the model comes from: --model DIR, the bundled demo checkpoint, or a tiny built one."""

from __future__ import annotations

import logging
import os
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import ModelAdapter
    from .settings import Settings

log = logging.getLogger(__name__)


def _demo_folder() -> Path:
    """The installed demo package's folder, located without importing it (a data dependency)."""
    spec = find_spec("boxguard.demo")
    locations = spec.submodule_search_locations if spec is not None else None
    # Without the demo the path does not exist, so the server builds its tiny random checkpoint.
    return Path(next(iter(locations))) if locations else Path(__file__).parent / "no-demo"


BUNDLED_CHECKPOINT = _demo_folder() / "checkpoint"


def builtin_checkpoint_dir() -> Path:
    """The built-in random-weight checkpoint, built once into the user's cache."""
    from boxguard.server.tiny_checkpoint import build_tiny_checkpoint

    cache = Path(os.environ.get("BOXGUARD_CACHE", Path.home() / ".cache" / "boxguard"))
    target = cache / "tiny-qwen2_5_vl"
    if not (target / "model.safetensors").is_file():
        log.info("building the built-in test checkpoint in %s", target)
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        build_tiny_checkpoint(tmp)
        if not target.exists():
            tmp.rename(target)
    return target


def resolve_model_dir(model: str | None) -> tuple[str, str]:
    """(directory, display name) of the model to serve; nothing is downloaded."""
    if model:
        path = Path(model).expanduser()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"{model} is not a model directory (no config.json); pass a local directory "
                "holding a Qwen-VL checkpoint"
            )
        return str(path), path.name
    if (BUNDLED_CHECKPOINT / "config.json").is_file():
        return str(BUNDLED_CHECKPOINT), "boxguard-demo-shapes"
    return str(builtin_checkpoint_dir()), "boxguard-tiny-random"


def model_for(settings: Settings) -> tuple[str, str, ModelAdapter]:
    """(checkpoint directory, display name, adapter); an upstream (--backend openai) has no
    directory ("") and its adapter comes from --family and the pixel bounds."""
    from .models import adapter_for, adapter_for_family

    bounds = {"min_pixels": settings.min_pixels, "max_pixels": settings.max_pixels}
    if settings.backend == "openai":
        name = settings.upstream_model or "upstream"
        return "", name, adapter_for_family(settings.family or "", **bounds)
    model_dir, name = resolve_model_dir(settings.model)
    return model_dir, name, adapter_for(model_dir, **bounds)
