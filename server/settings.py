"""Server settings: one pydantic-settings class, env prefix BOXGUARD_, CLI flags override."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# `boxguard serve --help` lists the flags in these panels, in this order, as `vllm serve --help`
# groups its own; a field named in none of them is listed under "Other".
FLAG_GROUPS: dict[str, tuple[str, ...]] = {
    "Server": (
        "host",
        "port",
        "api_keys",
        "metrics_require_key",
        "cors_origins",
        "log_level",
        "log_format",
        "header_timeout_s",
        "keep_alive_timeout_s",
        "max_connections",
    ),
    "Model": (
        "model",
        "model_name",
        "tokenizer",
        "backend",
        "device",
        "dtype",
        "load_format",
        "cpu_threads",
        "min_pixels",
        "max_pixels",
    ),
    "Generation": (
        "max_new_tokens",
        "think_max_tokens",
        "max_detections",
        "max_label_chars",
        "sample_temperature",
        "seed",
    ),
    "Scheduling": (
        "max_batch_size",
        "queue_size",
        "retry_after_s",
        "request_timeout_s",
        "backend_check_interval_s",
    ),
    "Request limits": (
        "max_body_bytes",
        "upload_timeout_s",
        "max_image_pixels",
        "min_image_side",
        "max_aspect_ratio",
        "image_url_enabled",
        "image_url_allowlist",
    ),
    "Guard policy": (
        "policy_file",
        "policy_force",
        "min_confidence",
        "visual_check",
        "self_consistency_k",
        "max_policy_samples",
    ),
    "Recording": ("record", "record_max_bytes", "record_queue_size"),
    "Upstream (--backend openai)": (
        "upstream_url",
        "upstream_model",
        "upstream_api_key",
        "family",
        "upstream_max_connections",
        "upstream_image_format",
    ),
    "vLLM engine": (
        "gpu_memory_utilization",
        "tensor_parallel_size",
        "data_parallel_size",
        "max_model_len",
        "max_num_seqs",
        "max_num_batched_tokens",
        "enforce_eager",
        "mm_processor_cache_gb",
        "enable_prefix_caching",
        "frame_resizer",
    ),
}


# Settings fields that are guard Policy fields of the same name (the "server" policy layer).
POLICY_SETTINGS = ("min_confidence", "visual_check", "self_consistency_k")


class Settings(BaseSettings):
    """Everything `boxguard serve` can be told; each field is also `BOXGUARD_<NAME>`.

    Example:
        >>> Settings(port=9000, backend="transformers").port
        9000
    """

    model_config = SettingsConfigDict(env_prefix="BOXGUARD_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8000, ge=0, le=65535, description="Port to listen on (0 = any free port).")
    model: str | None = Field(
        None, description="Local model directory; none = the bundled demo checkpoint."
    )
    model_name: str | None = Field(None, description="Name reported in responses.")
    backend: str = Field(
        "transformers",
        description="transformers (CPU or GPU), vllm (GPU) or openai (an upstream server).",
    )
    device: str = Field("auto", description="transformers backend device: auto, cpu, cuda.")
    dtype: str = Field("auto", description="auto, float32, bfloat16, float16.")
    cpu_threads: int | None = Field(
        None, ge=1, description="torch CPU threads; none = 1 for models under 50 M parameters."
    )
    min_pixels: int | None = Field(
        None, ge=1, description="Smallest model frame in pixels; none = the checkpoint's value."
    )
    max_pixels: int | None = Field(
        None,
        ge=1,
        description="Largest model frame in pixels; none = the checkpoint's value, else 1,003,520.",
    )
    max_new_tokens: int = Field(128, ge=8, le=4096, description="Answer token budget.")
    think_max_tokens: int = Field(256, ge=1, le=8192, description="Think trace token budget.")
    max_detections: int = Field(16, ge=1, le=100, description="Most boxes with multiple=true.")
    max_label_chars: int = Field(48, ge=1, le=512, description="Longest label in an answer.")
    max_batch_size: int = Field(8, ge=1, le=256, description="Most requests in one batch.")
    queue_size: int = Field(64, ge=1, description="Queued requests before 429.")
    retry_after_s: int = Field(1, ge=0, description="Retry-After on 429 and 503.")
    request_timeout_s: float = Field(120.0, gt=0, description="Deadline of one request (504).")
    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="Request body limit.")
    max_image_pixels: int = Field(
        40_000_000, ge=1, description="Refuse images declaring more pixels, before decoding."
    )
    min_image_side: int = Field(8, ge=1, description="Refuse images with a smaller side.")
    max_aspect_ratio: float = Field(
        200.0, gt=1, le=200.0, description="Refuse more elongated images (long/short side)."
    )
    image_url_enabled: bool = Field(False, description="Allow `image_url` in requests.")
    image_url_allowlist: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Hosts `image_url` may name (comma-separated in env)."
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Accepted API keys (comma-separated); empty = open."
    )
    metrics_require_key: bool = Field(False, description="Require the API key for /metrics.")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins allowed by CORS (comma-separated); empty = none."
    )
    policy_file: str | None = Field(
        None,
        description="Guard policy file (JSON Policy fields, e.g. from `boxguard calibrate`); "
        "none = the model directory's boxguard_policy.json if it has one.",
    )
    policy_force: bool = Field(
        False,
        description="Load a policy file even if it was calibrated on another model (its "
        "_model name or family differs from the served model's).",
    )
    # The policy fields a flag may set: none = the policy file's value, else the guards' default.
    min_confidence: float | None = Field(
        None, ge=0, le=1, description="Confidence threshold; none = policy file, else 0.25."
    )
    visual_check: bool | None = Field(
        None, description="Run the visual re-check; none = policy file, else off."
    )
    self_consistency_k: int | None = Field(
        None, ge=0, le=32, description="Sampled answers to compare; none = policy file, else 0."
    )
    sample_temperature: float = Field(0.7, gt=0, le=2, description="For self-consistency.")
    max_policy_samples: int = Field(8, ge=0, le=32, description="Most samples a request may ask.")
    seed: int = Field(0, description="Seed for sampled decoding.")
    upload_timeout_s: float = Field(
        60.0, gt=0, description="The whole request body must arrive within this (408)."
    )
    backend_check_interval_s: float = Field(
        2.0, gt=0, description="How often a dead backend is detected and restarted."
    )
    log_level: str = Field("info", description="debug, info, warning or error.")
    log_format: str = Field(
        "text",
        pattern="^(text|json)$",
        description="Log lines as text, or json: one object a line (each /ground request's "
        "id, status, outcome, reasons, latency_ms, backend as fields).",
    )
    header_timeout_s: float = Field(
        10.0, gt=0, description="A request line and headers must arrive within this, else close."
    )
    keep_alive_timeout_s: float = Field(
        5.0, gt=0, description="Close a keep-alive connection idle for this long."
    )
    max_connections: int = Field(
        1024, ge=1, description="Open connections; more are answered 503 and closed."
    )
    # vLLM engine arguments (the vllm backend only).
    gpu_memory_utilization: float = Field(
        0.9, gt=0, le=1, description="Share of each GPU's memory vLLM may take."
    )
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one model is split across.")
    data_parallel_size: int = Field(1, ge=1, description="vLLM engine cores (model replicas).")
    max_model_len: int | None = Field(
        None, ge=256, description="Context length; none = the model's."
    )
    max_num_seqs: int | None = Field(
        None,
        ge=1,
        description="Sequences one engine runs at once; none = `vllm serve`'s default for the "
        "hardware (docs/vllm.md).",
    )
    max_num_batched_tokens: int | None = Field(
        None,
        ge=1,
        description="Tokens one engine step takes (prefill chunks included); none = "
        "`vllm serve`'s default for the hardware (docs/vllm.md).",
    )
    load_format: str = Field(
        "auto",
        description="auto = the checkpoint's weights; dummy = random weights from config.json "
        "(both backends); other values are vLLM load formats.",
    )
    enforce_eager: bool = Field(False, description="Disable CUDA graphs (slower, less memory).")
    mm_processor_cache_gb: float | None = Field(
        None,
        ge=0,
        description="vLLM's cache of processed images, keyed by their pixels; 0 = off (every "
        "image is new, as in most grounding traffic); none = vLLM's default.",
    )
    enable_prefix_caching: bool | None = Field(
        None,
        description="vLLM's reuse of the KV cache of a prompt's start, images included; "
        "none = vLLM's default (on).",
    )
    frame_resizer: str = Field(
        "pil",
        pattern="^(pil|engine)$",
        description="Who resizes an image to the model frame: pil = boxguard, with PIL's bicubic "
        "(Qwen's own pipeline; the same frames on every backend); engine = vLLM's processor, as "
        "vLLM's own server does (about 1 ms of CPU less a request; vllm backend only). Either "
        "way boxes map from the same frame, and the vllm backend checks the engine's image "
        "tokens against it.",
    )
    tokenizer: str | None = Field(None, description="Tokenizer directory if not the model's.")
    # The openai backend: boxguard in front of an OpenAI-compatible VLM server.
    upstream_url: str | None = Field(
        None, description="The upstream's OpenAI base URL, e.g. http://vllm:8000/v1."
    )
    upstream_model: str | None = Field(
        None, description="The upstream model to call; none = the only one it serves."
    )
    upstream_api_key: str | None = Field(None, description="Bearer key for the upstream.")
    family: str | None = Field(
        None, description="The upstream model's family: qwen2_5_vl, qwen2_vl or qwen3_vl."
    )
    upstream_max_connections: int = Field(
        64, ge=1, description="Connections to the upstream; queue_size more requests may wait."
    )
    upstream_image_format: str = Field(
        "auto",
        pattern="^(auto|png|bmp)$",
        description="How the frame goes upstream: bmp (uncompressed, least CPU, ~3 MB a "
        "megapixel), png (zlib level 1, far smaller) or auto = bmp to a vLLM-form upstream on "
        "a loopback host (localhost, 127.0.0.0/8, ::1), png otherwise.",
    )
    record: str | None = Field(
        None,
        description="Record each /ground request for review and fine-tuning (docs/recording.md): "
        "a directory or sqlite:///path/records.db (one server), or postgresql://... (replicas).",
    )
    record_max_bytes: int = Field(
        10 * 1024**3, ge=0, description="Record store size cap, oldest pruned first; 0 = none."
    )
    record_queue_size: int = Field(
        256, ge=1, description="Records waiting for the writer; more are dropped and counted."
    )

    @model_validator(mode="after")
    def _engine_frames_need_vllm(self) -> Settings:
        if self.frame_resizer == "engine" and self.backend != "vllm":
            raise ValueError(
                f"frame_resizer=engine needs --backend vllm (got {self.backend}): the other "
                "backends take frames boxguard resized"
            )
        return self

    @field_validator("image_url_allowlist", "api_keys", "cors_origins", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value
