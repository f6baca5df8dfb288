"""The README stays true: configuration table, error codes, metrics, `demo.png`, troubleshooting."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    """The text of one `## ` or `### ` section."""
    match = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^#+ )", README, re.M | re.S)
    assert match, f"no section {title!r}"
    return match.group(1)


def test_configuration_table_names_exactly_the_settings() -> None:
    settings = pytest.importorskip("boxguard.server.settings")
    rows = [line for line in _section("Configuration").splitlines() if line.startswith("| `")]
    named = {name for row in rows for name in re.findall(r"`([A-Z0-9_]+)`", row.split("|")[1])}
    assert named == {name.upper() for name in settings.Settings.model_fields}


def test_configuration_table_groups_are_the_help_panels() -> None:
    settings = pytest.importorskip("boxguard.server.settings")
    groups = re.findall(r"^\| \*\*(.+?)\*\* \|", _section("Configuration"), re.M)
    assert groups == list(settings.FLAG_GROUPS)


def test_demo_png_lands_in_the_current_directory_and_is_ignored() -> None:
    assert "writes `demo.png` into\nthe current directory" in README
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(["git", "check-ignore", "-q", "demo.png"], cwd=ROOT)
    assert ignored.returncode == 0, "demo.png is not in .gitignore"


def test_troubleshooting_covers_what_users_hit_first() -> None:
    text = " ".join(_section("Troubleshooting").split())
    for topic in ("No GPU visible", "without a `config.json`", "Port in use", "Image too large"):
        assert re.search(rf"\*\*[^*]*{re.escape(topic)}[^*]*\*\*", text), topic
    # The messages quoted are the ones serve prints (tests/integration/test_serve_command.py).
    for message in ("torch sees no CUDA GPU", "(no config.json)", "is already in use"):
        assert message in text, message
    for code in ("payload_too_large", "image_too_many_pixels"):
        assert f"`{code}`" in text


def test_error_table_names_every_problem_code() -> None:
    errors = pytest.importorskip("boxguard.server.errors")
    pytest.importorskip("boxguard.server.app")  # every module with a problem, whatever ran first
    pending = [errors.BoxguardServerError]
    sent = set()
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.status_code < 500 and cls.status_code != 499:  # 499: the client left, no answer
            sent.add((cls.status_code, cls.code))
    rows = [line for line in _section("API").splitlines() if re.match(r"^\| \d{3} \|", line)]
    table = {(int(row.split("|")[1]), code) for row in rows for code in re.findall(r"`(\w+)`", row)}
    assert sent <= table


def test_metrics_row_names_every_metric() -> None:
    metrics = pytest.importorskip("boxguard.server.metrics")
    row = next(line for line in _section("API").splitlines() if line.startswith("| `GET /metrics`"))
    names = {
        metric.name.removesuffix("_total")
        for collector in vars(metrics.get_metrics()).values()
        for metric in collector.describe()
    }
    assert names <= {name.removesuffix("_total") for name in re.findall(r"`(boxguard_\w+)", row)}


def test_quickstart_is_two_one_line_commands_in_a_virtualenv() -> None:
    """One command installs and runs the demo, one installs and runs the tests."""
    blocks = re.findall(r"^```bash\n(.*?)^```", _section("Quickstart"), re.M | re.S)
    assert [len(block.strip().splitlines()) for block in blocks] == [1, 1]
    demo, tests = (block.strip() for block in blocks)
    for command in (demo, tests):
        assert command.startswith("python3 -m venv .venv && . .venv/bin/activate && ")
    assert demo.endswith("boxguard demo") and tests.endswith("python -m pytest -q")


def test_the_training_notebook_lives_in_docs() -> None:
    assert "python -m boxguard.demo.train" not in README
    assert "(docs/demo-training.md)" in README
    assert "python -m boxguard.demo.train" in (ROOT / "docs" / "demo-training.md").read_text()


def test_json_curl_example_streams_the_body() -> None:
    """A photo's base64 in one shell argument fails with `Argument list too long`."""
    serving = re.findall(r"^```bash\n(.*?)^```", _section("Serving"), re.M | re.S)[0]
    assert "$(base64" not in serving
    assert serving.index("-F image=@") < serving.index("--data-binary @-")


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    """CI runs what a user runs: the Quickstart's second command, as it is written."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    test_command = next(b.strip() for b in blocks if "python -m pytest" in b)
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci
