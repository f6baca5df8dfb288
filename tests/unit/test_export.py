"""`boxguard export` round trips: each format read back the way its consumer's loading code
reads it (LLaMA-Factory's ShareGPT converter, ms-swift's normalize_bbox, VLM-R1's grpo_rec)
gives the same boxes."""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import pytest
from boxguard.cli.commands import app
from boxguard.records import Record, RecordStore
from boxguard.records.examples import load_examples
from boxguard.records.export import export, read_llamafactory
from boxguard.server.models import ADAPTERS
from PIL import Image
from typer.testing import CliRunner

SIZE = (640, 480)
CAT, DOG = (100.0, 50.0, 300.0, 250.0), (400.0, 100.0, 600.0, 460.0)


def _png(color: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", SIZE, color).save(buf, "PNG")
    return buf.getvalue()


def _add(store: RecordStore, expression: str, status: str, candidates: list, color: str) -> int:
    """A record of the demo server (Qwen2.5-VL frame of a 640x480 image: 644x476)."""
    dets = [{"bbox": list(b), "label": "x", "confidence": 0.9} for b in candidates]
    return store.add(
        Record(
            request_id="r",
            model="m",
            frame="pixels",
            status=status,
            expression=expression,
            options={},
            raw_output="[]",
            timings={},
            image_sha256="",
            image_ext="png",
            verdict={
                "status": status,
                "detections": dets if status == "accepted" else [],
                "candidates": dets,
                "reasons": [] if status == "accepted" else ["x"],
            },
            image_width=SIZE[0],
            image_height=SIZE[1],
            model_width=644,
            model_height=476,
        ),
        _png(color),
    )


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """A store with a verified answer, a corrected box, an absent mark, an open abstention."""
    url = str(tmp_path / "store")
    store = RecordStore.open(url)
    _add(store, "the cat", "accepted", [CAT], "white")  # verified, unreviewed
    wrong = _add(store, "the dog", "abstained", [CAT], "white")
    store.set_review(wrong, {"decision": "box", "boxes": [list(DOG)]})
    ghost = _add(store, "the unicorn", "abstained", [DOG], "grey")
    store.set_review(ghost, {"decision": "absent", "boxes": []})
    _add(store, "the bird", "abstained", [CAT], "black")  # no truth yet: left out
    store.close()
    return url


TRUTH = {"the cat": [CAT], "the dog": [DOG], "the unicorn": []}


def _from_frame(box: list[int], image: Path, family: str) -> list[float]:
    """Original pixels of a box in the family's frame, as boxguard maps answers back."""
    width, height = Image.open(image).size
    if family == "qwen2_5_vl":
        frame = ADAPTERS[family]().model_frame(width, height)
        sx, sy = width / frame.width, height / frame.height
    else:
        sx, sy = width / 1000, height / 1000
    return [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy]


def _close(a: list[float], b: tuple[float, ...], tol: float) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_llamafactory_round_trip(store_url: str, tmp_path: Path, family: str) -> None:
    out = tmp_path / "lf"
    summary = export(load_examples(store_url), out, "llamafactory", family=family)  # type: ignore[arg-type]
    assert summary.rows == {"train": 3}
    rows = read_llamafactory(out)["boxguard_train"]
    for row in rows:
        question = row["messages"][0]["content"]
        expression = next(e for e in TRUTH if e in question)
        answer = json.loads(row["messages"][1]["content"])
        boxes = [_from_frame(a["bbox_2d"], out / row["images"][0], family) for a in answer]
        assert len(boxes) == len(TRUTH[expression])
        assert all(_close(b, t, 2.0) for b, t in zip(boxes, TRUTH[expression], strict=True))
    assert any(row["messages"][1]["content"] == "[]" for row in rows)  # an explicit no-target


def test_dpo_pairs_the_truth_with_the_wrong_answer(store_url: str, tmp_path: Path) -> None:
    out = tmp_path / "dpo"
    summary = export(load_examples(store_url), out, "dpo")
    assert summary.rows == {"train": 2} and summary.skipped == {"the model's answer was right": 1}
    rows = read_llamafactory(out)["boxguard_train"]
    by_expr = {next(e for e in TRUTH if e in r["messages"][0]["content"]): r for r in rows}
    assert set(by_expr) == {"the dog", "the unicorn"}
    assert by_expr["the unicorn"]["chosen"]["content"] == "[]"
    rejected = json.loads(by_expr["the dog"]["rejected"]["content"])[0]["bbox_2d"]
    image = out / by_expr["the dog"]["images"][0]
    assert _close(_from_frame(rejected, image, "qwen2_5_vl"), CAT, 2.0)


def _swift_normalize(row: dict, norm_bbox: str) -> str:
    """ms-swift's Template.normalize_bbox + replace_bbox: objects in real pixels, scaled to
    norm1000 or to the loaded image, each `<bbox>` replaced by `[x1, y1, x2, y2]`."""
    objects = row.get("objects", {"bbox": []})
    assert objects.get("bbox_type", "real") == "real"
    width, height = Image.open(row["images"][0]).size
    content = row["messages"][1]["content"]
    for bbox in objects["bbox"]:
        norm = (1000, 1000) if norm_bbox == "norm1000" else (width, height)
        values = [int(round(v / (width, height)[i % 2] * norm[i % 2])) for i, v in enumerate(bbox)]
        content = content.replace("<bbox>", f"[{', '.join(map(str, values))}]", 1)
    return content


@pytest.mark.parametrize("norm_bbox", ["norm1000", "none"])
def test_swift_round_trip(store_url: str, tmp_path: Path, norm_bbox: str) -> None:
    out = tmp_path / "swift"
    export(load_examples(store_url), out, "swift")
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    for row in rows:
        expression = next(e for e in TRUTH if e in row["messages"][0]["content"])
        answer = json.loads(_swift_normalize(row, norm_bbox))
        scale = (SIZE[0] / 1000, SIZE[1] / 1000) if norm_bbox == "norm1000" else (1, 1)
        boxes = [[v * scale[i % 2] for i, v in enumerate(a["bbox_2d"])] for a in answer]
        assert len(boxes) == len(TRUTH[expression])
        assert all(_close(b, t, 1.0) for b, t in zip(boxes, TRUTH[expression], strict=True))


def test_vlm_r1_round_trip_and_its_iou_reward(store_url: str, tmp_path: Path) -> None:
    out = tmp_path / "r1"
    export(load_examples(store_url), out, "vlm-r1")
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    for row in rows:
        # grpo_rec.LazySupervisedDataset.__getitem__: image_root joined to example['image'].
        assert os.path.exists(os.path.join(out, row["image"]))
        sol = json.loads(re.findall(r"<answer>(.*?)</answer>", row["solution"], re.DOTALL)[-1])
        truth = TRUTH[row["normal_caption"]]
        assert sol == ([round(v) for v in truth[0]] if truth else [])
        assert row["normal_caption"] in row["problem"] and "<think>" not in row["problem"]


def test_eval_report_source_and_split_by_image(tmp_path: Path) -> None:
    report = tmp_path / "eval"
    report.mkdir()
    rows = []
    for n in range(12):
        image = report / f"img{n}.png"
        Image.new("RGB", SIZE, (n * 20, 0, 0)).save(image)
        for expression, bbox in (("the cat", list(CAT)), ("the ghost", None)):
            rows.append(
                {
                    "id": f"{n}-{expression}",
                    "status": "abstained",
                    "expression": expression,
                    "image": str(image),
                    "bbox": bbox,
                    "candidates": [],
                    "detections": [],
                }
            )
    (report / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "lf"
    summary = export(load_examples(str(report)), out, "llamafactory", val_fraction=0.3)
    assert sum(summary.rows.values()) == 24 and set(summary.rows) == {"train", "val"}
    splits = read_llamafactory(out)
    train_images = {r["images"][0] for r in splits["boxguard_train"]}
    val_images = {r["images"][0] for r in splits["boxguard_val"]}
    assert not train_images & val_images  # both expressions of an image in one split


def test_the_cli_filters_reviewed_and_verified(store_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(
        app, ["export", store_url, "--out", str(tmp_path / "a"), "--reviewed-only"]
    )
    assert done.exit_code == 0, done.output
    assert "wrote 2 train" in done.output
    done = runner.invoke(
        app, ["export", store_url, "--out", str(tmp_path / "b"), "--verified-only"]
    )
    assert "wrote 1 train" in done.output
    missing = runner.invoke(
        app, ["export", str(tmp_path / "nope.db"), "--out", str(tmp_path / "c")]
    )
    assert missing.exit_code == 2


def test_the_cli_exports_only_the_errors(store_url: str, tmp_path: Path) -> None:
    """--errors-only keeps the corrections: the wrong box (dog) and the box for an absent thing
    (unicorn, taught as []); the verified cat was answered right."""
    out = tmp_path / "errors"
    done = CliRunner().invoke(app, ["export", store_url, "--out", str(out), "--errors-only"])
    assert done.exit_code == 0, done.output
    assert "wrote 2 train" in done.output
    assert "left out 1: the model's answer was right" in done.output
    rows = read_llamafactory(out)["boxguard_train"]
    answers = {next(e for e in TRUTH if e in r["messages"][0]["content"]): r for r in rows}
    assert set(answers) == {"the dog", "the unicorn"}
    assert answers["the unicorn"]["messages"][1]["content"] == "[]"


def test_the_reader_refuses_what_llamafactory_would(store_url: str, tmp_path: Path) -> None:
    out = tmp_path / "lf"
    export(load_examples(store_url), out, "llamafactory")
    rows = json.loads((out / "boxguard_train.json").read_text())
    rows[0]["messages"].reverse()
    (out / "boxguard_train.json").write_text(json.dumps(rows))
    with pytest.raises(ValueError, match="alternate"):
        read_llamafactory(out)
