"""A fast OpenAI-compatible stand-in provider for the streaming benchmark (standard library only).

    python3 Benchmarks/stream_provider.py [PORT]        (default 8099)

`GET /v1/models` lists `bench-model`; `POST /v1/chat/completions` with `stream: true` answers 20 SSE chunks
(one word each, written and flushed one by one, `CHUNK_DELAY_MS` apart, default 5, like a model producing
tokens), a final chunk with `usage`, then `data: [DONE]`; `POST /v1/embeddings` answers bag-of-words vectors of
`EMBED_DIMENSIONS` (384) dimensions;
without `stream` it answers one `chat.completion`. HTTP/1.1 keep-alive, chunked transfer encoding, one asyncio
loop: cheap enough that the benchmark measures Skiff, not this server.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

WORDS = [f" w{i}" for i in range(20)]
DIMENSIONS = int(os.environ.get("EMBED_DIMENSIONS", "384"))


def embed(text: str) -> list[float]:
    """Deterministic bag-of-words vectors: each word hashed into one of DIMENSIONS dimensions, normalised."""
    vector = [0.0] * DIMENSIONS
    for word in text.lower().split():
        vector[hash(word) % DIMENSIONS] += 1.0
    norm = sum(v * v for v in vector) ** 0.5 or 1.0
    return [round(v / norm, 6) for v in vector]
DELAY = float(os.environ.get("CHUNK_DELAY_MS", "5")) / 1000


def chunk(delta: dict, finish=None, usage=None) -> bytes:
    value = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": int(time.time()), "model": "bench-model",
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage:
        value["usage"] = usage
    data = b"data: " + json.dumps(value, separators=(",", ":")).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
            if method == "GET" and path == "/v1/models":
                payload = json.dumps({"object": "list", "data": [
                    {"id": "bench-model", "object": "model", "created": 1700000000, "owned_by": "bench"}]}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(payload), payload))
                await writer.drain()
                continue
            request = json.loads(body or b"{}")
            if path == "/v1/embeddings":
                inputs = request.get("input")
                inputs = [inputs] if isinstance(inputs, str) else inputs
                data = [{"object": "embedding", "index": i, "embedding": embed(t)} for i, t in enumerate(inputs)]
                payload = json.dumps({"object": "list", "data": data, "model": request.get("model")}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(payload), payload))
                await writer.drain()
                continue
            if not request.get("stream"):
                payload = json.dumps({"id": "chatcmpl-bench", "object": "chat.completion", "created": int(time.time()),
                                      "model": "bench-model", "choices": [{"index": 0, "message": {
                                          "role": "assistant", "content": "".join(WORDS)}, "finish_reason": "stop"}],
                                      "usage": {"prompt_tokens": 5, "completion_tokens": 20, "total_tokens": 25}}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(payload), payload))
                await writer.drain()
                continue
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            writer.write(chunk({"role": "assistant", "content": ""}))
            await writer.drain()
            for word in WORDS:
                if DELAY:
                    await asyncio.sleep(DELAY)
                writer.write(chunk({"content": word}))
                await writer.drain()
            writer.write(chunk({}, "stop", {"prompt_tokens": 5, "completion_tokens": 20, "total_tokens": 25}))
            done = b"data: [DONE]\n\n"
            writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    print(f"stream provider on http://127.0.0.1:{port}/v1", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8099))
