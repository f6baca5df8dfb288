"""Benchmark boxguard's vLLM backend against bare vLLM and HF transformers batched generate.

One process, the same images and expressions through (a) bare AsyncLLM with boxguard's sampling
params, (b) boxguard /ground over HTTP (guards on; then with the visual check on), (c) HF
`generate` in batches (as VLM-R1's eval does). Default model: Qwen2.5-VL-7B with random weights
(`load_format="dummy"`, `boxguard.server.dummy_checkpoint`: the public config, the real Qwen
tokenizer). Writes JSON and a markdown
table to bench/results/. Needs a GPU, vLLM and boxguard[server]; `--dry-run` only prints the
FLOPs arithmetic and runs anywhere.

    python bench/bench_vllm.py --dry-run
    python bench/bench_vllm.py --sizes 640x480,1280x960 --concurrency 1,16,64
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import random
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

# Public Qwen2.5-VL-7B-Instruct config.json values (Qwen/Qwen2.5-VL-7B-Instruct).
QWEN25_VL_7B: dict[str, Any] = {
    "text": {
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "vocab_size": 152064,
        "max_position_embeddings": 128000,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "mrope_section": [16, 24, 24],
        "tie_word_embeddings": False,
    },
    "vision": {
        "depth": 32,
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "out_hidden_size": 3584,
        "patch_size": 14,
        "spatial_patch_size": 14,
        "temporal_patch_size": 2,
        "spatial_merge_size": 2,
        "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31],
        "tokens_per_second": 2,
        "in_chans": 3,
        "hidden_act": "silu",
        "model_type": "qwen2_5_vl",
    },
}
# Qwen/Qwen2.5-VL-7B-Instruct's preprocessor_config.json (qwen-vl-utils' defaults too).
QWEN25_VL_7B_PIXELS = {"min_pixels": 3136, "max_pixels": 12_845_056}
BF16_DENSE_PEAK = {
    "H100": 989e12,
    "H200": 989e12,
    "GH200": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "B200": 2250e12,
}
TEXT_TOKENS = 60  # system + chat wrappers + REC question, Qwen2 tokenizer
COLORS = ["red", "green", "blue", "yellow", "purple", "orange"]
SHAPES = ["circle", "square"]


def flops_per_image(
    cfg: dict[str, Any],
    width: int,
    height: int,
    *,
    decode_tokens: int = 40,
    text_tokens: int = TEXT_TOKENS,
    min_pixels: int = QWEN25_VL_7B_PIXELS["min_pixels"],
    max_pixels: int = QWEN25_VL_7B_PIXELS["max_pixels"],
) -> dict[str, Any]:
    """Dense FLOPs of one grounding request: vision tower + LLM prefill + decode."""
    from boxguard.server.models.resize import smart_resize

    v, t = cfg["vision"], cfg["text"]
    p, m = v["patch_size"], v["spatial_merge_size"]
    h_in, w_in = smart_resize(
        height, width, factor=p * m, min_pixels=min_pixels, max_pixels=max_pixels
    )
    n_p = (h_in // p) * (w_in // p)
    n_v = n_p // (m * m)
    d, iv, depth = v["hidden_size"], v["intermediate_size"], v["depth"]
    n_full = len(v["fullatt_block_indexes"])
    window = (v["window_size"] // p) ** 2
    patch_embed = 2 * n_p * (v["in_chans"] * v["temporal_patch_size"] * p * p) * d
    block_params = 4 * d * d + 3 * d * iv  # qkv + proj, SwiGLU gate/up/down
    vis_linear = 2 * n_p * block_params * depth
    vis_attn = 4 * n_p * d * (n_full * n_p + (depth - n_full) * min(window, n_p))
    merger = 2 * n_v * ((d * m * m) ** 2 + d * m * m * v["out_hidden_size"])
    h, inter, layers = t["hidden_size"], t["intermediate_size"], t["num_hidden_layers"]
    kv_dim = t["num_key_value_heads"] * (h // t["num_attention_heads"])
    llm_params = layers * (2 * h * h + 2 * h * kv_dim + 3 * h * inter)
    lm_head = h * t["vocab_size"]
    seq = n_v + text_tokens
    prefill = 2 * seq * llm_params + 2 * lm_head + layers * 2 * seq * seq * h  # causal attn
    ctx = seq + decode_tokens / 2
    decode = decode_tokens * (2 * (llm_params + lm_head) + layers * 4 * ctx * h)
    vision = patch_embed + vis_linear + vis_attn + merger
    return {
        "width": width,
        "height": height,
        "model_width": w_in,
        "model_height": h_in,
        "patches": n_p,
        "vision_tokens": n_v,
        "prompt_tokens": seq,
        "decode_tokens": decode_tokens,
        "vision_block_params": block_params * depth,
        "llm_params": llm_params,
        "lm_head_params": lm_head,
        "vision_linear": vis_linear,
        "vision_attention": vis_attn,
        "vision": vision,
        "prefill": prefill,
        "decode": decode,
        "total": vision + prefill + decode,
    }


def explain_flops(est: dict[str, Any], peak: float) -> str:
    """The arithmetic of one estimate, line by line, and the compute-bound throughput."""
    e = est
    bound = peak / e["total"]
    return "\n".join(
        [
            f"{e['width']}x{e['height']} -> model frame {e['model_width']}x{e['model_height']}: "
            f"{e['patches']} patches of 14px, {e['vision_tokens']} vision tokens after 2x2 merge",
            f"  vision: 2 x {e['vision_block_params'] / 1e6:.0f}M block params x {e['patches']} "
            f"patches = {e['vision_linear'] / 1e12:.2f} TF; attention (4 full + 28 window-64) "
            f"{e['vision_attention'] / 1e12:.3f} TF; + patch embed, merger = "
            f"{e['vision'] / 1e12:.2f} TF",
            f"  prefill: 2 x {e['llm_params'] / 1e9:.2f}B params x {e['prompt_tokens']} tokens "
            f"+ causal attention 2*T^2*h*L + lm_head = {e['prefill'] / 1e12:.2f} TF",
            f"  decode: {e['decode_tokens']} tokens x 2 x ({e['llm_params'] / 1e9:.2f}B + "
            f"{e['lm_head_params'] / 1e9:.3f}B lm_head) + attention = {e['decode'] / 1e12:.2f} TF",
            f"  total {e['total'] / 1e12:.2f} TFLOPs/image; at {peak / 1e12:.0f} TFLOPS bf16 dense "
            f"-> compute bound {bound:.1f} images/s",
        ]
    )


def peak_for(gpu_name: str) -> float:
    """bf16 dense peak FLOP/s of a GPU by name (H100/H200 SXM: 989 TFLOPS)."""
    for key in sorted(BF16_DENSE_PEAK, key=len, reverse=True):
        if key in gpu_name.upper():
            return BF16_DENSE_PEAK[key]
    return BF16_DENSE_PEAK["H100"]


def make_images(n: int, size: tuple[int, int], seed: int = 0) -> list[tuple[Any, str]]:
    """Synthetic scenes (a few coloured shapes) with an expression naming one of them."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    out = []
    w, h = size
    for _ in range(n):
        img = Image.new("RGB", size, tuple(rng.randint(200, 255) for _ in range(3)))
        draw = ImageDraw.Draw(img)
        names = []
        for _ in range(rng.randint(1, 4)):
            color, shape = rng.choice(COLORS), rng.choice(SHAPES)
            s = rng.randint(min(w, h) // 10, min(w, h) // 4)
            x, y = rng.randint(0, w - s), rng.randint(0, h - s)
            (draw.ellipse if shape == "circle" else draw.rectangle)((x, y, x + s, y + s), color)
            names.append(f"the {color} {shape}")
        out.append((img, rng.choice(names)))
    return out


def summarize(latencies: list[float], wall: float, tokens: list[int] | None = None) -> dict:
    """images/s, p50/p99 latency (ms) and mean generated tokens of one run."""
    lat = sorted(latencies)
    p99 = lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))]
    out = {
        "requests": len(lat),
        "images_per_s": len(lat) / wall,
        "p50_ms": 1000 * statistics.median(lat),
        "p99_ms": 1000 * p99,
    }
    if tokens:
        out["mean_generated_tokens"] = statistics.fmean(tokens)
    return out


