"""Pure translation between boxguard and an OpenAI-compatible chat API (vLLM's server above all).

Nothing here does I/O: request bodies are dicts, answers are parsed into boxguard Completions,
and an answer that is not a chat completion is `UpstreamInvalid` (a 502), never a verdict.

Constraint forms, strongest first (`CONSTRAINT_FORMS`); the backend probes which one the upstream
enforces at start:

- `structured_outputs`: vLLM's `structured_outputs: {"grammar": EBNF}`, the language every
  in-process backend compiles (written without xgrammar by `constraint_grammar`);
- `guided_grammar`: the same grammar under older vLLM's name for it;
- `response_format`: `{"type": "json_schema"}`; the upstream compiles the schema itself, with its
  own whitespace rules (vLLM allows free whitespace, or compact `","` separators that Qwen never
  writes), so answers may be spaced differently and their confidences cover whitespace tokens,
  and the yes/no question runs unconstrained (P(yes) still comes from the top logprobs).
"""

from __future__ import annotations

import base64
import io
import ipaddress
import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from ..constraint_grammar import constraint_ebnf
from ..constraints import ANSWER_OPEN, THINK_CLOSE, THINK_OPEN, Constraint
from ..models.base import strip_special_tokens
from .base import Completion, GenerationRequest, TokenChoice, UpstreamInvalid
from .decoding import effective_n, forced
from .vllm_translate import align_pieces

if TYPE_CHECKING:
    from PIL import Image

ConstraintForm = Literal["structured_outputs", "guided_grammar", "response_format"]
CONSTRAINT_FORMS: tuple[ConstraintForm, ...] = (
    "structured_outputs",
    "guided_grammar",
    "response_format",
)
ImageFormat = Literal["png", "bmp"]
# Token ids are not part of the chat API; boxguard only reads the tokens' text and logprob.
UNKNOWN_TOKEN_ID = -2
# The most top_logprobs vLLM (and OpenAI) return per position.
TOP_LOGPROBS = 20
PROBE_ANSWER = "boxguard-probe"


def image_format(setting: str, upstream_url: str, form: ConstraintForm) -> ImageFormat:
    """The format the frame goes upstream in: `setting` unless `auto`, then BMP only when it
    saves CPU and costs no network: a vLLM-form upstream (vLLM opens every format of its
    allowlist, `ALLOWED_IMAGE_FORMATS` in vllm/multimodal/image.py, BMP included) on a loopback
    host. `response_format` upstreams may take only PNG, JPEG, GIF and WebP (OpenAI's list).

    Example:
        >>> image_format("auto", "http://127.0.0.1:8000/v1", "structured_outputs")
        'bmp'
        >>> image_format("auto", "http://vllm:8000/v1", "structured_outputs")
        'png'
    """
    if setting in ("png", "bmp"):
        return "bmp" if setting == "bmp" else "png"
    if form == "response_format":
        return "png"
    return "bmp" if is_loopback(urlsplit(upstream_url).hostname or "") else "png"


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine: localhost, 127.0.0.0/8 or ::1."""
    if host.rstrip(".").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name other than localhost: resolving it is not worth a start-up wait
        return False


def image_data_url(image: Image.Image, fmt: ImageFormat) -> str:
    """The image as a lossless data URL: the upstream sees the pixels boxguard resized.

    BMP is uncompressed: no zlib pass on either side, which on the 2-core bench box cost the
    gateway ~6 ms a 168x140 frame to encode (PNG, zlib level 1) and vLLM's front end ~2 ms to
    decode, for 13x the bytes (70 KB against 5.5 KB on the shapes frames). PNG at zlib level 1:
    a quarter of the default level's time, no larger on photos.
    """
    buffer = io.BytesIO()
    if fmt == "png":
        image.save(buffer, format="PNG", compress_level=1)
    else:
        image.save(buffer, format="BMP")
    return f"data:image/{fmt};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# Stands for the image in the dumped body: its escaped form occurs in no other value.
_IMAGE_SLOT = "\x00boxguard-image\x00"


def body_bytes(body: dict[str, Any], image_url: str | None) -> bytes:
    """`body` as compact JSON, `image_url` (an `image_data_url`: base64, nothing to escape)
    spliced in after dumps: dumps would scan its ~100 KB for characters to escape, which with
    httpx's own encoding cost the gateway 0.8 ms a request, this 0.1 ms."""
    if image_url is not None:
        body = {**body, "messages": [_slotted(m, image_url) for m in body["messages"]]}
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    if image_url is not None:
        text = text.replace(json.dumps(_IMAGE_SLOT), f'"{image_url}"')
    return text.encode()


