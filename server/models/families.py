"""Adapters of the Qwen2-VL, Qwen2.5-VL and Qwen3-VL families."""

from __future__ import annotations

from typing import ClassVar

from .base import Frame, ModelAdapter


class Qwen2VLAdapter(ModelAdapter):
    """Qwen2-VL: boxes relative 0..1000, patch factor 28; no point form (a point request asks
    for a box and the guards take its centre)."""

    model_type = "qwen2_vl"
    patch_factor = 28
    frame: ClassVar[Frame] = "relative1000"
    points: ClassVar[bool] = False


class Qwen25VLAdapter(ModelAdapter):
    """Qwen2.5-VL: boxes in absolute pixels of the resized model input, patch factor 28."""

    model_type = "qwen2_5_vl"
    patch_factor = 28
    frame: ClassVar[Frame] = "pixels"


class Qwen3VLAdapter(ModelAdapter):
    """Qwen3-VL: boxes relative 0..1000 again, patch factor 32, its own REC wording."""

    model_type = "qwen3_vl"
    patch_factor = 32
    frame: ClassVar[Frame] = "relative1000"
    system_prompt = None

    def question(self, expression: str, *, multiple: bool) -> str:
        """Qwen3-VL's official REC prompt (it already asks for every match)."""
        return (
            f'Locate every object that matches the description "{expression}" in the image. '
            "Report bbox coordinates in JSON format."
        )

    def point_question(self, expression: str, *, multiple: bool) -> str:
        """Qwen3-VL's REC prompt asking for points (point_2d, 0..1000)."""
        return (
            f'Locate every object that matches the description "{expression}" in the image. '
            "Report point coordinates in JSON format."
        )
