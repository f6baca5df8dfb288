"""Wire schema of the boxguard HTTP API, defined once for the server and the client SDK.

It lives in guards, the light package both depend on, because a response is a guards Verdict
(its detections, candidates and checks are guards' own result types) plus what the server
adds. Imports only pydantic and guards' types, so the light client install can use it.

Example:
    >>> GroundResponse.model_validate({"id": "r1", "status": "abstained", "model": "m",
    ...     "image": {"width": 8, "height": 8}, "reasons": ["confidence"]}).accepted
    False
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .policy import Policy
from .types import OutputMode, Verdict

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
    output: OutputMode = Field(
        default="box",
        description="'box': detections carry `bbox`; 'point': each carries `point` (x, y), e.g. "
        "where a GUI agent clicks or a robot grasps, asked with the family's pointing prompt.",
    )
    think: bool = Field(default=False, description="Ask for a <think> trace before the answer.")
    return_raw: bool = Field(default=False, description="Include the raw model output.")
    policy: dict[str, Any] | None = Field(
        default=None,
        description="Overrides of the server's guard policy (e.g. {'min_confidence': 0.5}), "
        "within the bounds the server allows. {'max_risk': 0.1} picks the policy `boxguard "
        "calibrate` certified for that risk of accepted answers (the policy file's `_by_risk`); "
        "a risk it did not certify is a 422 invalid_policy listing the calibrated ones.",
    )

    @field_validator("expression", mode="before")
    @classmethod
    def _not_blank(cls, value: object) -> object:
        """No printable non-space character (only spaces, NULs, controls, zero-widths): blank."""
        if isinstance(value, str) and not any(c.isprintable() and not c.isspace() for c in value):
            raise ValueError("expression is blank")
        return value


class ImageInfo(BaseModel):
    """Size of the original image (after EXIF orientation) and of the model's input frame."""

    width: int
    height: int
    model_width: int | None = None
    model_height: int | None = None


# Where a policy field's value came from, highest precedence first.
PolicyLayer = Literal["request", "server", "file", "default"]


class PolicyInForce(BaseModel):
    """The guard policy a request was verified under, and where each non-default value came from.

    Example:
        >>> PolicyInForce(values=Policy(min_confidence=0.5),
        ...               sources={"min_confidence": "request"}).sources["min_confidence"]
        'request'
    """

    values: Policy
    sources: dict[str, PolicyLayer] = Field(
        default_factory=dict,
        description="Fields set above the defaults and by whom: request (the request's "
        "`policy`), server (flags or BOXGUARD_* env), file (the policy file). Fields not "
        "named are the guards' defaults.",
    )
    file: str | None = Field(default=None, description="The policy file in force, if any.")


class GroundResponse(Verdict):
    """The verdict on one grounding request (a guards Verdict) and what the server adds."""

    id: str
    raw_output: str | None = None
    image: ImageInfo
    model: str
    timings_ms: dict[str, float] = Field(default_factory=dict)
    policy: PolicyInForce | None = Field(
        default=None, description="The policy this answer was verified under."
    )


class Problem(BaseModel):
    """An RFC 9457 problem detail, served as application/problem+json."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str = ""
    code: str
    request_id: str | None = None
    errors: list[dict[str, Any]] | None = None


BackendState = Literal["starting", "ready", "dead", "stopped"]


class Health(BaseModel):
    """Liveness or readiness answer."""

    status: Literal["ok", "ready", "not_ready"]
    model: str | None = None
    backend: str | None = None
    backend_state: BackendState | None = Field(
        default=None,
        description="starting, ready, dead (a fatal engine error; being restarted) or stopped.",
    )
    reason: str | None = Field(default=None, description="Why the backend is not ready.")
    constraint: str | None = Field(
        default=None,
        description="How an upstream (--backend openai) constrains answers: structured_outputs, "
        "guided_grammar or response_format.",
    )
