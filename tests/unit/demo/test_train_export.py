"""The demo trainer reading a `boxguard export`: rows become the server's prompt and the truth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from boxguard.cli.commands import app  # noqa: E402
from boxguard.demo.dataset import iter_samples  # noqa: E402
from boxguard.demo.expressions import Sample  # noqa: E402
from boxguard.demo.train_data import IGNORE, IM_END, IMAGE_PAD, Encoder, frame_box  # noqa: E402
from boxguard.demo.train_export import ExportRow, ExtraRows, read_rows, to_example  # noqa: E402
from PIL import Image  # noqa: E402
from typer.testing import CliRunner  # noqa: E402


@pytest.fixture(scope="module")
def encoder(tiny_checkpoint: Path) -> Encoder:
    return Encoder(tiny_checkpoint, digit_weight=4.0, decision_weight=3.0)


def _scenes() -> tuple[tuple[Image.Image, Sample], tuple[Image.Image, Sample]]:
    """A demo sample with a target and one without."""
    pairs = list(iter_samples("train", seed=5, n=40))
    target = next(p for p in pairs if p[1].bbox is not None)
    absent = next(p for p in pairs if p[1].bbox is None)
    return target, absent


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory, encoder: Encoder) -> Path:
    """An eval report (a wrong box, a box for an absent thing, a right box) exported as
    `boxguard export --errors-only` in the checkpoint's frame."""
    root = tmp_path_factory.mktemp("flywheel")
    (target_image, target), (absent_image, absent) = _scenes()
    rows = []
    for name, image, sample, answer in (
        ("wrong", target_image, target, [0, 0, 4, 4]),
        ("ghost", absent_image, absent, [0, 0, 9, 9]),
        ("right", target_image, target, target.bbox),
    ):
        image.save(root / f"{name}.png")
        candidates = [{"bbox": list(answer)}]
        rows.append(
            {
                **sample.record(name, str(root / f"{name}.png")),
                "status": "abstained",
                "candidates": candidates,
                "detections": [],
            }
        )
    (root / "eval").mkdir()
    (root / "eval/samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = root / "export"
    pixels = str(encoder.adapter.max_pixels)
    args = ["export", str(root / "eval"), "--out", str(out), "--errors-only"]
    done = CliRunner().invoke(app, [*args, "--max-pixels", pixels])
    assert done.exit_code == 0, done.output
    return out


def test_an_exported_row_is_the_servers_prompt_and_the_truth_as_target(
    export_dir: Path, encoder: Encoder
) -> None:
    (image, target), _ = _scenes()
    row = next(r for r in read_rows(export_dir) if r.answer != "[]")
    batch = encoder.encode([to_example(row, encoder)])
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    prompt_ids = ids[(labels == IGNORE) & (batch["attention_mask"][0] == 1)].tolist()
    # The server's prompt for the same request, its image placeholder expanded as HFEngine does.
    n_image = int((ids == encoder.image_token_id).sum())
    server = encoder.adapter.prompt(target.expression).replace(IMAGE_PAD, IMAGE_PAD * n_image, 1)
    assert prompt_ids == encoder.tokenizer(server, add_special_tokens=False)["input_ids"]
    answer = encoder.tokenizer.decode(ids[labels != IGNORE])
    assert answer.endswith(IM_END)
    [item] = json.loads(answer.removesuffix(IM_END))
    frame = encoder.adapter.model_frame(*image.size)
    truth = frame_box(target.bbox, image.size, (frame.width, frame.height))
    assert item["label"] == target.expression
    assert all(abs(a - b) <= 1 for a, b in zip(item["bbox_2d"], truth, strict=True))
    # Weighted as a grounding answer: the decision token, then heavier coordinate digits.
    weights = batch["weights"][0][labels != IGNORE]
    assert float(weights[0]) == 3.0 and 4.0 in weights.tolist()
    assert batch["box_target"].unique(dim=0).tolist() == [[float(v) for v in item["bbox_2d"]]]


def test_the_errors_alone_are_read_and_an_absent_thing_is_taught_as_empty(
    export_dir: Path, encoder: Encoder
) -> None:
    extra = ExtraRows(export_dir, "llamafactory", encoder, per_step=3)
    assert extra.counts() == {"rows": 2, "box": 1, "empty": 1}
    step = extra.for_step(5)
    assert len(step) == 3 and {ex.questions[0].answer == "[]" for ex in step} == {True, False}
    empty = next(ex for ex in step if ex.boxes == [None])
    assert len(encoder.encode([empty])["box_target"]) == 0


def test_a_box_outside_the_checkpoints_frame_is_refused(tmp_path: Path, encoder: Encoder) -> None:
    Image.new("RGB", (640, 480)).save(tmp_path / "big.png")
    answer = json.dumps([{"bbox_2d": [500, 300, 630, 470], "label": "x"}])
    with pytest.raises(ValueError, match="--max-pixels"):
        to_example(ExportRow(tmp_path / "big.png", "Locate x.", answer), encoder)


def test_the_trainer_adds_the_export_rows_to_each_grounding_batch(
    tmp_path: Path, tiny_checkpoint: Path, export_dir: Path
) -> None:
    from boxguard.demo.train import Trainer
    from boxguard.demo.train_args import load_args
    from boxguard.demo.train_batches import build_batches

    args = ["--out", str(tmp_path / "run"), "--init-from", str(tiny_checkpoint)]
    args += ["--threads", "1", "--batch-size", "2", "--n-val", "2", "--n-probe", "2"]
    args += ["--extra-data", str(export_dir), "--extra-per-step", "2", "--no-gen-eval"]
    trainer = Trainer(load_args(args))
    plan = trainer.plan(0, 0, 0)
    assert len(plan.extra) == 2
    batches = build_batches(plan, trainer.encoder)
    assert batches.grounding["input_ids"].shape[0] == 4  # 2 drawn images + 2 export rows
    assert (batches.images, batches.samples) == (2, 2)  # the drawn stream's counts alone
    assert torch.isfinite(torch.tensor(trainer.step()))
