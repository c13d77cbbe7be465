"""Input estimates of calls carrying images: the image rule against tokenizing the bytes.

Run with ``nox -s bench`` or ``python tests/bench/bench_estimate.py [ROUNDS]``. Prints the
median time to estimate one call carrying a 150 KB base64 PNG (the header is read, the
pixels never decoded), and beside it the time tiktoken takes to count the same payload
as text - what the estimate did before images had a rule of their own.
"""

from __future__ import annotations

import base64
import os
import statistics
import struct
import sys
import time

from agentbudget.tokens import count_text, estimate_call_input, get_encoding


def png(width: int, height: int, size: int) -> bytes:
    head = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR"
    head += struct.pack(">II", width, height) + b"\x08\x06\x00\x00\x00" + b"\0" * 4
    return head + os.urandom(size - len(head))


def main(rounds: int = 50) -> None:
    url = "data:image/png;base64," + base64.b64encode(png(1024, 1024, 150_000)).decode()
    message = {
        "role": "user",
        "content": [
            {"type": "input_text", "text": "What is in this picture?"},
            {"type": "input_image", "image_url": url, "detail": "auto"},
        ],
    }
    estimate_call_input("gpt-4o", None, [message])  # warm the encoder
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        tokens = estimate_call_input("gpt-4o", None, [message]).tokens
        times.append(time.perf_counter() - started)
    encoding = get_encoding("o200k_base")
    started = time.perf_counter()
    as_text = count_text(url, encoding)
    tokenized = time.perf_counter() - started
    print(
        f"150 KB base64 PNG (1024x1024): estimate {tokens} tokens in "
        f"{statistics.median(times) * 1000:.3f} ms (median of {rounds}); "
        f"tokenized as text it would be {as_text:,} tokens in {tokenized * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
