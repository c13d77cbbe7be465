"""Token estimates for images and files in a call's input, without tokenizing their bytes.

A base64 image or file is never counted as text: 150 KB of base64 is about 200,000
text tokens, while gpt-4o bills the image at a few hundred. Images are counted by
OpenAI's published rule for the model, from the width and height read out of the PNG,
JPEG, GIF or WebP header (only the header is decoded, never the pixels). An image given
by URL or file id has no dimensions to read and counts as the worst case for its
detail level. Files count by a documented bound (``FILE_TOKENS_PER_BYTE``,
``FILE_REFERENCE_TOKENS``).

OpenAI's rules (https://platform.openai.com/docs/guides/images-vision#calculating-costs):

- *Tiles* (gpt-4o, gpt-4.1, gpt-5, o1, o3, ...): ``detail="low"`` costs the base
  tokens. Otherwise the image is scaled to fit a 2048 x 2048 square, then its shortest
  side to 768 px, and each 512 px tile costs the tile tokens, plus the base.
- *Patches* (gpt-4.1-mini, gpt-4.1-nano, o4-mini, gpt-5-mini, gpt-5-nano): 32 px
  patches, at most 1,536 (the image is scaled down to fit), times a model multiplier.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import struct
from typing import Any

__all__ = [
    "AUDIO_BYTES_PER_TOKEN",
    "FILE_REFERENCE_TOKENS",
    "FILE_TOKENS_PER_BYTE",
    "file_tokens",
    "image_size",
    "image_tokens",
]

_TILE_RULES: tuple[tuple[str, int, int], ...] = (
    # (name prefix, base tokens, tokens per 512 px tile); the longest matching prefix wins
    ("gpt-4o-mini", 2_833, 5_667),
    ("gpt-4o", 85, 170),
    ("gpt-4.1", 85, 170),
    ("gpt-4.5", 85, 170),
    ("gpt-5", 70, 140),
    ("o1", 75, 150),
    ("o3", 75, 150),
    ("computer-use", 65, 129),
)
_PATCH_RULES: tuple[tuple[str, float], ...] = (
    ("gpt-4.1-mini", 1.62),
    ("gpt-4.1-nano", 2.46),
    ("gpt-5-mini", 1.62),
    ("gpt-5-nano", 2.46),
    ("o4-mini", 1.72),
)
_DEFAULT_TILE_RULE = (85, 170)
_PATCH_CAP = 1_536
_PATCH_PX = 32

FILE_TOKENS_PER_BYTE = 0.5
"""Inline files (``file_data``) count half a token per decoded byte: above the text a
PDF's bytes carry, plus the page images OpenAI adds (about 1 KB per page is a sparse
page; dense text runs about 4 bytes per token). An estimate, marked as such."""
AUDIO_BYTES_PER_TOKEN = 100
"""Audio input counts one token per 100 decoded bytes: above what OpenAI bills (about
10 tokens a second: 3,200 bytes of 16 kHz WAV, 400 of 32 kbit/s MP3). An estimate."""
FILE_REFERENCE_TOKENS = 8_192
"""A file given by id or URL has no bytes to read here: it counts as this many tokens.
The provider's reported usage corrects the charge after the call."""


def _rule(model: str) -> tuple[str, float, float]:
    name = model.lower().rsplit("/", 1)[-1]
    for prefix, multiplier in _PATCH_RULES:
        if name.startswith(prefix):
            return "patch", multiplier, 0
    best: tuple[str, int, int] | None = None
    for rule in _TILE_RULES:
        if name.startswith(rule[0]) and (best is None or len(rule[0]) > len(best[0])):
            best = rule
    base, tile = (best[1], best[2]) if best is not None else _DEFAULT_TILE_RULE
    return "tile", base, tile


def image_tokens(model: str, width: int | None, height: int | None, detail: str | None) -> int:
    """Input tokens of one image for ``model``; unknown dimensions give the worst case."""
    kind, a, b = _rule(model)
    if kind == "patch":
        if width is None or height is None:
            return math.ceil(_PATCH_CAP * a)
        patches = math.ceil(width / _PATCH_PX) * math.ceil(height / _PATCH_PX)
        if patches > _PATCH_CAP:
            shrink = math.sqrt(_PATCH_CAP * _PATCH_PX * _PATCH_PX / (width * height))
            w, h = width * shrink, height * shrink
            # OpenAI: scale again so that the width is a whole number of patches
            w2 = math.floor(w / _PATCH_PX) * _PATCH_PX or _PATCH_PX
            h = h * (w2 / w)
            patches = min(math.ceil(w2 / _PATCH_PX) * math.ceil(h / _PATCH_PX), _PATCH_CAP)
        return math.ceil(patches * a)
    base, tile = int(a), int(b)
    if detail == "low":
        return base
    if width is None or height is None:
        # the most tiles an image can take: 768 x 2048 after scaling, 2 x 4 tiles
        return base + tile * 8
    w, h = float(width), float(height)
    if max(w, h) > 2048:
        scale = 2048 / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > 768:
        scale = 768 / min(w, h)
        w, h = w * scale, h * scale
    return base + tile * math.ceil(w / 512) * math.ceil(h / 512)


