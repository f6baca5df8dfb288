"""Deterministic train/val/test splits: in-memory iterators and JSONL + PNG export."""

from __future__ import annotations

import argparse
import json
import math
import random
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from .expressions import Sample, generate_expressions, make_sample
from .scenes import (
    SHIFTED_STYLE,
    TRAIN_STYLE,
    Background,
    Scene,
    SceneStyle,
    generate_scene,
    make_object,
    render_scene,
)
from .vocab import NO_TARGET_RATE

SPLITS: tuple[str, ...] = ("train", "val", "test")
# A second scene distribution, never trained on: evaluation only (``SHIFTED_STYLE``, 2-6 shapes).
SHIFTED = "shifted"
SHIFTED_MIN_OBJECTS = 2


def scene_rng(seed: int, split: str, index: int) -> random.Random:
    """Independent RNG for image ``index`` of ``split``; streams never overlap across splits."""
    if split not in (*SPLITS, SHIFTED):
        raise ValueError(f"split must be one of {(*SPLITS, SHIFTED)}, got {split!r}")
    return random.Random(f"boxguard-demo/{int(seed)}/{split}/{int(index)}")


def split_style(split: str) -> SceneStyle:
    """The scene distribution of a split: the shifted one for ``shifted``, else training's."""
    return SHIFTED_STYLE if split == SHIFTED else TRAIN_STYLE


def iter_scenes(
    split: str,
    seed: int = 0,
    *,
    n_images: int | None = None,
    start: int = 0,
    fixed_size: tuple[int, int] | None = None,
    min_objects: int = 1,
    max_objects: int = 6,
    expressions_per_image: int = 1,
    no_target_rate: float = NO_TARGET_RATE,
    p_large: float = 0.4,
) -> Iterator[tuple[Scene, Image.Image, list[Sample]]]:
    """Yield (scene, rendered image, samples) per image; endless when ``n_images`` is None."""
    index = start
    style = split_style(split)
    if split == SHIFTED:
        min_objects = max(min_objects, SHIFTED_MIN_OBJECTS)
        max_objects = max(max_objects, min_objects)
    while n_images is None or index < start + n_images:
        rng = scene_rng(seed, split, index)
        scene = generate_scene(
            rng,
            min_objects=min_objects,
            max_objects=max_objects,
            fixed_size=fixed_size,
            p_large=p_large,
            style=style,
        )
        samples = generate_expressions(scene, rng, expressions_per_image, no_target_rate)
        yield scene, render_scene(scene), samples
        index += 1


def iter_samples(
    split: str,
    seed: int = 0,
    *,
    n: int | None = None,
    start: int = 0,
    fixed_size: tuple[int, int] | None = None,
    min_objects: int = 1,
    max_objects: int = 6,
    expressions_per_image: int = 1,
    no_target_rate: float = NO_TARGET_RATE,
    p_large: float = 0.4,
) -> Iterator[tuple[Image.Image, Sample]]:
    """Yield (PIL image, sample) pairs without touching disk; endless when ``n`` is None.

    Images with several expressions yield the same image object once per expression.
    ``start`` is an image index, so workers can shard with disjoint ``start`` ranges.
    """
    count = 0
    for _, image, samples in iter_scenes(
        split,
        seed,
        start=start,
        fixed_size=fixed_size,
        min_objects=min_objects,
        max_objects=max_objects,
        expressions_per_image=expressions_per_image,
        no_target_rate=no_target_rate,
        p_large=p_large,
    ):
        for sample in samples:
            if n is not None and count >= n:
                return
            yield image, sample
            count += 1