def _slotted(message: dict[str, Any], image_url: str) -> dict[str, Any]:
    """`message` with `image_url` (that very string) replaced by the slot."""
    content = message["content"]
    if isinstance(content, str):
        return message
    parts = [
        {**part, "image_url": {**part["image_url"], "url": _IMAGE_SLOT}}
        if part.get("type") == "image_url" and part["image_url"]["url"] is image_url
        else part
        for part in content
    ]
    return {**message, "content": parts}


def constraint_fields(constraint: Constraint, form: ConstraintForm) -> dict[str, Any]:
    """The request fields that make the upstream enforce `constraint` in `form`.

    Example:
        >>> constraint_fields(Constraint(choices=("yes", "no")), "guided_grammar")
        {'guided_grammar': 'root ::= "yes" | "no"'}
    """
    if form == "response_format":
        if constraint.json_schema is None:
            return {}  # yes/no is read from the first position's top logprobs
        schema = {"name": "boxguard_answer", "schema": constraint.json_schema, "strict": True}
        return {"response_format": {"type": "json_schema", "json_schema": schema}}
    grammar = constraint_ebnf(constraint)
    if form == "guided_grammar":
        return {"guided_grammar": grammar}
    return {"structured_outputs": {"grammar": grammar}}


def messages(
    system_prompt: str | None, user_text: str, image_url: str | None, assistant: str | None = None
) -> list[dict[str, Any]]:
    """The chat: the family's system prompt, the image before the text, an assistant prefix."""
    chat: list[dict[str, Any]] = []
    if system_prompt:
        chat.append({"role": "system", "content": system_prompt})
    content: list[dict[str, Any]] = []
    if image_url is not None:
        content.append({"type": "image_url", "image_url": {"url": image_url}})
    content.append({"type": "text", "text": user_text})
    chat.append({"role": "user", "content": content})
    if assistant is not None:
        chat.append({"role": "assistant", "content": assistant})
    return chat


def _sampling(request: GenerationRequest, model: str) -> dict[str, Any]:
    """Fields shared by every call of one request."""
    body: dict[str, Any] = {
        "model": model,
        "temperature": max(0.0, request.temperature),
        "top_p": request.top_p,
        "logprobs": request.logprobs,
        "skip_special_tokens": True,
    }
    if request.seed is not None:
        body["seed"] = request.seed
    return body


def _continuing(body: dict[str, Any]) -> dict[str, Any]:
    """vLLM's fields that continue the last (assistant) message instead of opening a new one."""
    return {**body, "continue_final_message": True, "add_generation_prompt": False}


def answer_body(
    request: GenerationRequest,
    *,
    model: str,
    system_prompt: str | None,
    image_url: str | None,
    form: ConstraintForm,
) -> dict[str, Any]:
    """The one constrained call of an answer without think, or of a yes/no question."""
    chat = messages(system_prompt, request.user_text, image_url)
    body = {**_sampling(request, model), "messages": chat, "n": effective_n(request)}
    body.update(constraint_fields(request.constraint, form))
    if request.constraint.choices:  # yes/no: one token, its alternatives' logprobs
        body.update(max_tokens=1, logprobs=True, top_logprobs=TOP_LOGPROBS)
    else:
        body["max_tokens"] = request.constraint.max_tokens
    return body


