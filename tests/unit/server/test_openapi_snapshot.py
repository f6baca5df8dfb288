"""The committed openapi.json catches accidental API changes.

Regenerate after an intended change: BOXGUARD_UPDATE_OPENAPI=1 python -m pytest -k openapi
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from boxguard.server.app import create_app
from boxguard.server.settings import Settings

SNAPSHOT = Path(__file__).resolve().parents[3] / "openapi.json"


def test_openapi_matches_committed_snapshot() -> None:
    schema = create_app(Settings()).openapi()
    text = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    if os.environ.get("BOXGUARD_UPDATE_OPENAPI") == "1":
        SNAPSHOT.write_text(text)
    assert SNAPSHOT.is_file(), "openapi.json is missing; regenerate it (see module docstring)"
    assert json.loads(SNAPSHOT.read_text()) == json.loads(text), (
        "the API changed; if intended, regenerate openapi.json (see module docstring)"
    )


def test_openapi_documents_problem_responses() -> None:
    schema = create_app(Settings()).openapi()
    responses = schema["paths"]["/ground"]["post"]["responses"]
    for status in ("400", "413", "422", "429", "503"):
        assert "application/problem+json" in responses[status]["content"]
