"""Images and files in a call's input: counted by their rules, never tokenized as text."""

from __future__ import annotations

import base64
import os
import struct
import time
from decimal import Decimal
from typing import Any

import pytest
from agents import Agent
from agents.usage import Usage
from pydantic import BaseModel

import agentbudget as ab
from agentbudget import media
from agentbudget.pricing import PriceTable, TokenUsage
from agentbudget.testing import reply, scripted_model
from agentbudget.tokens import estimate_call_input


def png(width: int, height: int, size: int = 0) -> bytes:
    head = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR"
    head += struct.pack(">II", width, height) + b"\x08\x06\x00\x00\x00" + b"\0" * 4
    return head + os.urandom(max(size - len(head), 0))


def jpeg(width: int, height: int, exif: int = 20_000) -> bytes:
    app1 = b"\xff\xe1" + struct.pack(">H", exif + 2) + b"E" * exif
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app1 + sof + b"\xff\xd9"


def gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\0" * 20


def webp(width: int, height: int) -> bytes:
    body = b"WEBP" + b"VP8X" + struct.pack("<I", 10) + b"\0" * 4
    body += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", len(body)) + body


def data_url(data: bytes, kind: str = "image/png") -> str:
    return f"data:{kind};base64," + base64.b64encode(data).decode()


def image_message(url: str | None, detail: str = "auto") -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "input_text", "text": "What is in this picture?"}]
    if url is not None:
        content.append({"type": "input_image", "image_url": url, "detail": detail})
    return {"role": "user", "content": content}


@pytest.mark.parametrize(
    ("data", "size"),
    [
        (png(1024, 768), (1024, 768)),
        (jpeg(4032, 3024), (4032, 3024)),
        (gif(320, 200), (320, 200)),
        (webp(1920, 1080), (1920, 1080)),
    ],
    ids=["png", "jpeg-after-exif", "gif", "webp"],
)
def test_dimensions_come_from_the_header(data: bytes, size: tuple[int, int]) -> None:
    assert media.image_size(data) == size


@pytest.mark.parametrize(
    ("model", "width", "height", "detail", "tokens"),
    [
        ("gpt-4o", 1024, 1024, "high", 765),  # OpenAI's worked example: 4 tiles
        ("gpt-4o", 2048, 4096, "high", 1105),  # 1024x2048 -> 768x1536: 6 tiles
        ("gpt-4o", 4096, 8192, "low", 85),
        ("gpt-4o", None, None, "high", 85 + 170 * 8),  # a URL: the worst case
        ("gpt-4o", None, None, "low", 85),
        ("gpt-4o-mini", 1024, 1024, "high", 2833 + 5667 * 4),
        ("gpt-4.1-mini", 1024, 1024, "high", 1659),  # 1024 patches x 1.62
        ("gpt-4.1-mini", 1800, 2400, "high", 2353),  # OpenAI's example: 1,452 patches
    ],
)
def test_image_tokens_follow_openais_rules(
    model: str, width: int | None, height: int | None, detail: str, tokens: int
) -> None:
    assert media.image_tokens(model, width, height, detail) == tokens


def test_a_150kb_base64_image_is_counted_by_its_rule_not_as_text() -> None:
    url = data_url(png(1024, 1024, size=150_000))
    assert len(url) > 200_000
    text_only = estimate_call_input("gpt-4o", None, [image_message(None)]).tokens
    started = time.perf_counter()
    with_image = estimate_call_input("gpt-4o", None, [image_message(url)]).tokens
    elapsed = time.perf_counter() - started
    assert 765 <= with_image - text_only <= 765 + 5  # 4 tiles, and a placeholder
    assert elapsed < 0.05  # never tokenized (tokenizing it took 0.26 s); see the benchmark


def test_urls_and_files_count_by_their_documented_bounds() -> None:
    base = estimate_call_input("gpt-4o", None, [image_message(None)]).tokens
    url = estimate_call_input("gpt-4o", None, [image_message("https://e.com/cat.png", "high")])
    assert 85 + 170 * 8 <= url.tokens - base <= 85 + 170 * 8 + 5
    pdf = base64.b64encode(b"%PDF" + b"x" * 40_000).decode()
    message = {
        "role": "user",
        "content": [
            {
                "type": "input_file",
                "filename": "a.pdf",
                "file_data": f"data:application/pdf;base64,{pdf}",
            },
            {"type": "input_file", "file_id": "file-123"},
        ],
    }
    tokens = estimate_call_input("gpt-4o", None, [message]).tokens
    expected = 20_002 + media.FILE_REFERENCE_TOKENS  # 40,004 bytes x 0.5, and a reference
    assert expected <= tokens <= expected + 60


async def test_a_call_carrying_a_large_image_is_not_refused_by_max_tokens() -> None:
    url = data_url(png(1024, 1024, size=150_000))
    model = scripted_model("gpt-4o", [reply("a cat", input_tokens=800, output_tokens=5)])
    agent = Agent(name="vision", model=model)
    result = await ab.Guard(limits=ab.Limits(max_tokens=20_000)).run(agent, [image_message(url)])
    assert ab.report_of(result).outcome == "completed"


