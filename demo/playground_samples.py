"""The playground's sample scenes, rendered from the shapes world into the server's static files.

The server ships the PNGs and `samples.json` as plain files, so it never imports the demo.
Regenerate them after changing a scene here:

    python -m boxguard.demo.playground_samples

Example:
    >>> [sample.name for sample in SAMPLES]
    ['five-shapes', 'one-circle', 'stars']
"""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from .dataset import demo_scene
from .scenes import Background, Scene, make_object, render_scene

SAMPLES_DIR = Path(str(files("boxguard.server"))) / "static" / "samples"
INDEX = "samples.json"  # name, title and suggested expressions of each scene, in page order

_PAPER = Background("plain", (246, 245, 240))


def _lone_circle() -> Scene:
    """One large shape: what the bundled demo checkpoint localizes best."""
    return Scene(400, 300, _PAPER, (make_object("circle", "red", "large", 230, 140, 120),))


def _three_stars() -> Scene:
    """Three stars and a distractor, for the `multiple` toggle."""
    objects = (
        make_object("star", "orange", "large", 90, 100, 90),
        make_object("star", "orange", "large", 300, 90, 90),
        make_object("star", "orange", "small", 200, 230, 60),
        make_object("square", "purple", "large", 380, 240, 80),
    )
    return Scene(460, 320, _PAPER, objects)


def _five_shapes() -> Scene:
    """The fixed scene of `boxguard demo`."""
    return demo_scene()[0]


@dataclass(frozen=True)
class SampleScene:
    """A scene the page offers and the expressions it suggests for it."""

    name: str
    title: str
    build: Callable[[], Scene]
    expressions: tuple[str, ...]  # the first is filled in when the scene is picked


SAMPLES = (
    SampleScene(
        "five-shapes",
        "Five shapes",
        _five_shapes,
        tuple(sample.expression for sample in demo_scene()[1]),
    ),
    SampleScene("one-circle", "One circle", _lone_circle, ("the red circle", "the blue square")),
    SampleScene("stars", "Stars", _three_stars, ("the orange stars", "the small orange star")),
)


def sample_files() -> dict[str, bytes]:
    """Each file of the samples folder (file name to bytes), rendered now."""
    out: dict[str, bytes] = {}
    for sample in SAMPLES:
        buffer = io.BytesIO()
        render_scene(sample.build()).save(buffer, format="PNG", optimize=True)
        out[f"{sample.name}.png"] = buffer.getvalue()
    index = [
        {"name": s.name, "title": s.title, "expressions": list(s.expressions)} for s in SAMPLES
    ]
    out[INDEX] = (json.dumps(index, indent=2) + "\n").encode()
    return out


def write_samples(folder: Path = SAMPLES_DIR) -> list[Path]:
    """Write the sample PNGs and their index into `folder`; returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in sample_files().items():
        (folder / name).write_bytes(data)
        written.append(folder / name)
    return written


def main(argv: list[str] | None = None) -> None:
    """CLI: regenerate the server's playground samples (or write them to --out)."""
    ap = argparse.ArgumentParser(description="Render the playground's sample scenes.")
    ap.add_argument("--out", type=Path, default=SAMPLES_DIR, help="folder (default: the server's)")
    for path in write_samples(ap.parse_args(argv).out):
        print(path)


if __name__ == "__main__":
    main()
