"""Stand-ins for outside model providers (the one thing tests may fake), on one local HTTP server.

OpenAI-compatible, under `/v1` (`base_url`):
- `GET /v1/models`: `fake-gpt` and `fake-mini`, owned by `fakeai`.
- `POST /v1/chat/completions`: answers "Hello from fakeai. You said: <last user text>" as one JSON object (just
  "Hello from fakeai." to a background-task prompt, one holding `<chat_history>`), or
  with `stream: true` as SSE chunks "Hello", " from", " fakeai", "." with `usage` on the last chunk and then
  `data: [DONE]`. A last user message containing "slow" streams 60 chunks 0.1 s apart (to be cut off); one
  containing "explode" gets a 500 with an OpenAI error object. Unknown models get 404.
- `POST /v1/embeddings`: deterministic bag-of-words vectors: each lower-case word is hashed into one of 64
  dimensions, so texts that share words are close and others are not. Texts holding "slowembed" wait 3 s.

Ollama-shaped, at the root (`ollama_url`): `GET /api/tags` (`llama-fake:latest`), `GET /api/version`,
`POST /api/chat` (NDJSON stream or one object), `POST /api/pull` (NDJSON progress).

Every request is recorded in `requests` (path, body, authorization header); `aborted` counts streams whose
client went away before the end, `finished` those that ran to the end.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DIMENSIONS = 64
OPENAI_MODELS = ["fake-gpt", "fake-mini"]
OLLAMA_MODEL = "llama-fake:latest"
STREAM_WORDS = ["Hello", " from", " fakeai", "."]


def embed(text: str) -> list[float]:
    vector = [0.0] * DIMENSIONS
    for word in re.findall(r"\w+", text.lower()):
        vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % DIMENSIONS] += 1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def last_user_text(messages: list) -> str:
    for message in reversed(messages or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return content or ""
    return ""


class FakeProvider:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.aborted = 0
        self.finished = 0
        self.lock = threading.Lock()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _json(self, status: int, value) -> None:
                payload = json.dumps(value).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _record(self, body) -> None:
                with provider.lock:
                    provider.requests.append({"path": self.path, "method": self.command, "body": body,
                                              "authorization": self.headers.get("Authorization")})

            def _stream(self, content_type: str, lines) -> None:
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    for line, delay in lines:
                        if delay:
                            time.sleep(delay)
                        data = line if isinstance(line, bytes) else line.encode()
                        self.wfile.write(data)
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    with provider.lock:
                        provider.aborted += 1
                    return
                with provider.lock:
                    provider.finished += 1

            def do_GET(self) -> None:
                self._record(None)
                if self.path == "/v1/models":
                    data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "fakeai"}
                            for m in OPENAI_MODELS]
                    self._json(200, {"object": "list", "data": data})
                elif self.path == "/api/tags":
                    self._json(200, {"models": [{
                        "name": OLLAMA_MODEL, "model": OLLAMA_MODEL, "modified_at": "2026-01-01T00:00:00Z",
                        "size": 1234, "digest": "abc123",
                        "details": {"format": "gguf", "family": "llama", "parameter_size": "1B",
                                    "quantization_level": "Q4_0"}}]})
                elif self.path == "/api/version":
                    self._json(200, {"version": "0.9.0"})
                else:
                    self._json(404, {"error": "not found"})

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"_raw": raw.decode(errors="replace")}
                self._record(body)
                if self.path == "/v1/embeddings":
                    inputs = body.get("input")
                    inputs = [inputs] if isinstance(inputs, str) else inputs
                    if any("slowembed" in t for t in inputs):
                        time.sleep(3)  # long enough to kill the caller mid-request
                    data = [{"object": "embedding", "index": i, "embedding": embed(t)} for i, t in enumerate(inputs)]
                    self._json(200, {"object": "list", "data": data, "model": body.get("model")})
                elif self.path == "/v1/chat/completions":
                    self._openai_chat(body)
                elif self.path == "/api/chat":
                    self._ollama_chat(body)
                elif self.path == "/api/pull":
                    steps = ["pulling manifest", "downloading", "verifying sha256 digest", "success"]
                    self._stream("application/x-ndjson",
                                 [(json.dumps({"status": s}) + "\n", 0.02) for s in steps])
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def _openai_chat(self, body: dict) -> None:
                model = body.get("model")
                if model not in OPENAI_MODELS:
                    self._json(404, {"error": {"message": f"The model `{model}` does not exist",
                                               "type": "invalid_request_error", "code": "model_not_found"}})
                    return
                text = last_user_text(body.get("messages"))
                if "explode" in text:
                    self._json(500, {"error": {"message": "fakeai exploded", "type": "server_error"}})
                    return
                ident = "chatcmpl-fake" + hashlib.sha256(f"{time.time()}{text}".encode()).hexdigest()[:8]
                created = int(time.time())
                if not body.get("stream"):
                    # Background task prompts (titles, follow-ups) get a reply that ignores the asked format.
                    answer = "Hello from fakeai." if "<chat_history>" in text else f"Hello from fakeai. You said: {text}"
                    self._json(200, {
                        "id": ident, "object": "chat.completion", "created": created, "model": model,
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                                     "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 8, "total_tokens": 18}})
                    return
                slow = "slow" in text
                words = [f" word{i}" for i in range(60)] if slow else STREAM_WORDS
                delay = 0.1 if slow else 0.005

                def chunk(delta, finish=None, usage=None):
                    value = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                    if usage:
                        value["usage"] = usage
                    return "data: " + json.dumps(value) + "\n\n"

                lines = [(chunk({"role": "assistant", "content": ""}), 0)]
                lines += [(chunk({"content": w}), delay) for w in words]
                usage = {"prompt_tokens": 10, "completion_tokens": len(words), "total_tokens": 10 + len(words)}
                lines.append((chunk({}, "stop", usage), 0))
                lines.append(("data: [DONE]\n\n", 0))
                if "crlf" in text:
                    # CRLF line ends, and every event cut in two inside a multi-byte character.
                    lines = [(chunk({"role": "assistant", "content": ""}), 0)]
                    for w in ["Grüße", " aus", " Zürich", " ✓"]:
                        data = json.dumps({"id": ident, "object": "chat.completion.chunk", "created": created,
                                           "model": model, "choices": [{"index": 0, "delta": {"content": w},
                                                                        "finish_reason": None}]},
                                          ensure_ascii=False).encode()
                        event = b"data: " + data + b"\r\n\r\n"
                        cut = event.index(w.encode()) + len(w.encode()) - 1
                        lines += [(event[:cut], 0.002), (event[cut:], 0.002)]
                    lines.append(("data: [DONE]\r\n\r\n", 0))
                self._stream("text/event-stream", lines)

            def _ollama_chat(self, body: dict) -> None:
                model = body.get("model")
                if model != OLLAMA_MODEL:
                    self._json(404, {"error": f"model '{model}' not found"})
                    return
                text = last_user_text(body.get("messages"))
                stamp = "2026-01-01T00:00:00Z"
                if body.get("stream") is False:
                    self._json(200, {"model": model, "created_at": stamp,
                                     "message": {"role": "assistant", "content": f"Hello from ollama. You said: {text}"},
                                     "done": True, "done_reason": "stop", "prompt_eval_count": 7, "eval_count": 9,
                                     "total_duration": 1000})
                    return
                words = ["Hello", " from", " ollama", "."]
                lines = [(json.dumps({"model": model, "created_at": stamp,
                                      "message": {"role": "assistant", "content": w}, "done": False}) + "\n", 0.005)
                         for w in words]
                lines.append((json.dumps({"model": model, "created_at": stamp,
                                          "message": {"role": "assistant", "content": ""}, "done": True,
                                          "done_reason": "stop", "prompt_eval_count": 7, "eval_count": 4,
                                          "total_duration": 1000}) + "\n", 0))
                self._stream("application/x-ndjson", lines)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def base_url(self) -> str:
        return self.root_url + "/v1"

    @property
    def ollama_url(self) -> str:
        return self.root_url

    def chat_requests(self) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"] in ("/v1/chat/completions", "/api/chat")]

    def __enter__(self) -> "FakeProvider":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
