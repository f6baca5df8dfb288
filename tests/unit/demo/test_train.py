"""The demo trainer: a few real steps on a tiny config, and the shape of its training inputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from boxguard.demo.train_data import (  # noqa: E402
    IGNORE,
    DataSpec,
    Encoder,
    answer_json,
    frame_box,
    make_example,
)

TINY = [
    "--text-hidden",
    "64",
    "--text-layers",
    "2",
    "--text-heads",
    "4",
    "--text-kv-heads",
    "2",
    "--text-intermediate",
    "128",
    "--vision-hidden",
    "32",
    "--vision-depth",
    "2",
    "--vision-heads",
    "2",
    "--vision-intermediate",
    "64",
    "--batch-size",
    "2",
    "--n-val",
    "2",
    "--n-probe",
    "2",
    "--threads",
    "1",
    "--warmup-steps",
    "2",
]


@pytest.fixture(scope="module")
def encoder(tiny_checkpoint: Path) -> Encoder:
    return Encoder(tiny_checkpoint, digit_weight=4.0, think_weight=0.5)


def test_frame_box_scales_rounds_and_clamps() -> None:
    assert frame_box((10, 20, 110, 220), (200, 400), (100, 200)) == [5, 10, 55, 110]
    assert frame_box((0, 0, 300, 300), (200, 200), (112, 112)) == [0, 0, 112, 112]
    assert answer_json(None, "red circle") == "[]"
    assert answer_json([1, 2, 3, 4], "red circle") == (
        '[{"bbox_2d": [1, 2, 3, 4], "label": "red circle"}]'
    )


def test_inputs_have_image_token_types_and_masked_prompt(encoder: Encoder) -> None:
    spec = DataSpec(questions_per_image=2, p_think=0.5)
    examples = [make_example(i, spec, encoder) for i in range(3)]
    batch = encoder.encode(examples)
    ids, types, labels = batch["input_ids"], batch["mm_token_type_ids"], batch["labels"]
    image_id = encoder.image_token_id
    assert torch.equal(types.bool(), ids == image_id)
    t, h, w = batch["image_grid_thw"][0].tolist()
    assert int(types[0].sum()) == t * h * w // 4
    for row in range(len(examples)):
        text = encoder.tokenizer.decode(ids[row][labels[row] != IGNORE])
        prompt = encoder.tokenizer.decode(
            ids[row][(labels[row] == IGNORE) & (batch["attention_mask"][row] == 1)]
        )
        # The answers are labelled; the prompt (system, image, question) is not.
        assert "bbox_2d" in text or "[]" in text
        assert "Locate" not in text and "<|image_pad|>" not in text
        assert "Locate" in prompt and "<|vision_start|>" in prompt
    first = examples[0].questions[0]
    rendered = encoder.tokenizer.decode(ids[0][batch["attention_mask"][0] == 1])
    served = encoder.adapter.prompt(
        first.expression, multiple=first.multiple, think=first.think is not None
    )
    head, tail = served.split("<|image_pad|>")
    assert rendered.startswith(head) and tail in rendered
    # Coordinates are model-frame pixels and are weighted; the "2" of bbox_2d is not.
    assert batch["coord"].any() and (batch["weights"][batch["coord"]] == 4.0).all()


def test_three_training_steps_write_a_loadable_checkpoint(tmp_path: Path) -> None:
    from boxguard.demo.train import main
    from transformers import AutoModelForImageTextToText

    out = tmp_path / "run"
    row = main(
        [
            "--out",
            str(out),
            "--max-steps",
            "3",
            "--minutes",
            "2",
            "--no-gen-eval",
            "--ship-dir",
            str(tmp_path / "ship"),
            "--curve-md",
            str(tmp_path / "c.md"),
            "--position-weight",
            "1",
            "--box-weight",
            "1",
            "--rope-theta",
            "100",
            "--mrope-section",
            "2,3,3",
            "--dense-weight",
            "1",
            "--attention-weight",
            "1",
            "--attention-layer",
            "1",
            *TINY,
        ]
    )
    assert row["step"] == 3 and row["samples"] == 6
    assert torch.isfinite(torch.tensor(row["train_loss"]))
    assert (out / "train_state.pt").is_file()
    for d in (out / "best", tmp_path / "ship"):
        for name in (
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "preprocessor_config.json",
        ):
            assert (d / name).is_file(), (d, name)
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "ship", dtype=torch.float32)
    assert next(model.parameters()).dtype == torch.float32
    rope = json.loads((tmp_path / "ship" / "config.json").read_text())["text_config"]
    assert rope["rope_parameters"]["rope_theta"] == 100
    assert rope["rope_parameters"]["mrope_section"] == [2, 3, 3]
    assert "position loss 1.0 at layer 1, box loss 1.0" in (tmp_path / "c.md").read_text()
    assert "| 3 |" in (tmp_path / "c.md").read_text()
    assert json.loads((out / "curve.jsonl").read_text().splitlines()[-1])["step"] == 3
    # Resume continues from the saved step; --reset-best makes its first eval the new best.
    row = main(["--out", str(out), "--max-steps", "1", "--minutes", "2", "--resume"])
    assert row["step"] == 4
    state = torch.load(out / "train_state.pt", weights_only=False)
    state["state"]["best"] = [1.0, 1.0, 0.0]  # an unbeatable stored best
    torch.save(state, out / "train_state.pt")
    row = main(["--out", str(out), "--max-steps", "1", "--minutes", "2", "--resume"])
    assert row["step"] == 5 and not row["best"]
    row = main(
        ["--out", str(out), "--max-steps", "1", "--minutes", "2", "--resume", "--reset-best"]
    )
    assert row["step"] == 6 and row["best"]


def test_resume_adds_the_dense_heads_to_a_state_saved_without_them(tmp_path: Path) -> None:
    from boxguard.demo.train import main

    out = tmp_path / "run"
    main(["--out", str(out), "--max-steps", "1", "--minutes", "2", "--no-gen-eval", *TINY])
    state = torch.load(out / "train_state.pt", weights_only=False)
    del state["dense"]  # the format before dense heads existed: one optimizer group
    state["optimizer"]["param_groups"] = state["optimizer"]["param_groups"][:1]
    torch.save(state, out / "train_state.pt")
    row = main(
        ["--out", str(out), "--max-steps", "2", "--minutes", "2", "--resume", "--dense-weight", "1"]
    )
    assert row["step"] == 3 and math.isfinite(row["train_loss"])
    saved = torch.load(out / "train_state.pt", weights_only=False)
    assert len(saved["optimizer"]["param_groups"]) == 2 and "dense" in saved


def test_the_first_answer_token_carries_the_decision_weight(tiny_checkpoint: Path) -> None:
    enc = Encoder(tiny_checkpoint, digit_weight=4.0, decision_weight=3.0)
    spec = DataSpec(questions_per_image=3, min_objects=3, p_think=0.0, no_target_rate=0.5)
    examples = [make_example(i, spec, enc) for i in range(4)]
    batch = enc.encode(examples)
    heavy = batch["weights"] == 3.0
    assert int(heavy.sum()) == sum(len(ex.questions) for ex in examples)
    first = {enc.tokenizer.decode(int(tok)) for tok in batch["input_ids"][heavy]}
    # "[" starts "[]" (no target), '[{"' starts a box: the token that decides between them.
    assert first == {"[", '[{"'}


def test_vision_phase_trains_only_the_tower_and_updates_the_resume_point(tmp_path: Path) -> None:
    from boxguard.demo.train import main
    from boxguard.demo.train_vision import main as vision_main

    out = tmp_path / "run"
    main(["--out", str(out), "--max-steps", "1", "--minutes", "2", "--no-gen-eval", *TINY])
    before = torch.load(out / "train_state.pt", weights_only=False)
    row = vision_main(
        ["--out", str(out), "--max-steps", "2", "--threads", "1", "--batch-size", "2"]
    )
    assert row["vision_step"] == 2 and row["images"] == 4 and math.isfinite(row["loss"])
    after = torch.load(out / "train_state.pt", weights_only=False)
    changed = {k for k, v in after["model"].items() if not torch.equal(v, before["model"][k])}
    assert changed and all(".visual." in k or k.startswith("visual.") for k in changed)
    assert after["state"]["step"] == 1 and after["state"]["vision_phase"]["steps"] == 2
    assert after["optimizer"]["state"].keys() == before["optimizer"]["state"].keys()
    # The main loop resumes from it and keeps training the whole model.
    assert (
        main(
            [
                "--out",
                str(out),
                "--max-steps",
                "1",
                "--minutes",
                "2",
                "--resume",
                "--dense-weight",
                "1",
            ]
        )["step"]
        == 2
    )


def test_box_index_points_at_each_token_that_predicts_a_box_digit(encoder: Encoder) -> None:
    spec = DataSpec(questions_per_image=3, p_think=0.5, min_objects=3)
    examples = [make_example(i, spec, encoder) for i in range(4)]
    batch = encoder.encode(examples)
    boxes = [b for ex in examples for b in ex.boxes if b is not None]
    targets = batch["box_target"].int().tolist()
    # One row per digit of the box: 4 numbers written out in decimal.
    assert boxes and targets == [b for b in boxes for _ in range(len("".join(map(str, b))))]
    ids = batch["input_ids"]
    for row, pos in batch["box_index"].tolist():
        assert encoder.tokenizer.decode(ids[row][pos + 1]).strip().isdigit()
        assert batch["coord"][row][pos + 1]
    # The first position of each box is the "[" right before its x1.
    row, pos = batch["box_index"][0].tolist()
    after = encoder.tokenizer.decode(ids[row][pos : pos + 24])
    assert after.lstrip().startswith(f"[{targets[0][0]}, {targets[0][1]}, {targets[0][2]}, ")
    assert len(targets) == int(batch["coord"].sum())
    # box_first marks exactly that position of every box.
    first = batch["box_first"].tolist()
    assert len(first) == len(targets) and sum(first) == len(boxes) and first[0]
    for (row, pos), is_first in zip(batch["box_index"].tolist(), first, strict=True):
        assert is_first == encoder.tokenizer.decode(ids[row][pos]).endswith("[")


def test_resume_keeps_saved_args_unless_given_even_when_given_value_is_the_default(
    tmp_path: Path,
) -> None:
    from boxguard.demo.train_args import load_args

    saved = {"threads": 1, "lr": 0.5, "text_hidden": 99, "minutes": 3.0, "out": "elsewhere"}
    (tmp_path / "run_args.json").write_text(json.dumps(saved))
    args = load_args(["--out", str(tmp_path), "--resume", "--threads", "2", "--text-hidden", "7"])
    assert args.threads == 2  # given explicitly, although 2 is the default
    assert args.lr == 0.5  # not given: the saved run's value
    assert args.text_hidden == 99  # architecture never changes on resume
    assert args.minutes == 30.0 and args.out == str(tmp_path)  # always from the command line


def test_sigterm_saves_the_resume_point_and_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import signal

    from boxguard.demo import train

    real_step = train.Trainer.step

    def step_then_terminate(self: train.Trainer) -> float:
        loss = real_step(self)
        if self.state["step"] == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return loss

    monkeypatch.setattr(train.Trainer, "step", step_then_terminate)
    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "run"
    train.main(["--out", str(out), "--minutes", "3", "--no-gen-eval", *TINY])
    saved = torch.load(out / "train_state.pt", weights_only=False)
    assert saved["state"]["step"] == 3
    assert not (out / "curve.jsonl").exists()  # stopped without the final evaluation
    assert signal.getsignal(signal.SIGTERM) is before


def test_workers_build_the_same_batches_and_bf16_autocast_trains(tmp_path: Path) -> None:
    # The GPU flags, checked on CPU: batches built in worker processes are the inline ones
    # (same loss to the bit), and a bf16-autocast run with re-check rows stays finite.
    from boxguard.demo.train import main

    common = [
        "--max-steps",
        "2",
        "--minutes",
        "2",
        "--no-gen-eval",
        "--recheck-per-image",
        "2",
        "--n-recheck-val",
        "6",
        "--device",
        "cpu",
        *TINY,
    ]
    inline = main(["--out", str(tmp_path / "inline"), *common])
    workers = main(["--out", str(tmp_path / "workers"), "--workers", "1", *common])
    assert inline["step"] == workers["step"] == 2
    assert inline["train_loss"] == workers["train_loss"]
    assert 0.0 <= inline["recheck_auroc"] <= 1.0
    bf16 = main(["--out", str(tmp_path / "bf16"), "--bf16", *common])
    assert bf16["step"] == 2 and math.isfinite(bf16["train_loss"])
