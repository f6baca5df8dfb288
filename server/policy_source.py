"""The one place a guard policy is assembled: request > flags/env > policy file > defaults.

The defaults are `guards.Policy`'s own. A policy file is a JSON object of Policy fields (keys
starting with `_` are notes, e.g. how it was calibrated); it is `--policy-file`, else the model
directory's `boxguard_policy.json` when it has one (the bundled checkpoint ships one). Flags and
`BOXGUARD_*` env override the file for the fields the server exposes; a request's `policy`
overrides everything, within the server's bounds. A file `boxguard calibrate` wrote names its
model (`_model`; another model's file refuses to load unless `--policy-force`) and may hold one
policy per certified risk (`_by_risk`), which a request picks with `{"max_risk": 0.1}`.
"""

from __future__ import annotations

import functools
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


def _read_json(path: Path) -> dict[str, Any]:
    """The policy file's JSON object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PolicyFileError(f"cannot read the policy file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise PolicyFileError(f"{path} must hold a JSON object of Policy fields")
    return data


def _policy_fields(data: dict[str, Any], where: str) -> dict[str, Any]:
    """The Policy fields of a JSON object (notes under `_` keys dropped), validated."""
    fields = {key: value for key, value in data.items() if not key.startswith("_")}
    try:
        Policy.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise PolicyFileError(f"{where} is not a valid policy: {problems}") from None
    return fields


def read_policy_file(path: Path) -> dict[str, Any]:
    """The Policy fields of a policy file (notes under `_` keys dropped), validated.

    Example:
        >>> read_policy_file(Path("calibrated.json"))  # doctest: +SKIP
        {'visual_check': True, 'visual_min_yes': 0.9958}
    """
    return _policy_fields(_read_json(path), str(path))


@functools.lru_cache(maxsize=8)
def calibrated_policies(path: str) -> dict[float, dict[str, Any]]:
    """The policy per calibrated risk that `boxguard calibrate` wrote under `_by_risk`.

    Example:
        >>> calibrated_policies("policy.json")  # doctest: +SKIP
        {0.1: {'visual_check': True, 'visual_min_yes': 0.98, 'accept_no_object': False}}
    """
    by_risk = _read_json(Path(path)).get("_by_risk") or {}
    if not isinstance(by_risk, dict):
        raise PolicyFileError(f"{path}: _by_risk must map risks to policies")
    out: dict[float, dict[str, Any]] = {}
    for key, fields in by_risk.items():
        try:
            risk = float(key)
        except ValueError:
            raise PolicyFileError(f"{path}: _by_risk key {key!r} is not a risk") from None
        if not isinstance(fields, dict):
            raise PolicyFileError(f"{path}: _by_risk[{key!r}] must be an object")
        out[risk] = _policy_fields(fields, f"{path} _by_risk[{key!r}]")
    return out


def check_model(path: Path, served: str | None, model_dir: str, *, beside: bool) -> None:
    """Refuse a policy file calibrated on another model: its `_model` name or family differs
    from the served model's (the name is not compared for the model directory's own file)."""
    model = _read_json(path).get("_model")
    if not isinstance(model, dict):
        return
    config = Path(model_dir) / "config.json" if model_dir else None
    family = (
        json.loads(config.read_text()).get("model_type") if config and config.is_file() else None
    )
    wrong = []
    if model.get("family") and family and model["family"] != family:
        wrong.append(f"family {model['family']!r}, this model's is {family!r}")
    if not beside and model.get("name") and served and model["name"] != served:
        wrong.append(f"model {model['name']!r}, this server serves {served!r}")
    if wrong:
        raise PolicyFileError(
            f"{path} was calibrated on another model ({'; '.join(wrong)}): recalibrate with "
            "`boxguard calibrate`, or load it anyway with --policy-force"
        )


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


def server_policy(
    settings: Settings, model_dir: str, model_name: str | None = None
) -> PolicyInForce:
    """The server-wide policy: flags/env over the policy file over the defaults. A file
    calibrated on a model other than `model_name` (the served name) refuses to load unless
    `policy_force`."""
    path = policy_file_path(settings, model_dir)
    if path is not None:
        if not settings.policy_force:
            check_model(path, model_name, model_dir, beside=not settings.policy_file)
        calibrated_policies(str(path))
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
    overrides = dict(overrides)
    layers: list[tuple[PolicyLayer, dict[str, Any]]] = []
    if "max_risk" in overrides:
        layers.append(("request", _risk_policy(base.file, overrides.pop("max_risk"))))
    try:
        applied = _merge(base, [*layers, ("request", overrides)])
    except ValidationError as exc:
        raise InvalidPolicy(
            "the policy override is invalid", validation_errors(exc.errors(), within="policy")
        ) from None
    if applied.values.self_consistency_k > max_samples:
        raise InvalidPolicy(f"self_consistency_k may be at most {max_samples} on this server")
    return applied


def _risk_policy(file: str | None, risk: Any) -> dict[str, Any]:
    """The policy file's policy for `max_risk`; a 422 naming the calibrated risks otherwise."""
    calibrated = calibrated_policies(file) if file else {}
    listed = ", ".join(f"{r:g}" for r in sorted(calibrated)) or "none (no calibrated policy file)"
    if isinstance(risk, (int, float)) and not isinstance(risk, bool):
        for known, fields in calibrated.items():
            if abs(known - risk) < 1e-9:
                return fields
    raise InvalidPolicy(f"max_risk {risk!r} is not calibrated on this server; calibrated: {listed}")


def _merge(base: PolicyInForce, layers: list[tuple[PolicyLayer, dict[str, Any]]]) -> PolicyInForce:
    """Lay `layers` (lowest precedence first) over `base`, recording each field's source."""
    values = base.values.model_dump()
    sources = dict(base.sources)
    for layer, fields in layers:
        values.update(fields)
        sources.update(dict.fromkeys(fields, layer))
    return PolicyInForce(values=Policy.model_validate(values), sources=sources, file=base.file)