async def _run_concurrent(jobs: list[Any], concurrency: int) -> tuple[list[float], float, list]:
    """Run coroutine factories with at most `concurrency` in flight; latencies and results."""
    sem = asyncio.Semaphore(concurrency)
    lat: list[float] = []
    results: list[Any] = []

    async def one(job: Any) -> None:
        async with sem:
            t0 = time.perf_counter()
            results.append(await job())
            lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(j) for j in jobs))
    return lat, time.perf_counter() - t0, results


def bare_jobs(backend: Any, items: list, settings: Any) -> list[Any]:
    """Jobs calling AsyncLLM.generate directly, with the sampling params boxguard would use."""
    from boxguard.server.backends.base import GenerationRequest
    from boxguard.server.backends.vllm_backend import build_sampling_params
    from boxguard.server.backends.vllm_translate import answer_kwargs, prompt_input

    adapter, jobs = backend.adapter, []
    for img, expr in items:
        frame = adapter.model_frame(*img.size)
        constraint = adapter.constraint(
            frame,
            multiple=False,
            think=False,
            max_detections=settings.max_detections,
            max_label_chars=settings.max_label_chars,
            max_tokens=settings.max_new_tokens,
            think_max_tokens=settings.think_max_tokens,
        )
        req = GenerationRequest(prompt=adapter.prompt(expr), image=img, constraint=constraint)
        params = build_sampling_params(answer_kwargs(req))
        prompt = prompt_input(req.prompt, img)  # vLLM's processor resizes (same smart_resize)

        async def job(prompt: Any = prompt, params: Any = params) -> int:
            final = None
            async for out in backend.engine.generate(prompt, params, uuid.uuid4().hex):
                final = out
            assert final is not None, "vLLM returned no output"
            return len(final.outputs[0].token_ids)

        jobs.append(job)
    return jobs


