"""What the real Qwen vocabulary costs the transformers backend, measured without a model.

At 151,936 logits per step (Qwen2.5-VL-3B's vocab_size; the real tokenizer from
`boxguard.server.qwen_tokenizer`) against the tiny test tokenizer's 576: xgrammar's
TokenizerInfo and compiler setup, the compile time of each request shape and whether a second
compile is a cache hit, the grammar mask per generated token (fill the bitmask, apply it), the
logprob of the chosen token (`ChosenLogprobs`: log_softmax over the vocabulary) and the
per-token detokenization (`HFEngine._pieces`). Prints a markdown table; `--json` writes the
figures.

    python bench/bench_real_vocab.py --json bench/results/real_vocab.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, cast

STEPS = 40  # decode steps timed per measurement
ANSWER = '[{"bbox_2d": [123, 45, 617, 470], "label": "the red circle"}]'


def _ms(fn: Callable[[], object], repeat: int = 1) -> float:
    """Median wall time of `fn` in milliseconds."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _shapes(adapter: Any) -> dict[str, Any]:
    """The constraint of each request shape the server builds (640x480 and 1920x1080 images).

    think=True answers under the same grammar as think=False (the think runs unconstrained
    first), so its first compile is already a cache hit.
    """
    shapes = {}
    for w, h in ((640, 480), (1920, 1080)):
        frame = adapter.model_frame(w, h)
        for multiple in (False, True):
            for think in (False, True):
                name = f"{frame.width}x{frame.height} multiple={multiple} think={think}"
                shapes[name] = adapter.constraint(
                    frame,
                    multiple=multiple,
                    think=think,
                    max_detections=16,
                    max_label_chars=48,
                    max_tokens=128,
                    think_max_tokens=256,
                )
    return shapes


def measure(
    tokenizer_dir: Path, vocab_size: int, batch: int = 8, threads: int = 1
) -> dict[str, Any]:
    """All figures for one tokenizer, padded to `vocab_size` logits like the model's head."""
    import torch

    torch.set_num_threads(threads)
    import xgrammar as xgr
    from boxguard.server.backends.hf_engine import ChosenLogprobs, HFEngine
    from boxguard.server.constraints import yes_no_constraint
    from boxguard.server.models.families import Qwen25VLAdapter
    from transformers import AutoTokenizer

    out: dict[str, Any] = {"vocab_size": vocab_size, "torch_threads": threads}
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    out["tokenizer_load_ms"] = (time.perf_counter() - t0) * 1000
    out["tokenizer_len"] = len(tok)
    stops = [cast(int, tok.convert_tokens_to_ids(t)) for t in ("<|im_end|>", "<|endoftext|>")]
    t0 = time.perf_counter()
    info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=vocab_size, stop_token_ids=stops)
    compiler = xgr.GrammarCompiler(info)
    out["grammar_setup_ms"] = (time.perf_counter() - t0) * 1000

    adapter = Qwen25VLAdapter(min_pixels=3136, max_pixels=12_845_056)
    # The first compile of a compiler pays a one-time cost per vocabulary; timed on its own.
    out["first_compile_ms"] = _ms(lambda: compiler.compile_grammar(yes_no_constraint().ebnf()))
    compiles = {}
    for name, constraint in _shapes(adapter).items():
        grammar = constraint.ebnf()
        first = _ms(partial(compiler.compile_grammar, grammar))
        again = _ms(partial(compiler.compile_grammar, grammar), repeat=3)
        compiles[name] = {"first_ms": first, "again_ms": again, "grammar_chars": len(grammar)}
    out["compile"] = compiles

    # The mask per step on a batch decoding the answer token by token (forced onto ANSWER).
    frame = adapter.model_frame(640, 480)
    constraint = adapter.constraint(
        frame,
        multiple=False,
        think=False,
        max_detections=16,
        max_label_chars=48,
        max_tokens=128,
        think_max_tokens=256,
    )
    answer_ids = tok(ANSWER, add_special_tokens=False)["input_ids"]
    out["answer_tokens"] = len(answer_ids)
    steps = min(STEPS, len(answer_ids))
    torch.manual_seed(0)
    for rows in (1, batch):
        compiled = compiler.compile_grammar(constraint.ebnf())
        processor = xgr.contrib.hf.LogitsProcessor([compiled] * rows)
        recorder = ChosenLogprobs()
        scores = torch.randn(rows, vocab_size)
        ids = torch.zeros((rows, 1), dtype=torch.long)
        mask_ms, logprob_ms = [], []
        for step in range(steps):
            s = scores.clone()
            t0 = time.perf_counter()
            s = processor(cast(torch.LongTensor, ids), cast(torch.FloatTensor, s))
            t1 = time.perf_counter()
            recorder(ids, s)
            t2 = time.perf_counter()
            mask_ms.append((t1 - t0) * 1000)
            logprob_ms.append((t2 - t1) * 1000)
            chosen = torch.full((rows, 1), answer_ids[step], dtype=torch.long)
            ids = torch.cat([ids, chosen], dim=1)
        # The first call also allocates the bitmask; the rest is the steady state.
        out[f"mask_ms_per_step_batch{rows}"] = statistics.median(mask_ms[1:])
        out[f"mask_ms_first_step_batch{rows}"] = mask_ms[0]
        out[f"logprob_ms_per_step_batch{rows}"] = statistics.median(logprob_ms[1:])
        assert torch.isfinite(recorder.finish(ids[:, -1])).all()

    engine = HFEngine.__new__(HFEngine)  # only _pieces/_decode, which need the tokenizer
    engine.tokenizer = tok
    pieces: list[str] = []
    detok = _ms(lambda: pieces.extend(engine._pieces(answer_ids)), repeat=5)
    assert "".join(pieces[: len(answer_ids)]) == ANSWER
    out["detokenize_ms_per_token"] = detok / len(answer_ids)
    return out


