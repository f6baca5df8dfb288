"""`boxguard serve`: settings from BOXGUARD_* env with CLI flags on top, checks, then uvicorn.

Every `Settings` field is a flag: `serve_flags()` builds them from the fields (description = help
text, default, panel from `FLAG_GROUPS`), so flags, env and docs cannot drift apart.
"""

from __future__ import annotations

import errno
import inspect
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import NoneType, UnionType
from typing import TYPE_CHECKING, Annotated, Any, Union, get_args, get_origin

import typer
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from .settings import FLAG_GROUPS, Settings

if TYPE_CHECKING:
    import uvicorn

OTHER_GROUP = "Other"


class ServeError(Exception):
    """A setting, the model directory, the GPU or the port stops `serve` before it loads."""


def flag_name(field: str) -> str:
    """The CLI flag of a settings field: max_new_tokens -> --max-new-tokens."""
    return "--" + field.replace("_", "-")


def _flag_type(field: FieldInfo) -> type:
    """The type a flag parses: optional types unwrapped, lists as comma-separated text."""
    annotation = field.annotation
    if get_origin(annotation) in (Union, UnionType):
        (annotation,) = [arg for arg in get_args(annotation) if arg is not NoneType]
    if get_origin(annotation) is list:
        return str
    assert isinstance(annotation, type), annotation
    return annotation


def _flag(name: str, field: FieldInfo, group: str) -> inspect.Parameter:
    """One keyword parameter of the serve command, annotated with its typer option."""
    flag_type = _flag_type(field)
    decls = [flag_name(name)]
    if flag_type is bool:
        decls = [f"{flag_name(name)}/--no-{flag_name(name)[2:]}"]
    default = None if field.default_factory is not None else field.default
    option = typer.Option(*decls, help=field.description, rich_help_panel=group)
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=default,
        annotation=Annotated[flag_type | None, option],
    )


def serve_flags() -> list[inspect.Parameter]:
    """Typer parameters for every Settings field, grouped and ordered as FLAG_GROUPS says.

    Example:
        >>> [p.name for p in serve_flags()][:2]
        ['host', 'port']
    """
    group_of = {name: group for group, names in FLAG_GROUPS.items() for name in names}
    order = list(group_of)
    fields = sorted(
        Settings.model_fields.items(),
        key=lambda item: order.index(item[0]) if item[0] in group_of else len(order),
    )
    return [_flag(name, field, group_of.get(name, OTHER_GROUP)) for name, field in fields]


def _setting_error(error: dict[str, Any]) -> str:
    """One validation error as the flag and the env var it came from."""
    name = str(error["loc"][0]) if error["loc"] else "settings"
    return f"{flag_name(name)} (BOXGUARD_{name.upper()}): {error['msg']}"