def think_body(
    request: GenerationRequest, *, model: str, system_prompt: str | None, image_url: str | None
) -> dict[str, Any]:
    """Phase 1 of think: the free trace after an opened `<think>`, stopped at `</think>`."""
    chat = messages(system_prompt, request.user_text, image_url, assistant=THINK_OPEN)
    body = {**_sampling(request, model), "messages": chat, "n": effective_n(request)}
    return _continuing(
        {**body, "max_tokens": request.constraint.think_max_tokens, "stop": [THINK_CLOSE]}
    )


def continuation_body(
    request: GenerationRequest,
    think: str,
    index: int,
    *,
    model: str,
    system_prompt: str | None,
    image_url: str | None,
    form: ConstraintForm,
) -> dict[str, Any]:
    """Phase 2 of think: the answer after the `index`-th trace and the forced tags."""
    prefix = THINK_OPEN + strip_special_tokens(think) + THINK_CLOSE + "\n" + ANSWER_OPEN
    chat = messages(system_prompt, request.user_text, image_url, assistant=prefix)
    body = {**_sampling(request, model), "messages": chat, "n": 1}
    body["max_tokens"] = request.constraint.max_tokens
    if request.seed is not None:
        body["seed"] = request.seed + index  # as the vLLM backend seeds the children of n > 1
    body.update(constraint_fields(request.constraint, form))
    return _continuing(body)


def probe_body(model: str, form: ConstraintForm) -> dict[str, Any]:
    """A text-only call whose answer is PROBE_ANSWER only if the upstream enforces `form`."""
    schema = {"type": "string", "enum": [PROBE_ANSWER]}
    constraint = Constraint(choices=(PROBE_ANSWER,))
    fields = (
        {"response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": schema}}}
        if form == "response_format"
        else constraint_fields(constraint, form)
    )
    return {
        "model": model,
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 16,
        "temperature": 0.0,
        "logprobs": True,
        "top_logprobs": TOP_LOGPROBS,
        **fields,
    }


def probe_result(data: Any) -> tuple[bool, bool]:
    """(enforced, renormalized) from the probe's answer.

    Enforced: the answer is PROBE_ANSWER (a model does not write that unasked). Renormalized:
    the first position's top logprobs put all their mass on prefixes of it, i.e. the upstream
    reports logprobs after the grammar mask (vLLM's `--logprobs-mode processed_logprobs`).
    """
    completions, _ = parse_chat_completion(data)
    text = completions[0].text.strip()
    enforced = text.strip('"') == PROBE_ANSWER
    tops = _first_top_logprobs(data)
    target = text if enforced else PROBE_ANSWER
    mass = sum(math.exp(lp) for token, lp in tops.items() if token and target.startswith(token))
    return enforced, enforced and mass >= 0.99


def _first_top_logprobs(data: Any) -> dict[str, float]:
    """token -> logprob at the first position of the first choice ({} when not reported)."""
    try:
        position = data["choices"][0]["logprobs"]["content"][0]
        return {str(t["token"]): float(t["logprob"]) for t in position.get("top_logprobs") or ()}
    except (KeyError, IndexError, TypeError, ValueError):
        return {}


def yes_no_completion(data: Any) -> Completion:
    """A yes/no answer from the first position's top logprobs, renormalized over yes and no.

    P(yes) = the mass of the tokens that start "yes" over that of the tokens that start "yes" or
    "no" (the grammar's allowed first tokens), so it is the same whether the upstream reports
    logprobs before or after its grammar mask, and whether it enforces the grammar at all.
    """
    parse_chat_completion(data)  # a chat completion, or UpstreamInvalid
    tops = _first_top_logprobs(data)
    yes = sum(math.exp(lp) for t, lp in tops.items() if t and "yes".startswith(t))
    no = sum(math.exp(lp) for t, lp in tops.items() if t and "no".startswith(t))
    if yes + no <= 0.0:
        # No allowed token among the top ones: the caller's yes_probability says it is no answer.
        return Completion(text="", tokens=[])
    p_yes = yes / (yes + no)
    text = "yes" if p_yes >= 0.5 else "no"
    p_text = p_yes if text == "yes" else 1.0 - p_yes
    return Completion(text=text, tokens=[TokenChoice(UNKNOWN_TOKEN_ID, text, math.log(p_text))])


