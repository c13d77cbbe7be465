"""Offline token estimates for one LLM call.

tiktoken downloads its rank files on first use; agentbudget ships the verified
``o200k_base`` and ``cl100k_base`` files inside the package and builds the encodings
from them with tiktoken's own constructor arguments, checking tiktoken's expected
SHA-256, so counting never touches the network.

OpenAI models are counted with their own encoding plus the cookbook's message
overheads. Models without a public tokenizer (Anthropic, Google, ...) are counted with
``o200k_base`` times a documented factor (``APPROXIMATION_FACTOR``) and marked as
estimates.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import json
import threading
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import tiktoken
from agents import FunctionTool, Handoff
from agents.agent_output import AgentOutputSchemaBase

from . import media

__all__ = [
    "APPROXIMATION_FACTOR",
    "TokenEstimate",
    "count_item",
    "count_text",
    "count_tools",
    "count_tools_with",
    "encoding_for_model",
    "estimate_call_input",
    "get_encoding",
    "input_upper_bound",
]

APPROXIMATION_FACTOR = {"anthropic": 1.2, "google": 1.1, "other": 1.2}
"""Multipliers on the o200k_base count for models whose tokenizer is not public.

Anthropic's tokenizer yields roughly 10-20% more tokens than o200k_base on English
text and code; Gemini's roughly 0-10%. Rounded up, so estimates err high.
"""

TOKENS_PER_MESSAGE = 3
"""OpenAI cookbook: every message costs 3 tokens of framing."""
TOKENS_PER_REPLY = 3
"""OpenAI cookbook: every reply is primed with 3 tokens."""
TOKENS_PER_TOOL = 8
"""Framing per tool definition (name, description and schema are counted as text)."""

_LOCK = threading.Lock()
_ENCODINGS: dict[str, tiktoken.Encoding] = {}


def _ranks_from_package(name: str, expected_hash: str) -> dict[bytes, int]:
    blob = resources.files("agentbudget").joinpath(f"data/tokenizers/{name}.tiktoken.gz")
    contents = gzip.decompress(blob.read_bytes())
    actual = hashlib.sha256(contents).hexdigest()
    if actual != expected_hash:
        raise RuntimeError(
            f"agentbudget's bundled {name} rank file has SHA-256 {actual}, but tiktoken expects "
            f"{expected_hash}; reinstall agentbudget"
        )
    ranks: dict[bytes, int] = {}
    for line in contents.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def get_encoding(name: str) -> tiktoken.Encoding:
    """The tiktoken ``Encoding`` ``name`` (``o200k_base`` or ``cl100k_base``), built offline."""
    encoding = _ENCODINGS.get(name)
    if encoding is not None:
        return encoding
    with _LOCK:
        if name not in _ENCODINGS:
            from tiktoken_ext import openai_public

            constructor = getattr(openai_public, name, None)
            if name not in ("o200k_base", "cl100k_base") or constructor is None:
                raise ValueError(f"unknown encoding {name!r}; use o200k_base or cl100k_base")
            # tiktoken's constructor gives the pattern, special tokens and expected hash; its
            # loader would download the ranks, so it is replaced by the bundled copy for the
            # duration of this one call (under the lock).
            original = openai_public.load_tiktoken_bpe

            def load_bundled(_url: str, expected_hash: str | None = None) -> dict[bytes, int]:
                if expected_hash is None:
                    raise RuntimeError(f"tiktoken gave no expected hash for {name}")
                return _ranks_from_package(name, expected_hash)

            openai_public.load_tiktoken_bpe = load_bundled
            try:
                spec = constructor()
            finally:
                openai_public.load_tiktoken_bpe = original
            _ENCODINGS[name] = tiktoken.Encoding(**spec)
    return _ENCODINGS[name]


@functools.lru_cache(maxsize=1_024)
@functools.lru_cache(maxsize=1_024)
def encoding_for_model(model: str) -> tuple[str, str | None]:
    """``(encoding name, approximation family or None)`` for a model name (memoised: it
    is asked several times before every call)."""
    name = model.lower().rsplit("/", 1)[-1]
    if name.startswith(("gpt-4-", "gpt-3.5")) or name == "gpt-4":
        return "cl100k_base", None
    if name.startswith(("gpt-", "o1", "o3", "o4", "chatgpt", "codex", "computer-use")):
        return "o200k_base", None
    if name.startswith("claude"):
        return "o200k_base", "anthropic"
    if name.startswith(("gemini", "gemma")):
        return "o200k_base", "google"
    return "o200k_base", "other"


def count_text(text: str, encoding: tiktoken.Encoding) -> int:
    """Tokens in ``text``, with special-token text counted as ordinary text.

    Counts are cached: instructions, tool schemas and earlier conversation items repeat
    on every call of a run.
    """
    if not text:
        return 0
    if len(text) > _CACHE_MAX_TEXT:
        return len(encoding.encode(text, disallowed_special=()))
    return _count_cached(text, encoding.name)


_CACHE_MAX_TEXT = 65_536


@functools.lru_cache(maxsize=8_192)
def _count_cached(text: str, encoding_name: str) -> int:
    return len(get_encoding(encoding_name).encode(text, disallowed_special=()))


def count_tools(model: str, tool_schemas: Sequence[dict[str, Any]]) -> int:
    """Tokens of the tool definitions sent with a call (before any approximation factor)."""
    return count_tools_with(encoding_for_model(model)[0], tool_schemas)


def count_tools_with(encoding_name: str, tool_schemas: Sequence[dict[str, Any]]) -> int:
    """``count_tools`` with the encoding given by name."""
    encoding = get_encoding(encoding_name)
    return sum(
        TOKENS_PER_TOOL
        + count_text(
            json.dumps(schema, ensure_ascii=False, sort_keys=True, separators=(",", ":")), encoding
        )
        for schema in tool_schemas
    )


@dataclass(frozen=True)
class TokenEstimate:
    """An estimate of one call's input tokens."""

    tokens: int
    encoding: str
    approximate: bool
    """True for models without a public tokenizer (a factor was applied)."""


