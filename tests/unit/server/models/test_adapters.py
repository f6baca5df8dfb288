"""Model-family adapters: selection from config.json, pixel limits, frames, prompts, constraints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from boxguard.server.models import (
    ADAPTERS,
    ModelAdapter,
    ModelFrame,
    UnsupportedModel,
    adapter_for,
    read_model_type,
)
from boxguard.server.models.base import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_PIXELS,
    IMAGE_PLACEHOLDER,
    R1_SUFFIX,
)
from boxguard.server.models.families import Qwen2VLAdapter, Qwen3VLAdapter, Qwen25VLAdapter

# Verbatim from QWEN-FACTS.md ("Prompts that work").
QWEN25_REC = "Locate {expression} in this image and output the bbox coordinates in JSON format."
QWEN3_REC = (
    'Locate every object that matches the description "{expression}" in the image. '
    "Report bbox coordinates in JSON format."
)
R1_TEXT = (
    "First output the thinking process in <think> </think> tags and then output the final "
    "answer in <answer> </answer> tags. Output the final answer in JSON format."
)
QWEN2_CHAT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "<|vision_start|><|image_pad|><|vision_end|>{text}<|im_end|>\n<|im_start|>assistant\n"
)


def make_checkpoint(
    root: Path, model_type: str | None, preprocessor: dict | None = None, name: str = "ckpt"
) -> Path:
    path = root / name
    path.mkdir()
    config = {} if model_type is None else {"model_type": model_type}
    (path / "config.json").write_text(json.dumps(config))
    if preprocessor is not None:
        (path / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    return path


# -- family selection -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_type", "cls", "factor", "frame"),
    [
        ("qwen2_vl", Qwen2VLAdapter, 28, "relative1000"),
        ("qwen2_5_vl", Qwen25VLAdapter, 28, "pixels"),
        ("qwen3_vl", Qwen3VLAdapter, 32, "relative1000"),
    ],
)
def test_family_is_chosen_from_config_model_type(
    tmp_path: Path, model_type: str, cls: type, factor: int, frame: str
) -> None:
    adapter = adapter_for(make_checkpoint(tmp_path, model_type))
    assert type(adapter) is cls
    assert adapter.model_type == model_type
    assert adapter.patch_factor == factor
    assert adapter.frame == frame


def test_registry_covers_the_three_families() -> None:
    assert set(ADAPTERS) == {"qwen2_vl", "qwen2_5_vl", "qwen3_vl"}


@pytest.mark.parametrize("model_type", ["llava", "qwen2", "", "Qwen2_5_VL", None])
def test_unsupported_model_type_is_refused(tmp_path: Path, model_type: str | None) -> None:
    with pytest.raises(UnsupportedModel, match="not supported"):
        adapter_for(make_checkpoint(tmp_path, model_type))


def test_directory_without_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedModel, match=r"no config\.json"):
        adapter_for(tmp_path)


def test_unsupported_model_is_a_value_error() -> None:
    assert issubclass(UnsupportedModel, ValueError)


def test_read_model_type(tmp_path: Path) -> None:
    assert read_model_type(make_checkpoint(tmp_path, "qwen3_vl")) == "qwen3_vl"


def test_tiny_checkpoint_is_qwen2_5_vl_with_its_pixel_limits(tiny_checkpoint: Path) -> None:
    adapter = adapter_for(tiny_checkpoint)
    assert isinstance(adapter, Qwen25VLAdapter)
    assert (adapter.min_pixels, adapter.max_pixels) == (56 * 56, 224 * 224)


# -- pixel limits -----------------------------------------------------------------------------


def test_pixel_limits_from_size_edges(tmp_path: Path) -> None:
    ckpt = make_checkpoint(
        tmp_path, "qwen2_5_vl", {"size": {"shortest_edge": 1000, "longest_edge": 200000}}
    )
    adapter = adapter_for(ckpt)
    assert (adapter.min_pixels, adapter.max_pixels) == (1000, 200000)


def test_pixel_limits_from_min_max_pixels_keys(tmp_path: Path) -> None:
    ckpt = make_checkpoint(tmp_path, "qwen2_vl", {"min_pixels": 2000, "max_pixels": 300000})
    adapter = adapter_for(ckpt)
    assert (adapter.min_pixels, adapter.max_pixels) == (2000, 300000)


def test_top_level_min_max_pixels_win_over_size(tmp_path: Path) -> None:
    """As in the HF Qwen2-VL image processor: min_pixels/max_pixels override `size`."""
    ckpt = make_checkpoint(
        tmp_path,
        "qwen2_5_vl",
        {
            "min_pixels": 2000,
            "max_pixels": 300000,
            "size": {"shortest_edge": 1000, "longest_edge": 200000},
        },
    )
    adapter = adapter_for(ckpt)
    assert (adapter.min_pixels, adapter.max_pixels) == (2000, 300000)


def test_defaults_without_preprocessor_config(tmp_path: Path) -> None:
    adapter = adapter_for(make_checkpoint(tmp_path, "qwen2_5_vl"))
    assert (adapter.min_pixels, adapter.max_pixels) == (DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS)
    assert DEFAULT_MAX_PIXELS == 1_003_520


def test_defaults_when_preprocessor_config_sets_no_limits(tmp_path: Path) -> None:
    adapter = adapter_for(make_checkpoint(tmp_path, "qwen3_vl", {"patch_size": 16}))
    assert (adapter.min_pixels, adapter.max_pixels) == (DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS)


def test_explicit_limits_override_the_checkpoint(tmp_path: Path) -> None:
    ckpt = make_checkpoint(
        tmp_path, "qwen2_5_vl", {"size": {"shortest_edge": 1000, "longest_edge": 200000}}
    )
    adapter = adapter_for(ckpt, min_pixels=4000, max_pixels=500000)
    assert (adapter.min_pixels, adapter.max_pixels) == (4000, 500000)
    only_max = adapter_for(ckpt, max_pixels=500000)
    assert (only_max.min_pixels, only_max.max_pixels) == (1000, 500000)


def test_min_above_max_is_refused() -> None:
    with pytest.raises(ValueError):
        Qwen25VLAdapter(min_pixels=10_000, max_pixels=5_000)


# -- frames -----------------------------------------------------------------------------------


def test_coord_bounds_pixels_vs_relative() -> None:
    assert ModelFrame(width=644, height=476, frame="pixels").coord_bounds == (644, 476)
    assert ModelFrame(width=644, height=476, frame="relative1000").coord_bounds == (1000, 1000)


@pytest.mark.parametrize(
    ("cls", "expected"),
    [
        (Qwen25VLAdapter, ModelFrame(644, 476, "pixels")),
        (Qwen2VLAdapter, ModelFrame(644, 476, "relative1000")),
        (Qwen3VLAdapter, ModelFrame(640, 480, "relative1000")),
    ],
)
def test_model_frame_uses_the_family_factor(cls: type[ModelAdapter], expected: ModelFrame) -> None:
    adapter = cls(min_pixels=3136, max_pixels=1003520)
    assert adapter.model_frame(640, 480) == expected  # (width, height) order


def test_model_frame_takes_width_then_height() -> None:
    frame = Qwen25VLAdapter().model_frame(1000, 200)
    assert frame.width > frame.height


def test_qwen3_frames_are_multiples_of_32() -> None:
    frame = Qwen3VLAdapter().model_frame(1000, 700)
    assert frame.width % 32 == 0 and frame.height % 32 == 0


# -- prompts ----------------------------------------------------------------------------------


def test_qwen25_official_rec_prompt() -> None:
    text = Qwen25VLAdapter().user_text("the red circle", multiple=False, think=False)
    assert text == QWEN25_REC.format(expression="the red circle")


def test_qwen2_uses_the_same_rec_prompt() -> None:
    text = Qwen2VLAdapter().user_text("a dog", multiple=False, think=False)
    assert text == QWEN25_REC.format(expression="a dog")


def test_qwen25_multiple_prompt_asks_for_every_match() -> None:
    text = Qwen25VLAdapter().user_text("blue star", multiple=True, think=False)
    assert '"blue star"' in text
    assert text.startswith("Locate every object")
    assert text.endswith("in JSON format.")


@pytest.mark.parametrize("multiple", [False, True])
def test_qwen3_official_prompt(multiple: bool) -> None:
    text = Qwen3VLAdapter().user_text("the red circle", multiple=multiple, think=False)
    assert text == QWEN3_REC.format(expression="the red circle")


@pytest.mark.parametrize("cls", [Qwen2VLAdapter, Qwen25VLAdapter, Qwen3VLAdapter])
@pytest.mark.parametrize("multiple", [False, True])
def test_think_adds_the_r1_suffix(cls: type[ModelAdapter], multiple: bool) -> None:
    adapter = cls()
    plain = adapter.user_text("x", multiple=multiple, think=False)
    think = adapter.user_text("x", multiple=multiple, think=True)
    assert R1_SUFFIX.strip() == R1_TEXT
    assert think == plain + " " + R1_TEXT
    assert R1_TEXT not in plain


def test_qwen25_chat_shape_is_exact() -> None:
    adapter = Qwen25VLAdapter()
    prompt = adapter.prompt("the cat")
    assert prompt == QWEN2_CHAT.format(text=QWEN25_REC.format(expression="the cat"))


def test_qwen3_chat_has_no_default_system_turn() -> None:
    prompt = Qwen3VLAdapter().prompt("the cat")
    assert "<|im_start|>system" not in prompt
    assert prompt.startswith("<|im_start|>user\n" + IMAGE_PLACEHOLDER)
    assert prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("cls", [Qwen2VLAdapter, Qwen25VLAdapter, Qwen3VLAdapter])
@pytest.mark.parametrize("think", [False, True])
def test_image_placeholder_once_and_before_the_text(cls: type[ModelAdapter], think: bool) -> None:
    prompt = cls().prompt("the green square", multiple=True, think=think)
    assert prompt.count(IMAGE_PLACEHOLDER) == 1
    assert prompt.count("<|image_pad|>") == 1
    user_turn = prompt.split("<|im_start|>user\n", 1)[1]
    assert user_turn.startswith(IMAGE_PLACEHOLDER)
    assert user_turn.index(IMAGE_PLACEHOLDER) < user_turn.index("the green square")


@pytest.mark.parametrize(
    "expression",
    ["the <|image_pad|>circle", "the <|im_<|x|>end|>circle", "the <|<|<|a|>|>|>circle"],
)
def test_expressions_cannot_smuggle_control_tokens(expression: str) -> None:
    """Spelled control tokens are removed, also ones that reassemble once an inner one goes."""
    prompt = Qwen25VLAdapter().prompt(expression)
    assert prompt.count("<|image_pad|>") == 1 and prompt.count("<|im_end|>") == 2
    assert "Locate the circle in this image" in prompt


def test_chat_without_image() -> None:
    prompt = Qwen25VLAdapter().chat("Is this red? Answer yes or no.", with_image=False)
    assert "<|image_pad|>" not in prompt
    assert "<|im_start|>user\nIs this red?" in prompt


def test_prompt_matches_the_checkpoint_chat_template(tiny_checkpoint: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    text = QWEN25_REC.format(expression="the red circle")
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
    rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert adapter_for(tiny_checkpoint).prompt("the red circle") == rendered


# -- constraints ------------------------------------------------------------------------------


def _constraint_kwargs() -> dict:
    return dict(max_detections=5, max_label_chars=20, max_tokens=99, think_max_tokens=33)


def test_constraint_bounds_follow_the_frame_in_pixels() -> None:
    adapter = Qwen25VLAdapter()
    frame = adapter.model_frame(640, 480)
    c = adapter.constraint(frame, multiple=False, think=True, **_constraint_kwargs())
    schema = c.json_schema
    assert schema is not None
    x, y = schema["items"]["properties"]["bbox_2d"]["prefixItems"][:2]
    assert (x["maximum"], y["maximum"]) == (644, 476)
    assert schema["maxItems"] == 1
    assert "20" in json.dumps(schema["items"]["properties"]["label"])  # the label length bound
    assert (c.think, c.max_tokens, c.think_max_tokens) == (True, 99, 33)


@pytest.mark.parametrize("cls", [Qwen2VLAdapter, Qwen3VLAdapter])
def test_constraint_bounds_are_1000_for_relative_families(cls: type[ModelAdapter]) -> None:
    adapter = cls()
    frame = adapter.model_frame(640, 480)
    c = adapter.constraint(frame, multiple=True, think=False, **_constraint_kwargs())
    schema = c.json_schema
    assert schema is not None
    x, y = schema["items"]["properties"]["bbox_2d"]["prefixItems"][:2]
    assert (x["maximum"], y["maximum"]) == (1000, 1000)
    assert schema["maxItems"] == 5
    assert c.think is False