def http_jobs(client: Any, url: str, items: list, visual: bool) -> list[Any]:
    """Jobs posting /ground requests (JPEG, base64) to the boxguard server."""
    jobs = []
    for img, expr in items:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        body: dict[str, Any] = {
            "image": base64.b64encode(buf.getvalue()).decode(),
            "expression": expr,
        }
        if visual:
            body["policy"] = {"visual_check": True}

        async def job(body: dict = body) -> int:
            r = await client.post(url + "/ground", json=body, timeout=600)
            r.raise_for_status()
            return 0

        jobs.append(job)
    return jobs


async def _http_run(url: str, items: list, conc: int, visual: bool) -> tuple:
    """Warm up with `conc` requests, then time all of `items` over HTTP."""
    import httpx

    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=conc)) as client:
        await _run_concurrent(http_jobs(client, url, items[:conc], visual), conc)
        return await _run_concurrent(http_jobs(client, url, items, visual), conc)


def run_vllm_arms(args: argparse.Namespace, model_dir: Path, data: dict) -> dict:
    """Arms (a) bare AsyncLLM and (b) boxguard over HTTP, on one engine."""
    from boxguard.server.app import create_app
    from boxguard.server.backends.vllm_backend import VLLMBackend
    from boxguard.server.models import adapter_for
    from boxguard.server.serve import serve_in_thread
    from boxguard.server.settings import Settings

    settings = Settings(
        backend="vllm",
        model=str(model_dir),
        load_format=args.load_format,
        max_new_tokens=args.max_tokens,
        max_model_len=args.max_model_len,
        gpu_memory_utilization=args.gpu_memory_utilization,
        queue_size=4096,
        request_timeout_s=600,
        max_body_bytes=64 * 1024 * 1024,
    )
    backend = VLLMBackend(settings, str(model_dir), adapter_for(model_dir))
    results: dict = {}
    with serve_in_thread(create_app(settings, backend=backend), timeout_s=900) as url:
        for size, items in data.items():
            for conc in args.concurrency:
                subset = items[: max(args.requests, conc)]
                fut = asyncio.run_coroutine_threadsafe(
                    _run_concurrent(bare_jobs(backend, subset[:conc], settings), conc), backend.loop
                )
                fut.result()  # warm-up
                fut = asyncio.run_coroutine_threadsafe(
                    _run_concurrent(bare_jobs(backend, subset, settings), conc), backend.loop
                )
                lat, wall, toks = fut.result()
                results[f"bare|{size}|{conc}"] = summarize(lat, wall, toks)
                for arm, visual in (("boxguard", False), ("boxguard+visual", True)):
                    lat, wall, _ = asyncio.run(_http_run(url, subset, conc, visual))
                    results[f"{arm}|{size}|{conc}"] = summarize(lat, wall)
                print(json.dumps({k: v for k, v in results.items() if f"|{size}|{conc}" in k}))
    return results


