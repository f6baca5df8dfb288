"""smart_resize: properties, the qwen-vl-utils reference algorithm, known values, refusals."""

from __future__ import annotations

import math

import pytest
from boxguard.server.models import AspectRatioError, resize_to_frame, smart_resize
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from PIL import Image

HF_MIN = 56 * 56
HF_MAX = 1280 * 28 * 28  # 1,003,520
FACTORS = (28, 32)


def reference_smart_resize(
    height: int, width: int, factor: int, min_pixels: int, max_pixels: int
) -> tuple[int, int]:
    """Written from the four steps in QWEN-FACTS.md, independently of server/models/resize.py."""
    if max(height, width) / min(height, width) > 200:
        raise AspectRatioError("too elongated")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@st.composite
def sizes(draw: st.DrawFn, max_side: int = 8000) -> tuple[int, int]:
    """(height, width) with aspect ratio at most 200."""
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(max(1, math.ceil(h / 200)), min(max_side, h * 200)))
    return h, w


@st.composite
def limits(draw: st.DrawFn, factor: int) -> tuple[int, int]:
    """(min_pixels, max_pixels) with min <= max and max at least one patch."""
    max_pixels = draw(st.integers(factor * factor, 16384 * factor * factor))
    min_pixels = draw(st.integers(1, max_pixels))
    return min_pixels, max_pixels


@pytest.mark.parametrize("factor", FACTORS)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_outputs_are_positive_multiples_of_factor(factor: int, data: st.DataObject) -> None:
    h, w = data.draw(sizes())
    lo, hi = data.draw(limits(factor))
    h_out, w_out = smart_resize(h, w, factor=factor, min_pixels=lo, max_pixels=hi)
    assert h_out % factor == 0 and w_out % factor == 0
    assert h_out >= factor and w_out >= factor


@pytest.mark.parametrize("factor", FACTORS)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_pixel_bounds_per_branch(factor: int, data: st.DataObject) -> None:
    """The exact invariants of the algorithm, branch by branch (step 2's rounded product)."""
    h, w = data.draw(sizes())
    lo, hi = data.draw(limits(factor))
    h_out, w_out = smart_resize(h, w, factor=factor, min_pixels=lo, max_pixels=hi)
    rounded = max(factor, round(h / factor) * factor) * max(factor, round(w / factor) * factor)
    product = h_out * w_out
    if rounded > hi:
        # Step 3: floor keeps the product under max unless a side was clamped up to `factor`.
        assert product <= hi or min(h_out, w_out) == factor
        if min(h_out, w_out) > factor:
            assert product <= hi
    elif rounded < lo:
        # Step 4: ceil reaches min (and may overshoot max when min is close to max).
        assert product >= lo
    else:
        assert lo <= product <= hi
        assert (h_out, w_out) == (
            max(factor, round(h / factor) * factor),
            max(factor, round(w / factor) * factor),
        )


@pytest.mark.parametrize("factor", FACTORS)
@settings(max_examples=100, deadline=None)
@given(hw=sizes())
def test_within_default_limits_for_ordinary_images(factor: int, hw: tuple[int, int]) -> None:
    """With the HF defaults and aspect ratio <= 50, the frame is always inside [min, max]."""
    h, w = hw
    assume(max(h, w) / min(h, w) <= 50)
    h_out, w_out = smart_resize(h, w, factor=factor, min_pixels=HF_MIN, max_pixels=HF_MAX)
    assert HF_MIN <= h_out * w_out <= HF_MAX


@pytest.mark.parametrize("factor", FACTORS)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_matches_reference_implementation(factor: int, data: st.DataObject) -> None:
    h, w = data.draw(sizes(max_side=20000))
    lo, hi = data.draw(limits(factor))
    expected = reference_smart_resize(h, w, factor, lo, hi)
    assert smart_resize(h, w, factor=factor, min_pixels=lo, max_pixels=hi) == expected


@pytest.mark.parametrize("factor", FACTORS)
@pytest.mark.parametrize(
    ("h", "w", "lo", "hi"),
    [(480, 640, HF_MIN, HF_MAX), (3000, 4000, HF_MIN, HF_MAX), (1, 200, 1, HF_MAX), (7, 9, 1, 1)],
)
def test_matches_reference_on_fixed_cases(factor: int, h: int, w: int, lo: int, hi: int) -> None:
    expected = reference_smart_resize(h, w, factor, lo, hi)
    assert smart_resize(h, w, factor=factor, min_pixels=lo, max_pixels=hi) == expected


