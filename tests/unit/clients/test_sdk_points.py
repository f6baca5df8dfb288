"""Points in the SDK and the CLI: client.point, boxguard point, eval --output point."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from boxguard.cli import commands as cli
from boxguard.cli import common as cli_common
from boxguard.clients import Client
from boxguard.clients.async_ import AsyncClient
from boxguard.clients.datasets import Sample
from boxguard.clients.evaluation import score_sample
from boxguard.clients.results import GroundResult
from sdk_fakes import TRUTH, FakeServer, ok, png_bytes, write_vlm_r1_log
from typer.testing import CliRunner

POINT_BODY = {
    "id": "r1",
    "status": "accepted",
    "model": "m",
    "image": {"width": 64, "height": 48},
    "detections": [{"point": [20.5, 30.0], "label": "search button", "confidence": 0.9}],
    "candidates": [{"point": [20.5, 30.0], "label": "search button", "confidence": 0.9}],
}


def test_client_point_sends_output_point_and_reads_points() -> None:
    fake = FakeServer(ok(POINT_BODY))
    with Client("http://test", transport=fake.transport()) as client:
        result = client.point(png_bytes(), "the search button")
        client.ground(png_bytes(), "the search button")
    assert fake.bodies[0]["output"] == "point"
    assert "output" not in fake.bodies[1]  # box requests look as before points existed
    assert result.points == [[20.5, 30.0]] and result.boxes == []
    assert result.to_coco(1)[0]["keypoints"] == [20.5, 30.0, 2]
    assert result.draw(png_bytes()).size == (64, 48)


async def test_async_client_point() -> None:
    fake = FakeServer(ok(POINT_BODY))
    async with AsyncClient("http://test", transport=httpx.MockTransport(fake)) as client:
        result = await client.point(png_bytes(), "the search button")
    assert fake.bodies[0]["output"] == "point" and result.top is not None
    assert result.top.point == (20.5, 30.0)


def test_point_in_box_scoring() -> None:
    result = GroundResult.model_validate(POINT_BODY)
    inside = score_sample(Sample("a", Path("a.png"), "x", (10, 20, 30, 40)), result)
    outside = score_sample(Sample("b", Path("b.png"), "x", (0, 0, 10, 10)), result)
    assert (inside.correct, inside.iou) == (True, 1.0)
    assert (outside.correct, outside.iou) == (False, 0.0)
    absent = GroundResult.model_validate(
        {**POINT_BODY, "status": "abstained", "detections": [], "reasons": ["cardinality"]}
    )
    assert score_sample(Sample("c", Path("c.png"), "x", None), absent).correct


def test_cli_point(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = FakeServer(ok(POINT_BODY))
    monkeypatch.setattr(cli_common, "transport", fake.transport())
    image = tmp_path / "screen.png"
    image.write_bytes(png_bytes())
    res = CliRunner().invoke(cli.app, ["point", str(image), "the search button"])
    assert res.exit_code == 0, res.output
    assert "20.5" in res.output and "30.0" in res.output and "x1" not in res.output
    sent = fake.requests[0].content  # a file goes as multipart
    assert b'name="output"' in sent and b"point" in sent


def test_cli_eval_outputs_scores_points(tmp_path: Path) -> None:
    x, y = (TRUTH[0] + TRUTH[2]) / 2, (TRUTH[1] + TRUTH[3]) / 2
    rows = [
        ("the car", f'[{{"point_2d": [{x:g}, {y:g}], "label": "car"}}]'),
        ("the car", f'[{{"bbox_2d": [{x:g}, {y:g}], "label": "car"}}]'),  # GRPO's two numbers
        ("the car", '[{"point_2d": [1, 1], "label": "car"}]'),
    ]
    log = write_vlm_r1_log(tmp_path / "l.json.gz", rows)
    args = ["eval", "--outputs", str(log), "--json", "--output", "point"]
    res = CliRunner().invoke(cli.app, [*args, "--policy", '{"label_embeddings": false}'])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["raw_accuracy"] == pytest.approx(2 / 3) and summary["parse_rate"] == 1.0
    assert summary["options"]["output"] == "point"
