"""The server's shipped playground samples are what the demo world renders today."""

from __future__ import annotations

import io

from boxguard.demo.playground_samples import INDEX, SAMPLES, SAMPLES_DIR, sample_files
from PIL import Image


def test_the_shipped_samples_are_what_regenerating_writes() -> None:
    fresh = sample_files()
    shipped = {path.name for path in SAMPLES_DIR.iterdir()}
    assert shipped == set(fresh), "run: python -m boxguard.demo.playground_samples"
    assert (SAMPLES_DIR / INDEX).read_bytes() == fresh[INDEX]
    for sample in SAMPLES:
        name = f"{sample.name}.png"
        # Pixels, not PNG bytes: another zlib build compresses the same image differently.
        old = Image.open(SAMPLES_DIR / name)
        new = Image.open(io.BytesIO(fresh[name]))
        assert (old.mode, old.size) == (new.mode, new.size), name
        assert old.tobytes() == new.tobytes(), f"{name} is stale: regenerate the samples"