def image_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG, JPEG, GIF or WebP header, or None."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return width, height
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8X":
            width = 1 + int.from_bytes(data[24:27], "little")
            height = 1 + int.from_bytes(data[27:30], "little")
            return width, height
        if chunk == b"VP8L" and data[20] == 0x2F:
            bits = int.from_bytes(data[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8 ":
            width, height = struct.unpack("<HH", data[26:30])
            return width & 0x3FFF, height & 0x3FFF
        return None
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    index = 2
    while index + 9 < len(data):
        if data[index] != 0xFF:
            index += 1
            continue
        marker = data[index + 1]
        if marker == 0xFF:
            index += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            index += 2
            continue
        length = int.from_bytes(data[index + 2 : index + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[index + 5 : index + 9])
            return width, height
        index += 2 + length
    return None


def _split_data_url(url: str) -> str | None:
    """The base64 payload of a ``data:...;base64,`` URL, or None for any other URL."""
    if not url.startswith("data:"):
        return None
    head, _, payload = url.partition(",")
    return payload if head.endswith(";base64") else None


def _decode_prefix(payload: str, size: int) -> bytes:
    """The first ``size`` bytes (about) of a base64 payload, decoding nothing more."""
    chunk = payload[: (size // 3 + 1) * 4]
    chunk = chunk[: len(chunk) - len(chunk) % 4]
    try:
        return base64.b64decode(chunk)
    except (binascii.Error, ValueError):
        return b""


def _payload_size(payload: str) -> int:
    """Decoded bytes of a base64 payload, from its length."""
    return len(payload) * 3 // 4 - payload[-2:].count("=")


def image_part_tokens(model: str, part: Any) -> int:
    """Tokens of one ``input_image`` part (Responses) or ``image_url`` part (Chat)."""
    url = part.get("image_url")
    detail = part.get("detail")
    if isinstance(url, dict):  # Chat Completions: {"url": ..., "detail": ...}
        detail = url.get("detail", detail)
        url = url.get("url")
    size: tuple[int, int] | None = None
    payload = _split_data_url(url) if isinstance(url, str) else None
    if payload:
        head = _decode_prefix(payload, 64)
        size = image_size(head)
        if size is None and head[:2] == b"\xff\xd8":  # JPEG: the size may sit past EXIF data
            size = image_size(_decode_prefix(payload, 1 << 20))
    width, height = size if size is not None else (None, None)
    return image_tokens(model, width, height, detail if isinstance(detail, str) else None)


def file_tokens(part: Any) -> int:
    """Tokens of one ``input_file`` part, by the documented bound."""
    data = part.get("file_data")
    if isinstance(data, str) and data:
        payload = _split_data_url(data)
        if payload is None:
            payload = data
        return math.ceil(_payload_size(payload) * FILE_TOKENS_PER_BYTE)
    return FILE_REFERENCE_TOKENS


def audio_tokens(data: str) -> int:
    """Tokens of base64 audio, by ``AUDIO_BYTES_PER_TOKEN``."""
    payload = _split_data_url(data) or data
    return math.ceil(_payload_size(payload) / AUDIO_BYTES_PER_TOKEN) if payload else 0


_BASE64 = re.compile(r"[A-Za-z0-9+/=_\-\s]+")


def opaque_tokens(model: str, key: str, text: str) -> int | None:
    """Tokens of a long string that is a payload, not text the model reads as words; None
    for ordinary text.

    A ``data:...;base64,`` URL or bare base64 with an image header counts by the image
    rule (screenshots, generated images fed back); ``encrypted_content`` (reasoning items
    passed back) counts a token per 4 characters; other base64 data URLs by the file
    bound.
    """
    payload = _split_data_url(text)
    if payload is None and key not in _OPAQUE_KEYS:
        return None
    if payload is None and _BASE64.fullmatch(text) is None:
        return None
    if key == "encrypted_content":
        return math.ceil(len(text) / 4)
    body = payload if payload is not None else text
    head = _decode_prefix(body, 64)
    size = image_size(head)
    if size is not None:
        return image_tokens(model, size[0], size[1], None)
    if payload is not None or key == "result":
        return math.ceil(_payload_size(body) * FILE_TOKENS_PER_BYTE)
    return None


_OPAQUE_KEYS = frozenset({"encrypted_content", "result", "data"})