def _text_of(item: Any) -> Iterable[str]:
    """The strings of an input item that the model will read."""
    if isinstance(item, str):
        yield item
        return
    if hasattr(item, "model_dump"):
        item = item.model_dump(exclude_none=True)
    if isinstance(item, dict):
        content = item.get("content")
        if isinstance(content, str) and set(item) <= {"role", "content", "type", "id", "status"}:
            yield str(item.get("role", ""))
            yield content
            return
        yield json.dumps(item, ensure_ascii=False, default=str, separators=(",", ":"))
        return
    yield str(item)


def count_item(item: Any, encoding: tiktoken.Encoding, model: str = "") -> int:
    """Tokens of one input item, with its message framing (before any approximation).

    The SDK rebuilds the conversation's items on every turn; a flat item (string values
    only) is counted once per content and cached. Images and files inside an item count
    by their own rules for ``model`` (``agentbudget.media``), never as text.
    """
    if isinstance(item, dict):
        flat = tuple(item.items())
        try:
            return _count_flat_item(flat, encoding.name)
        except TypeError:  # a nested (unhashable) value: count it directly
            pass
    elif hasattr(item, "model_dump"):
        item = item.model_dump(exclude_none=True)
    media = 0
    if isinstance(item, dict) and _has_parts(item):
        item, media = _strip_media(item, model)
    return TOKENS_PER_MESSAGE + media + sum(count_text(text, encoding) for text in _text_of(item))


_MEDIA_PLACEHOLDER = "[media]"


def _has_parts(item: dict[str, Any]) -> bool:
    return any(isinstance(value, list | dict) for value in item.values())


def _strip_media(value: Any, model: str) -> tuple[Any, int]:
    """``value`` with every image, audio, file and opaque base64 payload replaced by a
    placeholder, and their tokens (``agentbudget.media``): never tokenized as text."""
    if isinstance(value, list):
        tokens = 0
        out: list[Any] = []
        for element in value:
            stripped, counted = _strip_media(element, model)
            out.append(stripped)
            tokens += counted
        return out, tokens
    if not isinstance(value, dict):
        return value, 0
    kind = value.get("type")
    if kind in _IMAGE_PARTS or (kind is None and "image_url" in value):
        return _MEDIA_PLACEHOLDER, media.image_part_tokens(model, value)
    if kind == "input_file" or (kind is None and "file_data" in value):
        name = value.get("filename")
        return (name if isinstance(name, str) else _MEDIA_PLACEHOLDER), media.file_tokens(value)
    if kind == "file" and isinstance(value.get("file"), dict):  # Chat Completions file part
        return _MEDIA_PLACEHOLDER, media.file_tokens(value["file"])
    if kind == "input_audio":
        audio = value.get("input_audio", value)
        data = audio.get("data") if isinstance(audio, dict) else None
        return _MEDIA_PLACEHOLDER, media.audio_tokens(data if isinstance(data, str) else "")
    tokens = 0
    out_dict: dict[str, Any] = {}
    for key, element in value.items():
        if isinstance(element, list | dict):
            element, counted = _strip_media(element, model)
            tokens += counted
        elif isinstance(element, str) and len(element) > _OPAQUE_MIN:
            opaque = media.opaque_tokens(model, key, element)
            if opaque is not None:
                element = _MEDIA_PLACEHOLDER
                tokens += opaque
        out_dict[key] = element
    return out_dict, tokens


_IMAGE_PARTS = frozenset({"input_image", "image_url", "computer_screenshot"})
_OPAQUE_MIN = 256


def _utf8_len(text: object) -> int:
    if text.__class__ is not str:
        return len(str(text).encode("utf-8"))
    assert isinstance(text, str)
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _item_upper_bound(item: Any, encoding: tiktoken.Encoding, model: str) -> int:
    """At least as many tokens as ``count_item`` counts, without tokenizing flat items."""
    if isinstance(item, str):
        return TOKENS_PER_MESSAGE + _utf8_len(item)
    if isinstance(item, dict):
        total = 0
        for key, value in item.items():
            if value.__class__ is str:
                # a BPE token is at least one byte; JSON escaping at most doubles a string
                size = len(value) if value.isascii() else len(value.encode("utf-8"))
                key_size = len(key) if key.__class__ is str and key.isascii() else _utf8_len(key)
                total += 2 * (size + key_size) + 8
            elif value is None or isinstance(value, bool | int | float):
                total += 2 * _utf8_len(key) + 32
            else:
                return count_item(item, encoding, model)
        return TOKENS_PER_MESSAGE + total + 2
    return count_item(item, encoding, model)


