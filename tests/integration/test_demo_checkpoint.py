"""The bundled demo checkpoint grounds a fixed scene through the real server, and the demo runs."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from boxguard.clients import Client  # noqa: E402
from boxguard.demo.cli import ground_rows, run_demo  # noqa: E402
from boxguard.demo.dataset import demo_scene  # noqa: E402
from boxguard.demo.readme import README, markdown  # noqa: E402
from boxguard.demo.scenes import generate_scene, render_scene  # noqa: E402
from boxguard.demo.vocab import COLORS, SHAPES  # noqa: E402
from boxguard.guards.geometry import iou  # noqa: E402
from boxguard.server.model_source import BUNDLED_CHECKPOINT  # noqa: E402
from PIL import Image  # noqa: E402

# Measured on the shipped checkpoint with its own policy: 4 of 24 absent objects accepted (with
# the re-check off, every one gets a box); 16 of 24 lone shapes found, 9 of them accepted.
MAX_ABSENT_ACCEPTED = 8

pytestmark = pytest.mark.skipif(
    not (BUNDLED_CHECKPOINT / "config.json").is_file(), reason="no bundled demo checkpoint"
)


@pytest.fixture(scope="module")
def demo_url() -> Iterator[str]:
    from boxguard.server.app import create_app
    from boxguard.server.settings import Settings
    from support import serve_in_thread

    with serve_in_thread(create_app(Settings())) as url:
        yield url


def test_default_model_is_the_bundled_demo_checkpoint(demo_url: str) -> None:
    with Client(demo_url) as client:
        assert client.ready().model == "boxguard-demo-shapes"


def test_bundled_checkpoint_answers_the_demo_scene_in_frame_with_the_asked_label(
    demo_url: str,
) -> None:
    # Localization is not asserted: the shipped checkpoint does not localize yet (README, Demo
    # world). What it has learned — the answer format and naming the asked-for object — is.
    scene, samples = demo_scene()
    image = render_scene(scene)
    boxed = 0
    with Client(demo_url) as client:
        for sample in samples:
            if sample.bbox is None:
                continue
            result = client.ground(image, sample.expression)
            top = result.top_candidate
            if top is None:  # this checkpoint sometimes answers [] (no object): a wrong answer
                continue
            boxed += 1
            x1, y1, x2, y2 = top.bbox
            assert 0 <= x1 <= x2 <= image.width and 0 <= y1 <= y2 <= image.height
            # Only forms that name the target alone: an ordinal omits its color and a relation
            # names two objects, which this checkpoint still mixes up.
            if sample.form in ("color_shape", "size"):
                assert top.label == sample.label, (sample.expression, top.label)
    assert boxed >= 3  # of 5 (measured: 4)


def test_bundled_checkpoint_localizes_a_lone_shape_in_original_pixels(demo_url: str) -> None:
    # The smoke set: 24 fixed scenes of varied sizes and aspect ratios, one large shape each.
    # The answer must land on it (IoU >= 0.5 in original-image pixels), which the best constant
    # box (2/24 here) or any slip in the frame mapping fails (16/24 measured); several shapes still
    # defeat this checkpoint (README, Demo world), so they are the full evaluation's job.
    hits: list[bool] = []
    accepted_hits: list[bool] = []
    with Client(demo_url) as client:
        for index in range(24):
            scene = generate_scene(random.Random(f"smoke/{index}"), max_objects=1, p_large=1.0)
            (target,) = scene.objects
            result = client.ground(render_scene(scene), f"the {target.color} {target.shape}")
            top = result.top_candidate
            hit = top is not None and iou(top.bbox, target.bbox) >= 0.5
            hits.append(hit)
            accepted_hits.append(hit and result.accepted)
    assert sum(hits) >= 12, hits
    # The re-check (on by default for this checkpoint) lets right boxes through.
    assert sum(accepted_hits) >= 5, accepted_hits


def test_the_bundled_checkpoint_serves_with_its_recommended_policy(demo_url: str) -> None:
    # boxguard_policy.json next to the checkpoint turns the visual re-check on by default.
    scene, samples = demo_scene()
    with Client(demo_url) as client:
        result = client.ground(render_scene(scene), samples[1].expression)
    assert result.top_candidate is not None
    visual = {c.name: c for c in result.checks}["visual_check"]
    assert visual.score is not None and "Is this a red circle?" in visual.detail


def absent_expressions(n: int) -> Iterator[tuple[Image.Image, str]]:
    """Fixed scenes of 2-4 shapes, each asked for a color and shape that it does not hold."""
    for index in range(n):
        rng = random.Random(f"absent/{index}")
        scene = generate_scene(rng, min_objects=2, max_objects=4)
        held = {(o.color, o.shape) for o in scene.objects}
        colors = {o.color for o in scene.objects}
        shapes = {o.shape for o in scene.objects}
        # Half ask for a held color in another shape, half for a held shape in another color.
        pairs = sorted(
            (c, s)
            for c in COLORS
            for s in SHAPES
            if (c, s) not in held and ((c in colors) if index % 2 else (s in shapes))
        )
        color, shape = rng.choice(pairs)
        yield render_scene(scene), f"the {color} {shape}"


def test_absent_objects_are_not_accepted(demo_url: str) -> None:
    # The grounder still answers a box for nearly every absent object; the re-check must not
    # let those boxes through.
    scene, samples = demo_scene()
    (absent,) = [s for s in samples if s.bbox is None]
    accepted = []
    with Client(demo_url) as client:
        demo = client.ground(render_scene(scene), absent.expression)
        assert not (demo.accepted and demo.detections), demo.checks
        for image, expression in absent_expressions(24):
            result = client.ground(image, expression)
            accepted.append(result.accepted and bool(result.detections))
    assert sum(accepted) <= MAX_ABSENT_ACCEPTED, accepted


def test_demo_command_grounds_through_a_real_server(tmp_path: Path) -> None:
    out = tmp_path / "demo.png"
    results = run_demo(out)
    _, samples = demo_scene()
    assert len(results) == len(samples) + 1
    assert out.is_file() and out.stat().st_size > 10_000
    # The last request tightens the policy: the guards must refuse it and say why.
    probe = results[-1]
    assert probe.abstained and any("confidence" in r for r in probe.reasons), probe.reasons
    # The blue square is in the scene; the checkpoint answers [] for it, which its policy
    # (accept_no_object false) must not accept as "no such object".
    blue_square = results[0]
    assert not (blue_square.accepted and not blue_square.detections), blue_square.checks


def test_the_readme_shows_what_the_demo_really_prints(demo_url: str) -> None:
    # The README's table is the shipped checkpoint's real output, regenerated when it ships.
    scene, samples = demo_scene()
    block = markdown(ground_rows(demo_url, render_scene(scene), samples))
    assert block in README.read_text(encoding="utf-8"), (
        "README.md's demo block is stale: run `python -m boxguard.demo.readme`\n" + block
    )