def test_the_output_schema_is_counted() -> None:
    class Answer(BaseModel):
        summary: str
        sources: list[str]
        confidence: float

    typed = Agent(name="a", model=scripted_model("gpt-4o", []), output_type=Answer)
    from agents.agent_output import AgentOutputSchema

    from agentbudget.tokens import request_tool_tokens

    schema = AgentOutputSchema(Answer)
    bare = request_tool_tokens("gpt-4o", [], [])
    counted = request_tool_tokens("gpt-4o", [], [], schema)
    assert bare == 0 and counted > 40
    assert typed.output_type is Answer


# -- usage shapes providers send ------------------------------------------------------------


def test_usage_shapes_are_normalised_and_never_raise() -> None:
    from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

    odd = Usage(requests=1)
    odd.input_tokens = None  # type: ignore[assignment]
    odd.input_tokens_details = InputTokensDetails.model_construct(cached_tokens=3)
    odd.output_tokens = 5
    odd.output_tokens_details = OutputTokensDetails.model_construct(reasoning_tokens=40)
    usage = TokenUsage.from_agents_usage(odd)
    assert (usage.input_tokens, usage.cached_input_tokens) == (3, 3)
    assert (usage.output_tokens, usage.reasoning_tokens) == (40, 40)
    assert TokenUsage.from_agents_usage(Usage(requests=1)).is_empty


def test_a_tier_is_never_applied_to_a_sum_of_requests() -> None:
    table = PriceTable.default()
    one = Usage(requests=1, input_tokens=150_000, output_tokens=1_000, total_tokens=151_000)
    together = Usage()
    together.add(one)
    together.add(Usage(requests=1, input_tokens=150_000, output_tokens=1_000, total_tokens=151_000))
    # per-request entries: each request is under the 200k tier
    assert table.cost("gemini-2.5-pro", together) == 2 * table.cost("gemini-2.5-pro", one)
    assert table.cost("gemini-2.5-pro", together) == Decimal("0.395")
    summed = Usage(requests=2, input_tokens=300_000, output_tokens=2_000, total_tokens=302_000)
    with pytest.raises(ab.ConfigurationError, match="request_usage_entries"):
        table.cost("gemini-2.5-pro", summed)
    assert table.cost("gpt-4o", summed) > 0  # no tiers: a sum prices exactly


async def test_the_dollar_bound_holds_input_at_its_highest_rate() -> None:
    # claude-opus-4-5: $5/M input, $6.25/M 5-minute writes, $10/M 1-hour writes
    model = scripted_model("claude-opus-4-5", [reply("ok", input_tokens=10, output_tokens=5)])
    agent = Agent(name="a", model=model)
    limits = ab.Limits(max_cost_usd="0.01")
    await ab.Guard(limits=limits).run(agent, "hi")
    sent = model.calls[0].model_settings.max_tokens
    estimate = estimate_call_input("claude-opus-4-5", None, [{"role": "user", "content": "hi"}])
    # $0.01 less the input at $10/M (the 1-hour write rate), at $25/M output
    assert sent == (10**10 - estimate.tokens * 10**7) // (25 * 10**6)


def test_agent_costing_refuses_zero() -> None:
    from agentbudget.testing import agent_costing

    with pytest.raises(ab.ConfigurationError, match="usd > 0"):
        agent_costing("0")


def test_screenshots_audio_and_encrypted_reasoning_are_not_tokenized() -> None:
    screenshot = {
        "type": "computer_call_output",
        "call_id": "c1",
        "output": {"type": "computer_screenshot", "image_url": data_url(png(1024, 768, 150_000))},
    }
    audio = {
        "role": "user",
        "content": [
            {
                "type": "input_audio",
                "input_audio": {
                    "data": base64.b64encode(os.urandom(48_000)).decode(),
                    "format": "wav",
                },
            }
        ],
    }
    reasoning = {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [],
        "encrypted_content": base64.b64encode(os.urandom(15_000)).decode(),
    }
    assert estimate_call_input("gpt-4o", None, [screenshot]).tokens < 800  # 85 + 170 x 4
    assert 480 <= estimate_call_input("gpt-4o", None, [audio]).tokens <= 480 + 20  # 48 KB
    assert 5_000 <= estimate_call_input("gpt-4o", None, [reasoning]).tokens <= 5_100


def test_partial_per_request_entries_never_price_the_rest_at_a_tier() -> None:
    one = Usage(requests=1, input_tokens=150_000, output_tokens=0, total_tokens=150_000)
    mixed = Usage(requests=2, input_tokens=300_000, output_tokens=0, total_tokens=300_000)
    mixed.add(one)  # 3 requests, 1 entry
    with pytest.raises(ab.ConfigurationError, match="only 1"):
        PriceTable.default().cost("gemini-2.5-pro", mixed)