def markdown(results: dict[str, dict[str, Any]]) -> str:
    """The figures side by side, one column per tokenizer."""
    names = list(results)
    lines = ["| figure | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]

    def row(label: str, *path: str, fmt: str = "{:.2f}") -> None:
        values = []
        for name in names:
            value: Any = results[name]
            for key in path:
                value = value[key]
            values.append(fmt.format(value))
        lines.append(f"| {label} | " + " | ".join(values) + " |")

    row("logits per step (vocab_size)", "vocab_size", fmt="{:d}")
    row("torch threads", "torch_threads", fmt="{:d}")
    row("tokenizer load, ms", "tokenizer_load_ms", fmt="{:.0f}")
    row("xgrammar TokenizerInfo + compiler, ms", "grammar_setup_ms", fmt="{:.0f}")
    row("first compile of the compiler (yes/no), ms", "first_compile_ms", fmt="{:.0f}")
    for shape in results[names[0]]["compile"]:
        row(f"compile {shape}, ms (first)", "compile", shape, "first_ms")
        row(f"compile {shape}, ms (again)", "compile", shape, "again_ms", fmt="{:.3f}")
    row("grammar mask per step, batch 1, ms", "mask_ms_per_step_batch1", fmt="{:.3f}")
    row("grammar mask per step, batch 8, ms", "mask_ms_per_step_batch8", fmt="{:.3f}")
    row("chosen logprob per step, batch 1, ms", "logprob_ms_per_step_batch1", fmt="{:.3f}")
    row("chosen logprob per step, batch 8, ms", "logprob_ms_per_step_batch8", fmt="{:.3f}")
    row("detokenize per token, ms", "detokenize_ms_per_token", fmt="{:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Measure the tiny and the real tokenizer; print the table, optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--tiny", type=Path, help="a tiny checkpoint (default: build one)")
    args = parser.parse_args(argv)
    from boxguard.server.qwen_tokenizer import qwen_tokenizer_dir
    from boxguard.server.tiny_checkpoint import build_tokenizer

    tiny = args.tiny
    if tiny is None:
        tiny = Path("/tmp/boxguard-bench-real-vocab/tiny-tokenizer")
        if not (tiny / "tokenizer.json").is_file():
            build_tokenizer(tiny)
    real = qwen_tokenizer_dir("qwen2_5_vl")
    results = {
        "tiny, 1 thread": measure(tiny, 576),
        "real, 1 thread": measure(real, 151_936),
        "real, 2 threads": measure(real, 151_936, threads=2),
    }
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load_avg_1m": os.getloadavg()[0],
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    print(markdown(results))
    print(meta)
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