def input_upper_bound(
    model: str,
    instructions: str | None,
    input_items: str | Sequence[Any],
    *,
    tool_tokens: int,
) -> int:
    """A cheap bound that ``estimate_call_input`` never exceeds (bytes, not tokens).

    A BPE token covers at least one byte, so a text's UTF-8 length bounds its token count.
    Used far from every limit, where the exact count would not change the decision.
    """
    encoding_name, family = encoding_for_model(model)
    tokens = TOKENS_PER_REPLY + tool_tokens
    if instructions:
        tokens += TOKENS_PER_MESSAGE + _utf8_len(instructions)
    if isinstance(input_items, str):
        tokens += TOKENS_PER_MESSAGE + _utf8_len(input_items)
    else:
        encoding = get_encoding(encoding_name)
        for item in input_items:  # a loop, not sum() over a generator: this runs every call
            tokens += _item_upper_bound(item, encoding, model)
    return _approximated(tokens, family) if family is not None else tokens


@functools.lru_cache(maxsize=8_192)
def _count_flat_item(flat: tuple[tuple[str, Any], ...], encoding_name: str) -> int:
    encoding = get_encoding(encoding_name)
    return TOKENS_PER_MESSAGE + sum(count_text(t, encoding) for t in _text_of(dict(flat)))


def estimate_call_input(
    model: str,
    instructions: str | None,
    input_items: str | Sequence[Any],
    tool_schemas: Sequence[dict[str, Any]] = (),
    *,
    tool_tokens: int | None = None,
) -> TokenEstimate:
    """Estimate the input tokens of one LLM call: instructions, input items and tool schemas.

    ``tool_tokens`` (from ``count_tools``) replaces counting ``tool_schemas`` again.
    """
    encoding_name, family = encoding_for_model(model)
    encoding = get_encoding(encoding_name)
    items: Sequence[Any] = [input_items] if isinstance(input_items, str) else input_items
    tokens = TOKENS_PER_REPLY
    if instructions:
        tokens += TOKENS_PER_MESSAGE + count_text(instructions, encoding)
    tokens += sum(count_item(item, encoding, model) for item in items)
    tokens += tool_tokens if tool_tokens is not None else count_tools(model, tool_schemas)
    return TokenEstimate(
        tokens=_approximated(tokens, family), encoding=encoding_name, approximate=family is not None
    )


def _approximated(tokens: int, family: str | None) -> int:
    """``tokens`` times the family's approximation factor, rounded up (unchanged for OpenAI)."""
    if family is None:
        return tokens
    return -(-int(tokens * APPROXIMATION_FACTOR[family] * 1000) // 1000)


# -- tool definitions -----------------------------------------------------------------


def tool_schema(tool: Any) -> dict[str, Any]:
    """The part of a tool's (or the output type's) definition that the model reads."""
    if isinstance(tool, AgentOutputSchemaBase):
        if tool.is_plain_text():
            return {}
        return {"name": tool.name(), "schema": tool.json_schema()}
    if isinstance(tool, FunctionTool):
        return {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.params_json_schema,
        }
    if isinstance(tool, Handoff):
        return {
            "name": tool.tool_name,
            "description": tool.tool_description,
            "parameters": tool.input_json_schema,
        }
    return {"name": getattr(tool, "name", type(tool).__name__)}


_TOOL_TOKENS: dict[tuple[int, str], tuple[weakref.ref[Any], int]] = {}


def tool_tokens(tool: Any, encoding: str) -> int:
    """One tool definition's tokens, cached per tool object (dropped when it is collected)."""
    key = (id(tool), encoding)
    cached = _TOOL_TOKENS.get(key)
    if cached is not None and cached[0]() is tool:
        return cached[1]
    schema = tool_schema(tool)
    tokens = count_tools_with(encoding, [schema]) if schema else 0

    def forget(_ref: weakref.ref[Any]) -> None:
        _TOOL_TOKENS.pop(key, None)

    try:
        ref = weakref.ref(tool, forget)
    except TypeError:  # not weak-referenceable: count it every time
        return tokens
    _TOOL_TOKENS[key] = (ref, tokens)
    return tokens


def request_tool_tokens(
    model: str, tools: Iterable[Any], handoffs: Iterable[Any], output_schema: Any = None
) -> int:
    """Tokens of a request's tool and handoff definitions and its output schema (each
    count cached while its object lives)."""
    encoding = encoding_for_model(model)[0]
    tokens = 0
    for tool in tools:  # loops, not sum() over a generator: this runs before every call
        tokens += tool_tokens(tool, encoding)
    for handoff in handoffs:
        tokens += tool_tokens(handoff, encoding)
    if output_schema is not None:
        tokens += tool_tokens(output_schema, encoding)
    return tokens
