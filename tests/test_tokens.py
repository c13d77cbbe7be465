from __future__ import annotations

import socket
from typing import Any

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from agentbudget import tokens


def test_encodings_are_built_offline_from_the_bundled_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("token counting tried to reach the network")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # an empty cache
    monkeypatch.setattr(tokens, "_ENCODINGS", {})
    for name in ("o200k_base", "cl100k_base"):
        encoding = tokens.get_encoding(name)
        assert isinstance(encoding, tiktoken.Encoding) and encoding.name == name
    assert list(tmp_path.iterdir()) == []  # nothing was downloaded or cached


def test_encodings_match_tiktoken_known_token_ids() -> None:
    o200k = tokens.get_encoding("o200k_base")
    cl100k = tokens.get_encoding("cl100k_base")
    assert o200k.encode("hello world") == [24912, 2375]
    assert cl100k.encode("hello world") == [15339, 1917]
    assert o200k.n_vocab == 200019 and cl100k.n_vocab == 100277


def test_a_corrupted_rank_file_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RuntimeError, match="SHA-256"):
        tokens._ranks_from_package("o200k_base", "0" * 64)


def test_model_families_map_to_encodings() -> None:
    assert tokens.encoding_for_model("gpt-4o") == ("o200k_base", None)
    assert tokens.encoding_for_model("openai/gpt-5.6-luna") == ("o200k_base", None)
    assert tokens.encoding_for_model("gpt-4-0613") == ("cl100k_base", None)
    assert tokens.encoding_for_model("claude-sonnet-4-5") == ("o200k_base", "anthropic")
    assert tokens.encoding_for_model("gemini-2.5-pro") == ("o200k_base", "google")
    assert tokens.encoding_for_model("my-llama") == ("o200k_base", "other")


def test_special_token_text_is_counted_not_rejected() -> None:
    encoding = tokens.get_encoding("o200k_base")
    assert tokens.count_text("<|endoftext|>", encoding) > 1


texts = st.text(max_size=300)
flat_items = st.dictionaries(
    st.one_of(
        st.sampled_from(["role", "content", "type", "call_id", "name", "arguments", "output"]),
        st.text(min_size=1, max_size=12),
    ),
    st.one_of(texts, st.integers(), st.none(), st.booleans()),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(
    instructions=st.one_of(st.none(), texts),
    items=st.lists(st.one_of(texts, flat_items), max_size=6),
    model=st.sampled_from(["gpt-4o", "gpt-4-0613", "claude-sonnet-4-5", "gemini-2.5-pro"]),
)
def test_the_cheap_input_bound_is_never_below_the_token_count(
    instructions: str | None, items: list[Any], model: str
) -> None:
    exact = tokens.estimate_call_input(model, instructions, items, tool_tokens=0).tokens
    assert tokens.input_upper_bound(model, instructions, items, tool_tokens=0) >= exact
