"""The one place a guard policy is assembled: request > flags/env > policy file > defaults.

The defaults are `guards.Policy`'s own. A policy file is a JSON object of Policy fields (keys
starting with `_` are notes, e.g. how it was calibrated); it is `--policy-file`, else the model
directory's `boxguard_policy.json` when it has one (the bundled checkpoint ships one). Flags and
`BOXGUARD_*` env override the file for the fields the server exposes; a request's `policy`
overrides everything, within the server's bounds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from boxguard.guards import Policy
from boxguard.guards.wire import PolicyInForce, PolicyLayer
from pydantic import ValidationError

from .errors import InvalidPolicy, validation_errors
from .settings import POLICY_SETTINGS, Settings

# Next to a checkpoint's config.json, as generation_config.json carries its sampling defaults.
POLICY_FILE = "boxguard_policy.json"


class PolicyFileError(ValueError):
    """The policy file is missing, not JSON, or not a valid Policy."""


def read_policy_file(path: Path) -> dict[str, Any]:
    """The Policy fields of a policy file (notes under `_` keys dropped), validated.

    Example:
        >>> read_policy_file(Path("calibrated.json"))  # doctest: +SKIP
        {'visual_check': True, 'visual_min_yes': 0.9958}
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PolicyFileError(f"cannot read the policy file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise PolicyFileError(f"{path} must hold a JSON object of Policy fields")
    fields = {key: value for key, value in data.items() if not key.startswith("_")}
    try:
        Policy.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise PolicyFileError(f"{path} is not a valid policy: {problems}") from None
    return fields


def policy_file_path(settings: Settings, model_dir: str) -> Path | None:
    """`--policy-file`, else the model directory's own policy file, else none."""
    if settings.policy_file:
        path = Path(settings.policy_file).expanduser()
        if not path.is_file():
            raise PolicyFileError(f"--policy-file {settings.policy_file}: no such file")
        return path
    if not model_dir:  # an upstream model: no checkpoint directory
        return None
    beside = Path(model_dir) / POLICY_FILE
    return beside if beside.is_file() else None


def server_policy(settings: Settings, model_dir: str) -> PolicyInForce:
    """The server-wide policy: flags/env over the policy file over the defaults."""
    path = policy_file_path(settings, model_dir)
    layers: list[tuple[PolicyLayer, dict[str, Any]]] = [
        ("file", read_policy_file(path) if path else {}),
        (
            "server",
            {n: getattr(settings, n) for n in POLICY_SETTINGS if getattr(settings, n) is not None},
        ),
    ]
    return _merge(PolicyInForce(values=Policy(), file=str(path) if path else None), layers)


def request_policy(
    base: PolicyInForce, overrides: dict[str, Any] | None, *, max_samples: int
) -> PolicyInForce:
    """Apply a request's overrides; out-of-range or unknown fields are a 422 invalid_policy."""
    if not overrides:
        return base
    try:
        applied = _merge(base, [("request", overrides)])
    except ValidationError as exc:
        raise InvalidPolicy(
            "the policy override is invalid", validation_errors(exc.errors(), within="policy")
        ) from None
    if applied.values.self_consistency_k > max_samples:
        raise InvalidPolicy(f"self_consistency_k may be at most {max_samples} on this server")
    return applied


def _merge(base: PolicyInForce, layers: list[tuple[PolicyLayer, dict[str, Any]]]) -> PolicyInForce:
    """Lay `layers` (lowest precedence first) over `base`, recording each field's source."""
    values = base.values.model_dump()
    sources = dict(base.sources)
    for layer, fields in layers:
        values.update(fields)
        sources.update(dict.fromkeys(fields, layer))
    return PolicyInForce(values=Policy.model_validate(values), sources=sources, file=base.file)