def _hf_encode(tok: Any, proc: Any, adapter: Any, batch: list, model: Any) -> dict:
    """Left-padded prompts with expanded image tokens, pixels and M-RoPE token types."""
    import inspect

    import torch
    from boxguard.server.models import resize_to_frame

    images = []
    for img, _ in batch:
        frame = adapter.model_frame(*img.size)
        images.append(resize_to_frame(img, (frame.width, frame.height)))
    pix = proc(images=images, return_tensors="pt")
    rows = []
    for (_, expr), (t, h, w) in zip(batch, pix["image_grid_thw"].tolist(), strict=True):
        prompt = adapter.prompt(expr).replace("<|image_pad|>", "<|image_pad|>" * (t * h * w // 4))
        rows.append(tok(prompt, add_special_tokens=False)["input_ids"])
    width = max(map(len, rows))
    pad = tok.convert_tokens_to_ids("<|endoftext|>")
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row)
        mask[i, width - len(row) :] = 1
    inputs = {
        "input_ids": ids,
        "attention_mask": mask,
        "pixel_values": pix["pixel_values"].to(torch.bfloat16),
        "image_grid_thw": pix["image_grid_thw"],
    }
    if "mm_token_type_ids" in inspect.signature(model.forward).parameters:
        image_id = tok.convert_tokens_to_ids("<|image_pad|>")
        inputs["mm_token_type_ids"] = (ids == image_id).to(torch.int)
    return {k: v.to("cuda") for k, v in inputs.items()}


def run_hf_arm(args: argparse.Namespace, model_dir: Path, data: dict) -> dict:
    """Arm (c): HF transformers batched generate, batch = concurrency, random bf16 weights."""
    import torch
    from boxguard.server.models import adapter_for
    from transformers import (
        AutoConfig,
        AutoTokenizer,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLImageProcessorPil,
    )

    adapter = adapter_for(model_dir)
    with torch.device("cuda"):
        model = Qwen2_5_VLForConditionalGeneration._from_config(
            AutoConfig.from_pretrained(model_dir), dtype=torch.bfloat16
        )
    model.eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    proc = Qwen2VLImageProcessorPil.from_pretrained(
        model_dir, size={"shortest_edge": adapter.min_pixels, "longest_edge": adapter.max_pixels}
    )
    results: dict = {}
    for size, items in data.items():
        for conc in args.concurrency:
            subset = items[: max(args.requests, conc)]
            lat: list[float] = []
            toks: list[int] = []
            t_all = time.perf_counter()
            for start in range(-conc, len(subset), conc):  # first batch = warm-up
                batch = subset[max(start, 0) : max(start, 0) + conc]
                t0 = time.perf_counter()
                inputs = _hf_encode(tok, proc, adapter, batch, model)
                with torch.inference_mode():
                    out = model.generate(**inputs, max_new_tokens=args.max_tokens, do_sample=False)
                torch.cuda.synchronize()
                if start < 0:
                    t_all = time.perf_counter()
                    continue
                lat += [time.perf_counter() - t0] * len(batch)
                toks += [out.shape[1] - inputs["input_ids"].shape[1]] * len(batch)
            key = f"hf|{size}|{conc}"
            results[key] = summarize(lat, time.perf_counter() - t_all, toks)
            print(json.dumps({key: results[key]}))
    del model
    torch.cuda.empty_cache()
    return results


def verdicts(results: dict, flops: dict, peak: float, conc: int) -> list[str]:
    """The report's targets at concurrency `conc`, one line each."""
    lines = []
    for size, est in flops.items():

        def ips(arm: str, size: str = size) -> float:
            return results.get(f"{arm}|{size}|{conc}", {}).get("images_per_s", float("nan"))

        bare, bg, vis, hf = ips("bare"), ips("boxguard"), ips("boxguard+visual"), ips("hf")
        bound = peak / est["total"]
        lines += [
            f"- {size}: boxguard/bare = {bg / bare:.2f} (target >= 0.95)",
            f"- {size}: boxguard/HF generate = {bg / hf:.1f}x (target >= 10x)",
            f"- {size}: boxguard = {100 * bg / bound:.0f}% of compute bound {bound:.1f} img/s "
            f"(target >= 50%); bare = {100 * bare / bound:.0f}%",
            f"- {size}: visual check cost = {100 * (1 - vis / bg):.0f}% throughput (target <= 15%)",
        ]
    return lines


def write_report(out_dir: Path, meta: dict, results: dict, flops: dict, peak: float) -> Path:
    """bench/results/vllm-<gpu>-<time>.json and .md."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"vllm-{meta['gpu'].replace(' ', '_')}-{time.strftime('%Y%m%d-%H%M%S')}"
    payload = {"meta": meta, "flops": flops, "results": results}
    (out_dir / f"{stem}.json").write_text(json.dumps(payload, indent=2))
    rows = [
        "| arm | input | concurrency | images/s | p50 ms | p99 ms | gen tokens |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, r in results.items():
        arm, size, conc = key.split("|")
        rows.append(
            f"| {arm} | {size} | {conc} | {r['images_per_s']:.2f} | {r['p50_ms']:.0f} "
            f"| {r['p99_ms']:.0f} | {r.get('mean_generated_tokens', float('nan')):.1f} |"
        )
    top = max(meta["concurrency"])
    md = [
        f"# vLLM backend benchmark: {meta['gpu']}",
        "",
        f"```\n{json.dumps(meta)}\n```",
        "",
        *rows,
        "",
        f"## Targets at concurrency {top}",
        "",
        *verdicts(results, flops, peak, top),
        "",
        "## FLOPs per image",
        "",
        *(f"```\n{explain_flops(e, peak)}\n```" for e in flops.values()),
    ]
    (out_dir / f"{stem}.md").write_text("\n".join(md) + "\n")
    return out_dir / f"{stem}.md"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="print the FLOPs arithmetic and exit")
    ap.add_argument("--model-dir", type=Path, help="model dir (default: dummy Qwen2.5-VL-7B)")
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/boxguard-bench"))
    ap.add_argument("--load-format", default="dummy")
    ap.add_argument("--sizes", default="640x480,1280x960")
    ap.add_argument("--concurrency", default="1,16,64")
    ap.add_argument("--requests", type=int, default=256, help="timed requests per cell")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--max-model-len", type=int, default=4096)
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.85)
    ap.add_argument("--arms", default="vllm,hf", help="comma list of: vllm, hf")
    ap.add_argument("--peak-tflops", type=float, help="bf16 dense peak (default: by GPU name)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.sizes = [tuple(int(x) for x in s.split("x")) for s in args.sizes.split(",")]
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark (or only the FLOPs arithmetic with --dry-run)."""
    args = parse_args(argv)
    peak = (args.peak_tflops or 989.0) * 1e12
    if args.dry_run:
        for w, h in args.sizes:
            print(
                explain_flops(
                    flops_per_image(QWEN25_VL_7B, w, h, decode_tokens=args.max_tokens), peak
                )
            )
        return
    os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
    import torch

    gpu = torch.cuda.get_device_name(0)
    peak = (args.peak_tflops * 1e12) if args.peak_tflops else peak_for(gpu)
    model_dir = args.model_dir
    if model_dir is None:
        from boxguard.server.dummy_checkpoint import build_dummy_checkpoint

        model_dir = build_dummy_checkpoint("qwen2_5_vl-7b", args.work_dir / "qwen2_5_vl-7b")
    from boxguard.server.models import adapter_for

    served = adapter_for(model_dir)  # the estimate uses the frames the server really serves
    flops = {
        f"{w}x{h}": flops_per_image(
            QWEN25_VL_7B,
            w,
            h,
            decode_tokens=args.max_tokens,
            min_pixels=served.min_pixels,
            max_pixels=served.max_pixels,
        )
        for w, h in args.sizes
    }
    n = max(args.requests, max(args.concurrency))
    data = {f"{w}x{h}": make_images(n, (w, h), seed=w) for w, h in args.sizes}
    results: dict = {}
    arms = args.arms.split(",")
    if "vllm" in arms:
        results |= run_vllm_arms(args, model_dir, data)
    if "hf" in arms:
        results |= run_hf_arm(args, model_dir, data)
    import vllm

    meta = {
        "gpu": gpu,
        "peak_tflops": peak / 1e12,
        "vllm": vllm.__version__,
        "torch": torch.__version__,
        "model_dir": str(model_dir),
        "load_format": args.load_format,
        "max_tokens": args.max_tokens,
        "requests": args.requests,
        "concurrency": args.concurrency,
    }
    print(write_report(args.out, meta, results, flops, peak).read_text())


if __name__ == "__main__":
    main()