def build_settings(overrides: dict[str, Any]) -> Settings:
    """Env first, then every CLI flag that was given (None = not given)."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        raise ServeError("; ".join(_setting_error(dict(e)) for e in errors)) from None


def check_model(settings: Settings) -> None:
    """A given --model must be a local checkpoint directory of a family boxguard knows."""
    if settings.model is None:
        return
    from .model_source import resolve_model_dir
    from .models import UnsupportedModel, adapter_for

    try:
        model_dir, _ = resolve_model_dir(settings.model)
        adapter_for(model_dir)
    except (FileNotFoundError, UnsupportedModel) as exc:
        raise ServeError(str(exc)) from None
    except (OSError, ValueError) as exc:  # unreadable or not JSON
        raise ServeError(f"cannot read {settings.model}/config.json: {exc}") from None


def check_device(settings: Settings) -> None:
    """--device cuda fails here, in one line, when no CUDA GPU is visible."""
    if settings.backend != "transformers" or not settings.device.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        raise ServeError(
            f"--device {settings.device}, but torch sees no CUDA GPU (torch "
            f"{torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); see Troubleshooting "
            "in the README"
        )


def check_backend(settings: Settings) -> None:
    """--backend vllm without vLLM importable fails here, in one line, with the install hint."""
    if settings.backend != "vllm":
        return
    from .backends.vllm_backend import _import_vllm

    try:
        _import_vllm()  # the backend imports it again at start; this one fills the module cache
    except ImportError as exc:
        cause = exc.__cause__ or exc
        raise ServeError(f"--backend vllm: {exc} ({type(cause).__name__}: {cause})") from None


def check_upstream(settings: Settings) -> None:
    """--backend openai: --upstream-url and --family are given, and its /v1/models serves the
    model; a wrong URL, a missing model or a server that is not OpenAI-compatible is one line."""
    if settings.backend != "openai":
        return
    import httpx

    from .backends.openai_backend import upstream_headers
    from .backends.openai_translate import pick_model, served_models
    from .models import ADAPTERS

    if not settings.upstream_url:
        raise ServeError("--backend openai needs --upstream-url, e.g. http://vllm:8000/v1")
    if settings.family not in ADAPTERS:
        raise ServeError(f"--backend openai needs --family, one of: {', '.join(ADAPTERS)}")
    if settings.model is not None:
        raise ServeError("--model is a local checkpoint; --backend openai takes --upstream-model")
    url = settings.upstream_url.rstrip("/") + "/models"
    try:
        response = httpx.get(url, headers=upstream_headers(settings.upstream_api_key), timeout=10)
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        raise ServeError(f"--upstream-url: cannot reach {url}: {reason}") from None
    if response.status_code != 200:
        hint = (
            "check --upstream-api-key"
            if response.status_code in (401, 403)
            else "is it an OpenAI-compatible server's /v1 URL?"
        )
        raise ServeError(f"--upstream-url: {url} answered {response.status_code}; {hint}")
    try:
        available = served_models(response.json())
    except ValueError:  # not JSON, or not {"data": [{"id": ...}]}
        raise ServeError(
            f"--upstream-url: {url} is not an OpenAI model list; is it an OpenAI-compatible "
            "server's /v1 URL?"
        ) from None
    try:
        pick_model(available, settings.upstream_model)
    except ValueError as exc:
        raise ServeError(f"--upstream-url {settings.upstream_url}: {exc}") from None


def listen_socket(host: str, port: int) -> socket.socket:
    """A bound socket for the server, so a busy port fails before the model loads."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ServeError(
                f"{host}:{port} is already in use (another boxguard?); stop it or pick another "
                "--port"
            ) from None
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def listen_url(sock: socket.socket) -> str:
    """The URL a bound socket serves on, with the port the OS picked for --port 0."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def uvicorn_config(app: Any, settings: Settings, **kwargs: Any) -> uvicorn.Config:
    """uvicorn's Config with boxguard's connection limits and access-log scrubbing."""
    import uvicorn

    from .connections import SCRUB_SECRETS, protocol_for

    config = uvicorn.Config(app, http=protocol_for(settings), **kwargs)
    # After Config: it (re)configures uvicorn's loggers; addFilter ignores a second add.
    logging.getLogger("uvicorn.access").addFilter(SCRUB_SECRETS)
    return config


def run(overrides: dict[str, Any]) -> None:
    """Check settings, model, GPU and port, then serve until SIGINT/SIGTERM (draining requests)."""
    settings = build_settings(overrides)
    check_model(settings)
    check_device(settings)
    check_backend(settings)
    check_upstream(settings)
    sock = listen_socket(settings.host, settings.port)

    import uvicorn

    from .access_log import configure_logging
    from .app import create_app

    # uvicorn re-raises SIGTERM after draining; exit 0 then, as a clean shutdown should.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    configure_logging(settings.log_level, settings.log_format)
    # uvicorn logs no "running on" line for a socket it is handed, so name the port here.
    logging.getLogger("boxguard.server").info("listening on %s", listen_url(sock))
    config = uvicorn_config(
        create_app(settings),
        settings,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=int(settings.request_timeout_s),
        # None: uvicorn's loggers propagate to the root handler, so they are JSON too.
        **({"log_config": None} if settings.log_format == "json" else {}),
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


@contextmanager
def serve_in_thread(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    timeout_s: float = 300,
    settings: Settings | None = None,
    ready_path: str = "/readyz",
) -> Iterator[str]:
    """Serve `app` with uvicorn in a background thread until the block exits; yields its URL.
    `settings` gives the connection limits (default: Settings()'s).

    Example:
        >>> with serve_in_thread(create_app(Settings())) as url:  # doctest: +SKIP
        ...     httpx.get(url + "/readyz")
    """
    import httpx
    import uvicorn

    sock = listen_socket(host, port)
    base_url = listen_url(sock)
    config = uvicorn_config(app, settings or Settings(), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                if httpx.get(base_url + ready_path, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the server did not become ready")
            time.sleep(0.1)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        sock.close()