def _completion(choice: Mapping[str, Any]) -> Completion:
    """One choice as a Completion whose tokens concatenate to its text."""
    message = choice.get("message")
    content = message.get("content") if isinstance(message, Mapping) else None
    if not isinstance(content, str):
        raise UpstreamInvalid("a choice has no message content")
    logprobs = choice.get("logprobs") or {}
    positions = logprobs.get("content") if isinstance(logprobs, Mapping) else "?"
    positions = [] if positions is None else positions
    if not isinstance(positions, list):
        raise UpstreamInvalid("logprobs.content is not a list")
    try:
        pieces = [str(p["token"]) for p in positions]
        values = [max(-9999.0, float(p["logprob"])) for p in positions]
    except (KeyError, TypeError, ValueError) as exc:
        raise UpstreamInvalid(f"a logprob entry is malformed: {exc}") from None
    texts = align_pieces(content, pieces)
    tokens = [TokenChoice(UNKNOWN_TOKEN_ID, s, lp) for s, lp in zip(texts, values, strict=True)]
    while tokens and tokens[-1].text == "":  # the end-of-turn token, a stop string's tail
        tokens.pop()
    if not tokens and content:
        tokens = [forced(content)]
    return Completion(content, tokens, str(choice.get("finish_reason") or "stop"))


def parse_chat_completion(data: Any) -> tuple[list[Completion], int]:
    """(completions in choice order, prompt tokens) of a chat completion; else UpstreamInvalid."""
    choices = data.get("choices") if isinstance(data, Mapping) else None
    if not isinstance(choices, list) or not choices:
        raise UpstreamInvalid("the upstream's answer is not a chat completion (no choices)")
    if not all(isinstance(c, Mapping) for c in choices):
        raise UpstreamInvalid("the upstream's choices are not objects")
    indexes = [c.get("index", i) for i, c in enumerate(choices)]
    if not all(isinstance(i, int) for i in indexes):
        raise UpstreamInvalid("the upstream's choice indexes are not integers")
    ordered = [c for _, c in sorted(zip(indexes, choices, strict=True), key=lambda p: p[0])]
    usage = data.get("usage")
    prompt_tokens = usage.get("prompt_tokens") if isinstance(usage, Mapping) else None
    return [_completion(c) for c in ordered], prompt_tokens if isinstance(prompt_tokens, int) else 0


def served_models(data: Any) -> list[str]:
    """The model ids of a `/v1/models` answer; ValueError when it is not one."""
    entries = data.get("data") if isinstance(data, Mapping) else None
    if not isinstance(entries, list) or not all(
        isinstance(e, Mapping) and isinstance(e.get("id"), str) for e in entries
    ):
        raise ValueError("its /v1/models answer is not an OpenAI model list")
    return [str(e["id"]) for e in entries]


def pick_model(available: Sequence[str], wanted: str | None) -> str:
    """The upstream model to call: `wanted` if served, else the only one served.

    Example:
        >>> pick_model(["qwen"], None)
        'qwen'
    """
    if wanted is not None:
        if wanted not in available:
            raise ValueError(
                f"it does not serve {wanted!r} (it serves: {', '.join(available) or 'nothing'})"
            )
        return wanted
    if len(available) != 1:
        raise ValueError(
            f"it serves {len(available)} models ({', '.join(available)}); name one with "
            "--upstream-model"
        )
    return available[0]
