"""Model-family adapters, chosen from a checkpoint's config.json `model_type`."""

from __future__ import annotations

import json
from pathlib import Path

from .base import ModelAdapter, ModelFrame, strip_special_tokens
from .families import Qwen2VLAdapter, Qwen3VLAdapter, Qwen25VLAdapter
from .resize import AspectRatioError, frame_input, resize_to_frame, smart_resize

ADAPTERS: dict[str, type[ModelAdapter]] = {
    cls.model_type: cls for cls in (Qwen2VLAdapter, Qwen25VLAdapter, Qwen3VLAdapter)
}


class UnsupportedModel(ValueError):
    """The checkpoint is not a Qwen-VL family boxguard knows."""


def read_model_type(model_dir: str | Path) -> str:
    """The `model_type` of a local checkpoint's config.json."""
    config_path = Path(model_dir) / "config.json"
    if not config_path.is_file():
        raise UnsupportedModel(f"no config.json in {model_dir}")
    return str(json.loads(config_path.read_text()).get("model_type", ""))


def read_pixel_limits(model_dir: str | Path) -> tuple[int | None, int | None]:
    """(min_pixels, max_pixels) from the checkpoint's preprocessor_config.json, if it sets them."""
    path = Path(model_dir) / "preprocessor_config.json"
    if not path.is_file():
        return None, None
    cfg = json.loads(path.read_text())
    size = cfg.get("size") or {}
    return (
        cfg.get("min_pixels") or size.get("shortest_edge"),
        cfg.get("max_pixels") or size.get("longest_edge"),
    )


def adapter_for(
    model_dir: str | Path, *, min_pixels: int | None = None, max_pixels: int | None = None
) -> ModelAdapter:
    """The adapter of a checkpoint; explicit pixel limits override the checkpoint's.

    Example:
        >>> adapter_for("/models/Qwen2.5-VL-7B-Instruct").frame  # doctest: +SKIP
        'pixels'
    """
    model_type = read_model_type(model_dir)
    ckpt_min, ckpt_max = read_pixel_limits(model_dir)
    return adapter_for_family(
        model_type, min_pixels=min_pixels or ckpt_min, max_pixels=max_pixels or ckpt_max
    )


def adapter_for_family(
    family: str, *, min_pixels: int | None = None, max_pixels: int | None = None
) -> ModelAdapter:
    """The adapter of a family by its `model_type`, without a checkpoint (e.g. a remote model).

    Example:
        >>> adapter_for_family("qwen2_vl", max_pixels=200_704).frame
        'relative1000'
    """
    if family not in ADAPTERS:
        raise UnsupportedModel(
            f"model_type {family!r} is not supported; supported: {', '.join(ADAPTERS)}"
        )
    return ADAPTERS[family](min_pixels=min_pixels, max_pixels=max_pixels)


__all__ = [
    "ADAPTERS",
    "AspectRatioError",
    "ModelAdapter",
    "ModelFrame",
    "UnsupportedModel",
    "adapter_for",
    "adapter_for_family",
    "read_model_type",
    "frame_input",
    "resize_to_frame",
    "smart_resize",
    "strip_special_tokens",
]