@pytest.mark.parametrize(
    ("height", "expected"),
    [
        (42, 56),  # 42/28 = 1.5 -> round half to even -> 2
        (70, 56),  # 70/28 = 2.5 -> 2, not 3 (84)
        (98, 112),  # 3.5 -> 4
        (126, 112),  # 4.5 -> 4
        (43, 56),  # 1.54 -> 2
        (41, 28),  # 1.46 -> 1
    ],
)
def test_half_to_even_rounding_factor_28(height: int, expected: int) -> None:
    h_out, w_out = smart_resize(height, 280, factor=28, min_pixels=1, max_pixels=10**8)
    assert (h_out, w_out) == (expected, 280)


def test_half_to_even_rounding_factor_32() -> None:
    # 48/32 = 1.5 -> 2 -> 64; 80/32 = 2.5 -> 2 -> 64
    assert smart_resize(48, 320, factor=32, min_pixels=1, max_pixels=10**8) == (64, 320)
    assert smart_resize(80, 320, factor=32, min_pixels=1, max_pixels=10**8) == (64, 320)


def test_known_value_480x640() -> None:
    assert smart_resize(480, 640, factor=28, min_pixels=3136, max_pixels=1003520) == (476, 644)


def test_known_value_480x640_factor_32() -> None:
    assert smart_resize(480, 640, factor=32, min_pixels=3136, max_pixels=1003520) == (480, 640)


@pytest.mark.parametrize("factor", FACTORS)
def test_large_image_is_scaled_under_max_pixels(factor: int) -> None:
    h_out, w_out = smart_resize(3000, 4000, factor=factor, min_pixels=HF_MIN, max_pixels=HF_MAX)
    assert h_out * w_out <= HF_MAX
    assert h_out % factor == 0 and w_out % factor == 0
    # the aspect ratio survives to within one patch
    assert abs(w_out / h_out - 4 / 3) < 2 * factor / h_out
    # and it is not shrunk far more than needed
    assert h_out * w_out > HF_MAX * 0.85


@pytest.mark.parametrize("factor", FACTORS)
def test_small_image_is_scaled_up_to_min_pixels(factor: int) -> None:
    h_out, w_out = smart_resize(10, 12, factor=factor, min_pixels=HF_MIN, max_pixels=HF_MAX)
    assert h_out * w_out >= HF_MIN
    assert h_out % factor == 0 and w_out % factor == 0


@pytest.mark.parametrize(("h", "w"), [(1, 201), (201, 1), (2, 401), (10, 2001)])
def test_aspect_ratio_over_200_is_refused(h: int, w: int) -> None:
    with pytest.raises(AspectRatioError):
        smart_resize(h, w, factor=28, min_pixels=HF_MIN, max_pixels=HF_MAX)


@pytest.mark.parametrize(("h", "w"), [(1, 200), (200, 1), (28, 5600), (10, 2000)])
def test_aspect_ratio_of_exactly_200_is_accepted(h: int, w: int) -> None:
    h_out, w_out = smart_resize(h, w, factor=28, min_pixels=HF_MIN, max_pixels=HF_MAX)
    assert h_out % 28 == 0 and w_out % 28 == 0


def test_aspect_ratio_error_is_a_value_error() -> None:
    assert issubclass(AspectRatioError, ValueError)


@pytest.mark.parametrize(("h", "w"), [(0, 10), (10, 0), (-5, 10)])
def test_non_positive_size_is_refused(h: int, w: int) -> None:
    with pytest.raises(ValueError):
        smart_resize(h, w, factor=28, min_pixels=HF_MIN, max_pixels=HF_MAX)


def test_resize_to_frame_keeps_an_image_already_on_the_frame() -> None:
    image = Image.new("RGB", (56, 28))
    assert resize_to_frame(image, (56, 28)) is image


def test_resize_to_frame_gives_exactly_the_frame_size() -> None:
    image = Image.new("RGB", (640, 480), "red")
    out = resize_to_frame(image, (644, 476))
    assert out.size == (644, 476)
    assert out.getpixel((300, 200)) == (255, 0, 0)