def build_split(
    split: str,
    n: int,
    seed: int,
    out_dir: str | Path,
    *,
    expressions_per_image: int = 1,
    fixed_size: tuple[int, int] | None = None,
    min_objects: int = 1,
    max_objects: int = 6,
    no_target_rate: float = NO_TARGET_RATE,
    with_meta: bool = True,
) -> Path:
    """Write ``n`` samples of ``split`` as PNGs + ``{split}.jsonl``; returns the JSONL path.

    The JSONL holds exactly {"id", "image", "expression", "bbox"}; "image" is relative to the
    JSONL file and "bbox" is [x1, y1, x2, y2] (exclusive x2/y2) or null. With ``with_meta``,
    ``{split}.meta.jsonl`` adds label, think trace, form, target index and image size per id.
    """
    out = Path(out_dir)
    img_dir = out / "images" / split
    img_dir.mkdir(parents=True, exist_ok=True)
    jsonl = out / f"{split}.jsonl"
    n_images = math.ceil(n / expressions_per_image) if n > 0 else 0
    written = 0
    with (
        jsonl.open("w", encoding="utf-8") as fh,
        (
            (out / f"{split}.meta.jsonl").open("w", encoding="utf-8") if with_meta else _NullFile()
        ) as meta,
    ):
        scenes = iter_scenes(
            split,
            seed,
            n_images=n_images,
            fixed_size=fixed_size,
            min_objects=min_objects,
            max_objects=max_objects,
            expressions_per_image=expressions_per_image,
            no_target_rate=no_target_rate,
        )
        for index, (scene, image, samples) in enumerate(scenes):
            name = f"{split}-{index:06d}.png"
            image.save(img_dir / name, format="PNG")
            rel = f"images/{split}/{name}"
            for k, sample in enumerate(samples):
                if written >= n:
                    break
                sid = f"{split}-{index:06d}-{k}"
                fh.write(json.dumps(sample.record(sid, rel)) + "\n")
                meta.write(
                    json.dumps(
                        {
                            "id": sid,
                            "label": sample.label,
                            "think": sample.think,
                            "form": sample.form,
                            "target": sample.target,
                            "width": scene.width,
                            "height": scene.height,
                        }
                    )
                    + "\n"
                )
                written += 1
    return jsonl


class _NullFile:
    """Context manager that swallows writes (used when meta output is disabled)."""

    def __enter__(self) -> _NullFile:
        """Enter the context."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Leave the context."""

    def write(self, text: str) -> int:
        """Discard ``text``."""
        return len(text)


def demo_scene() -> tuple[Scene, list[Sample]]:
    """A fixed 448x320 scene plus expressions (one per form, incl. a no-target one)."""
    objects = (
        make_object("circle", "red", "large", 90, 110, 104),
        make_object("square", "blue", "large", 220, 110, 100),
        make_object("star", "green", "small", 370, 90, 56),
        make_object("circle", "red", "small", 330, 232, 52),
        make_object("triangle", "yellow", "small", 120, 250, 56),
    )
    scene = Scene(448, 320, Background("plain", (246, 245, 240)), objects)
    samples = [
        make_sample(scene, "the blue square", 1, "color_shape"),
        make_sample(scene, "the red circle left of the blue square", 0, "relation"),
        make_sample(scene, "the small red circle", 3, "size"),
        make_sample(scene, "the rightmost circle", 3, "ordinal"),
        make_sample(scene, "the green star", 2, "color_shape"),
        make_sample(scene, "the purple hexagon", None, "absent", absent="purple hexagon"),
    ]
    return scene, samples


def main(argv: list[str] | None = None) -> None:
    """CLI: write one or more splits, e.g. ``python -m boxguard.demo.dataset --out data``."""
    ap = argparse.ArgumentParser(description="Generate the synthetic shapes grounding data.")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument(
        "--splits",
        nargs="+",
        default=list(SPLITS),
        choices=(*SPLITS, SHIFTED),
        help=f"{SHIFTED!r}: the second scene distribution (evaluation only)",
    )
    ap.add_argument("--n", type=int, default=500, help="samples per split")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--expressions-per-image", type=int, default=1)
    args = ap.parse_args(argv)
    for split in args.splits:
        path = build_split(
            split, args.n, args.seed, args.out, expressions_per_image=args.expressions_per_image
        )
        print(path)


if __name__ == "__main__":
    main()

__all__ = [
    "SHIFTED",
    "SPLITS",
    "build_split",
    "demo_scene",
    "iter_samples",
    "iter_scenes",
    "main",
    "scene_rng",
    "split_style",
]
