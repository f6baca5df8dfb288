"""The frame the gateway sends upstream: lossless, BMP for vLLM's forms, PNG for the generic one."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from boxguard.server.backends.openai_translate import CONSTRAINT_FORMS, image_data_url
from PIL import Image


@pytest.mark.parametrize("form", CONSTRAINT_FORMS)
def test_the_upstream_sees_the_exact_pixels(form: str) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    url = image_data_url(Image.fromarray(pixels, "RGB"), form)  # type: ignore[arg-type]
    head, payload = url.split(",", 1)
    fmt = "PNG" if form == "response_format" else "BMP"
    assert head == f"data:image/{fmt.lower()};base64"
    # As vLLM's media loader opens it: PIL, restricted to an allowlist of formats.
    decoded = Image.open(io.BytesIO(base64.b64decode(payload)), formats=[fmt])
    assert decoded.mode == "RGB"
    assert np.array_equal(np.asarray(decoded), pixels)
