"""Wire schema of the boxguard HTTP API, shared by the server and the client SDK.

Imports only pydantic, so the light client install can use it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_EXPRESSION_CHARS = 1000


class GroundRequest(BaseModel):
    """A grounding request: one image and one referring expression.

    Example:
        >>> GroundRequest(image="iVBORw0KGgo...", expression="the red circle").multiple
        False
    """

    model_config = ConfigDict(extra="forbid")

    image: str | None = Field(
        default=None, description="The image as base64 or a data URL (data:image/png;base64,...)."
    )
    image_url: str | None = Field(
        default=None,
        description="An http(s) URL to fetch the image from; only when the server enables it.",
    )
    expression: str = Field(
        min_length=1,
        max_length=MAX_EXPRESSION_CHARS,
        # Blank or whitespace-only is no expression; \S also puts the rule in the OpenAPI schema.
        pattern=r"\S",
        description="The referring expression, e.g. 'the metal pole left of the bus'; not blank.",
    )
    multiple: bool = Field(default=False, description="Return every object that matches.")
    think: bool = Field(default=False, description="Ask for a <think> trace before the answer.")
    return_raw: bool = Field(default=False, description="Include the raw model output.")
    policy: dict[str, Any] | None = Field(
        default=None,
        description="Overrides of the server's guard policy (e.g. {'min_confidence': 0.5}), "
        "within the bounds the server allows.",
    )


class Detection(BaseModel):
    """A box in original-image pixels [x1, y1, x2, y2] with its label and confidence."""

    bbox: list[float] = Field(min_length=4, max_length=4)
    label: str | None = None
    confidence: float | None = None


class Check(BaseModel):
    """The outcome of one guard check."""

    name: str
    passed: bool
    score: float | None = None
    detail: str = ""
    fatal: bool = True


class ImageInfo(BaseModel):
    """Size of the original image (after EXIF orientation) and of the model's input frame."""

    width: int
    height: int
    model_width: int | None = None
    model_height: int | None = None


class GroundResponse(BaseModel):
    """The verdict on one grounding request: verified boxes or an abstention with reasons."""

    id: str
    status: Literal["accepted", "abstained"]
    detections: list[Detection] = Field(default_factory=list)
    candidates: list[Detection] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)
    checks: list[Check] = Field(default_factory=list)
    think: str | None = None
    raw_output: str | None = None
    image: ImageInfo
    model: str
    timings_ms: dict[str, float] = Field(default_factory=dict)


class Problem(BaseModel):
    """An RFC 9457 problem detail, served as application/problem+json."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str = ""
    code: str
    request_id: str | None = None
    errors: list[dict[str, Any]] | None = None


class Health(BaseModel):
    """Liveness or readiness answer."""

    status: Literal["ok", "ready", "not_ready"]
    model: str | None = None
    backend: str | None = None
