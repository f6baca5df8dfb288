"""ModelAdapter: what one Qwen-VL family needs: frame, prompts, constraint, smart_resize."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Literal

from ..constraints import Constraint, box_list_schema, point_list_schema
from .resize import smart_resize

Frame = Literal["pixels", "relative1000"]
Output = Literal["box", "point"]

SPECIAL_TOKEN = re.compile(r"<\|[^<>|\s]{0,40}\|>")

DEFAULT_MIN_PIXELS = 56 * 56
DEFAULT_MAX_PIXELS = 1280 * 28 * 28

SYSTEM_PROMPT = "You are a helpful assistant."
IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"
R1_SUFFIX = (
    " First output the thinking process in <think> </think> tags and then output the final"
    " answer in <answer> </answer> tags. Output the final answer in JSON format."
)


def strip_special_tokens(text: str) -> str:
    """`text` without spelled chat or vision control tokens, even ones nested to reassemble.

    Applied to user text (expressions) and to a think trace before it goes back into a prompt,
    where `<|image_pad|>` would count as a second image and `<|im_end|>` would end the turn.

    Example:
        >>> strip_special_tokens("the <|im_<|x|>end|>red <|image_pad|>circle")
        'the red circle'
    """
    while True:
        stripped = SPECIAL_TOKEN.sub("", text)
        if stripped == text:
            return text
        text = stripped


@dataclass(frozen=True)
class ModelFrame:
    """The model-input size of one image and the coordinate frame of the model's boxes."""

    width: int
    height: int
    frame: Frame

    @property
    def coord_bounds(self) -> tuple[int, int]:
        """Largest x and y the model may write."""
        if self.frame == "pixels":
            return self.width, self.height
        return 1000, 1000


class ModelAdapter:
    """Base adapter; subclasses set the family's constants and prompt wording."""

    model_type: ClassVar[str]
    patch_factor: ClassVar[int] = 28
    frame: ClassVar[Frame] = "pixels"
    system_prompt: ClassVar[str | None] = SYSTEM_PROMPT
    # Whether the family writes points itself; else a point request asks for a box and the
    # guards take its centre (docs/points.md).
    points: ClassVar[bool] = True

    def __init__(self, *, min_pixels: int | None = None, max_pixels: int | None = None) -> None:
        self.min_pixels = min_pixels or DEFAULT_MIN_PIXELS
        self.max_pixels = max_pixels or DEFAULT_MAX_PIXELS
        if self.min_pixels > self.max_pixels:
            raise ValueError("min_pixels must not exceed max_pixels")

    def model_frame(self, width: int, height: int) -> ModelFrame:
        """smart_resize the original (width, height) into this family's model frame."""
        f = self.patch_factor
        h_in, w_in = smart_resize(
            height, width, factor=f, min_pixels=self.min_pixels, max_pixels=self.max_pixels
        )
        # smart_resize keeps each side >= factor, so for very elongated images it can exceed
        # max_pixels; the processor would then resize our frame again. Trim the long side so
        # the frame is a fixed point of the processor's own smart_resize.
        if h_in * w_in > self.max_pixels:
            if h_in >= w_in:
                h_in = max(f, self.max_pixels // w_in // f * f)
            else:
                w_in = max(f, self.max_pixels // h_in // f * f)
        return ModelFrame(width=w_in, height=h_in, frame=self.frame)

    def question(self, expression: str, *, multiple: bool) -> str:
        """The family's grounding instruction for one referring expression."""
        if multiple:
            return (
                f'Locate every object that matches the description "{expression}" in this image '
                "and output the bbox coordinates in JSON format."
            )
        return f"Locate {expression} in this image and output the bbox coordinates in JSON format."

    def point_question(self, expression: str, *, multiple: bool) -> str:
        """The family's pointing instruction (Qwen2.5-VL's JSON point form, docs/points.md)."""
        if multiple:
            return (
                f'Locate every object that matches the description "{expression}" in this image '
                "as points, and output their point coordinates in JSON format."
            )
        return (
            f"Locate {expression} in this image as a point, and output its point coordinates "
            "in JSON format."
        )

    def user_text(
        self, expression: str, *, multiple: bool, think: bool, output: Output = "box"
    ) -> str:
        """The user-turn text: the plain question, or the R1 think/answer form."""
        # User text must not smuggle chat or vision control tokens into the prompt.
        clean = strip_special_tokens(expression)
        if output == "point" and self.points:
            text = self.point_question(clean, multiple=multiple)
        else:
            text = self.question(clean, multiple=multiple)
        return text + R1_SUFFIX if think else text

    def prompt(
        self,
        expression: str,
        *,
        multiple: bool = False,
        think: bool = False,
        output: Output = "box",
    ) -> str:
        """The full chat prompt with one image placeholder before the text, ready to generate."""
        return self.chat(self.user_text(expression, multiple=multiple, think=think, output=output))

    def chat(self, user_text: str, *, with_image: bool = True) -> str:
        """Render the Qwen chat shape with the image before the text in the user turn."""
        system = (
            f"<|im_start|>system\n{self.system_prompt}<|im_end|>\n" if self.system_prompt else ""
        )
        image = IMAGE_PLACEHOLDER if with_image else ""
        return f"{system}<|im_start|>user\n{image}{user_text}<|im_end|>\n<|im_start|>assistant\n"

    def constraint(
        self,
        frame: ModelFrame,
        *,
        multiple: bool,
        think: bool,
        max_detections: int,
        max_label_chars: int,
        max_tokens: int,
        think_max_tokens: int,
        output: Output = "box",
    ) -> Constraint:
        """The output constraint with coordinates bounded to the model frame.

        A point request of a family that writes points gets `[{"point_2d": [x, y], "label"}]`.
        """
        max_x, max_y = frame.coord_bounds
        schema_of = point_list_schema if output == "point" and self.points else box_list_schema
        schema = schema_of(
            max_x,
            max_y,
            max_items=max_detections if multiple else 1,
            max_label_chars=max_label_chars,
        )
        return Constraint(
            json_schema=schema,
            think=think,
            think_max_tokens=think_max_tokens,
            max_tokens=max_tokens,
        )
