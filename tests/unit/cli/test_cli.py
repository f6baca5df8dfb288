"""The boxguard CLI through typer's CliRunner, against a MockTransport-backed client."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import httpx
import pytest
from boxguard.cli import commands as cli
from boxguard.cli import common as cli_common
from boxguard.server.serve import serve_flags
from PIL import Image
from sdk_fakes import eval_handler, fail, make_body, ok, write_eval_set
from typer.testing import CliRunner

runner = CliRunner()

DET = {"bbox": [10.0, 8.0, 40.0, 30.0], "label": "red circle", "confidence": 0.87}


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "scene.png"
    Image.new("RGB", (64, 48), "white").save(path)
    return path


def serve_with(monkeypatch: pytest.MonkeyPatch, handler: Any) -> list[httpx.Request]:
    """Point the CLI's client at a handler; returns the recorded requests."""
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    monkeypatch.setattr(cli_common, "transport", httpx.MockTransport(record))
    return seen


def test_help_lists_the_commands() -> None:
    result = runner.invoke(cli.app, ["--help"])
    assert result.exit_code == 0
    for command in ("ground", "eval", "serve", "demo"):
        assert command in result.output


def test_ground_json(monkeypatch: pytest.MonkeyPatch, image: Path) -> None:
    seen = serve_with(monkeypatch, lambda r: ok(make_body(detections=[DET])))
    result = runner.invoke(
        cli.app,
        [
            "ground",
            str(image),
            "the red circle",
            "--server",
            "http://x",
            "--think",
            "--multiple",
            "--json",
            "--api-key",
            "k",
            "--policy",
            '{"min_confidence": 0.3}',
        ],
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["status"] == "accepted" and body["detections"][0]["label"] == "red circle"
    sent = _form(seen[0])  # a file goes as multipart, the image bytes as they are
    assert sent["image"] == image.read_bytes() and sent["expression"] == b"the red circle"
    assert sent["think"] == b"true" and sent["multiple"] == b"true"
    assert json.loads(sent["policy"]) == {"min_confidence": 0.3}
    assert seen[0].headers["authorization"] == "Bearer k"
    assert str(seen[0].url) == "http://x/ground"


def _form(request: httpx.Request) -> dict[str, bytes]:
    """The fields of a multipart/form-data request."""
    from email.parser import BytesParser
    from email.policy import HTTP

    head = f"content-type: {request.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + request.content)
    return {
        part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
        for part in message.iter_parts()  # type: ignore[attr-defined]
    }


def test_ground_a_folder_grounds_each_image(
    monkeypatch: pytest.MonkeyPatch, image: Path, tmp_path: Path
) -> None:
    seen = serve_with(monkeypatch, lambda r: ok(make_body(detections=[DET])))
    Image.new("RGB", (8, 8)).save(tmp_path / "b.JPG")
    (tmp_path / "notes.txt").write_text("not an image")
    result = runner.invoke(cli.app, ["ground", str(tmp_path), "the red circle"])
    assert result.exit_code == 0, result.output
    assert len(seen) == 2 and f"{tmp_path / 'b.JPG'}:" in result.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(cli.app, ["ground", str(empty), "the red circle"])
    squeezed = "".join(result.output.replace("│", "").split())  # the error box wraps the path
    assert result.exit_code == 2 and "isafolderwithnoimages" in squeezed


def test_ground_without_a_server_names_the_url_and_the_fix(image: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    result = runner.invoke(cli.app, ["ground", str(image), "the circle", "--server", url])
    assert result.exit_code == 1
    assert f"no boxguard server at {url}; start one with `boxguard serve`" in result.stderr
    assert "--server" in result.stderr


def test_ground_table_and_draw(
    monkeypatch: pytest.MonkeyPatch, image: Path, tmp_path: Path
) -> None:
    serve_with(monkeypatch, lambda r: ok(make_body(detections=[DET])))
    out = tmp_path / "out.png"
    result = runner.invoke(cli.app, ["ground", str(image), "the red circle", "--draw", str(out)])
    assert result.exit_code == 0, result.output
    assert "ACCEPTED" in result.output and "red circle" in result.output
    assert "0.870" in result.output and "40.0" in result.output
    assert Image.open(out).size == (64, 48)


def test_ground_table_for_an_abstention(monkeypatch: pytest.MonkeyPatch, image: Path) -> None:
    body = make_body(status="abstained", candidates=[DET], reasons=["label_match"])
    serve_with(monkeypatch, lambda r: ok(body))
    result = runner.invoke(cli.app, ["ground", str(image), "a unicorn"])
    assert result.exit_code == 0, result.output
    assert "ABSTAINED" in result.output and "label_match" in result.output
    assert "rejected candidates" in result.output


def test_ground_errors_exit_nonzero(monkeypatch: pytest.MonkeyPatch, image: Path) -> None:
    serve_with(monkeypatch, lambda r: fail(401, "unauthorized"))
    result = runner.invoke(cli.app, ["ground", str(image), "x"])
    assert result.exit_code == 2
    assert "unauthorized" in result.output
    result = runner.invoke(cli.app, ["ground", str(image.parent / "missing.png"), "x"])
    assert result.exit_code != 0 and "no such file" in result.output
    result = runner.invoke(cli.app, ["ground", str(image), "x", "--policy", "[1]"])
    assert result.exit_code != 0


def test_eval_over_a_tiny_jsonl(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    serve_with(monkeypatch, eval_handler)
    dataset = write_eval_set(tmp_path / "data")
    report = tmp_path / "report"
    result = runner.invoke(
        cli.app,
        [
            "eval",
            str(dataset),
            "--server",
            "http://x",
            "--report",
            str(report),
            "--concurrency",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and "0.400" in result.output
    for name in ("samples.jsonl", "report.json", "report.md", "risk_coverage.png", "index.html"):
        assert (report / name).is_file(), name
    assert json.loads((report / "report.json").read_text())["n"] == 5


def test_eval_json_output_and_limit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    serve_with(monkeypatch, eval_handler)
    dataset = write_eval_set(tmp_path / "data")
    result = runner.invoke(
        cli.app, ["eval", str(dataset), "--json", "--no-progress", "--limit", "2"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["n"] == 2 and summary["accuracy"] == 0.5


def test_eval_bad_dataset(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n')
    result = runner.invoke(cli.app, ["eval", str(bad)])
    assert result.exit_code == 2 and "missing" in result.output


def test_serve_passes_only_given_options(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, object]] = []
    stub = types.ModuleType("boxguard.server.serve")
    stub.serve_flags = serve_flags  # type: ignore[attr-defined]
    stub.run = calls.append  # type: ignore[attr-defined]
    stub.ServeError = RuntimeError  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "boxguard.server.serve", stub)
    result = runner.invoke(
        cli.app,
        [
            "serve",
            "--port",
            "9000",
            "--backend",
            "vllm",
            "--gpu-memory-utilization",
            "0.5",
            "--max-pixels",
            "1003520",
            "--log-level",
            "debug",
        ],
    )
    assert result.exit_code == 0, result.output
    assert calls == [
        {
            "port": 9000,
            "backend": "vllm",
            "gpu_memory_utilization": 0.5,
            "max_pixels": 1003520,
            "log_level": "debug",
        }
    ]


def test_serve_and_demo_without_the_server_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boxguard.server.serve", None)
    monkeypatch.setitem(sys.modules, "boxguard.demo.cli", None)
    for argv in (["serve"], ["demo"]):
        result = runner.invoke(cli.app, argv)
        assert result.exit_code == 1
        assert 'pip install "boxguard[server]"' in result.output


def test_demo_delegates(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[dict[str, object]] = []
    stub = types.ModuleType("boxguard.demo.cli")
    stub.run_demo = lambda **kw: calls.append(kw)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "boxguard.demo.cli", stub)
    result = runner.invoke(cli.app, ["demo", "--out", str(tmp_path / "d.png")])
    assert result.exit_code == 0, result.output
    assert calls == [{"out": tmp_path / "d.png", "port": 0, "model": None}]


def test_ground_draw_to_an_unwritable_place_is_one_line(
    monkeypatch: pytest.MonkeyPatch, image: Path, tmp_path: Path
) -> None:
    serve_with(monkeypatch, lambda r: ok(make_body(detections=[DET])))
    for target in (tmp_path / "missing" / "out.png", tmp_path / "out.unknown"):
        result = runner.invoke(cli.app, ["ground", str(image), "x", "--draw", str(target)])
        assert result.exit_code == 1
        assert result.stderr.strip().startswith(f"error: cannot write {target}")
        assert len(result.stderr.strip().splitlines()) == 1
