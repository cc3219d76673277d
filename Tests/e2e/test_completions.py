"""Models and chat completions through the gateway, against a fake OpenAI-compatible provider and a fake
Ollama (Tests/e2e/fake_provider.py): the merged model list, custom models and their params reaching the
provider, plain and streamed completions, errors, API keys, a client that goes away mid-stream, task mode over
Socket.IO with the answer saved into the chat, the official `openai` SDK, and the connection settings."""

from __future__ import annotations

import json
import socket
import time
import uuid

import openai
import pytest
import requests

from fake_provider import FakeProvider
from stacklib import eventually, expect_422, expect_error, expect_ok, module_stack, psql
from test_realtime import Client, clients  # noqa: F401  (fixture)

MODEL_NOT_FOUND = "Model not found"


@pytest.fixture(scope="module")
def provider():
    with FakeProvider() as p:
        yield p


@pytest.fixture(scope="module")
def mstack(request, provider):
    yield from module_stack(request, "models", {
        "ENABLE_OPENAI_API": True, "OPENAI_API_BASE_URLS": provider.base_url, "OPENAI_API_KEYS": "fake-key",
        "ENABLE_OLLAMA_API": True, "OLLAMA_BASE_URLS": provider.ollama_url, "MODELS_CACHE_TTL": "1",
    })


@pytest.fixture(scope="module")
def madmin(mstack):
    admin = mstack.signup_admin()
    mstack.set_admin_config(admin["token"], ENABLE_API_KEYS=True, ENABLE_SIGNUP=True)
    return admin


def until(fn, timeout: float = 10.0):
    """fn's value once it stops failing (an assertion, a missing item) and is truthy; its last failure otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = fn()
            if value:
                return value
        except (AssertionError, StopIteration, KeyError):
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def chat(s, token, model, text, **extra):
    return s.post("/api/chat/completions", token, json={"model": model, "messages": [{"role": "user", "content": text}], **extra})


def last_chat_request(provider):
    return provider.chat_requests()[-1]


def sse_events(text: str) -> list:
    lines = [line for line in text.split("\n") if line.startswith("data: ")]
    return [line[6:] for line in lines]


# ---- the model list


def test_models_list_shape(mstack, madmin):
    data = expect_ok(mstack.get("/api/models", madmin["token"]))["data"]
    by_id = {m["id"]: m for m in data}
    gpt = by_id["fake-gpt"]
    assert list(gpt) == ["id", "object", "created", "owned_by", "connection_type", "name", "openai", "provider", "urlIdx",
                         "actions", "filters", "tags"]
    assert gpt["owned_by"] == "openai" and gpt["openai"]["owned_by"] == "fakeai" and gpt["urlIdx"] == 0
    assert gpt["openai"] == {"id": "fake-gpt", "object": "model", "created": 1700000000, "owned_by": "fakeai",
                             "connection_type": "external"}
    assert gpt["actions"] == [] and gpt["filters"] == [] and gpt["tags"] == []
    llama = by_id["llama-fake:latest"]
    assert llama["owned_by"] == "ollama" and llama["connection_type"] == "local" and llama["ollama"]["urls"] == [0]
    assert [m["id"] for m in data][:2] == ["fake-gpt", "fake-mini"]
    # The /api/v1 alias, and the admin's raw list without actions, filters and tags.
    assert [m["id"] for m in expect_ok(mstack.get("/api/v1/models", madmin["token"]))["data"]] == [m["id"] for m in data]
    base = expect_ok(mstack.get("/api/models/base", madmin["token"]))["data"]
    assert "actions" not in base[0] and base[0]["id"] == "fake-gpt"


def test_models_need_a_verified_user(mstack, madmin):
    expect_error(mstack.get("/api/models"), 401)
    pending = mstack.signup("Pending", f"p-{uuid.uuid4().hex[:8]}@example.com", "pw-123456")
    token = expect_ok(pending)["token"]
    expect_error(mstack.get("/api/models", token), 401)
    user = mstack.create_user(madmin["token"], role="user")
    expect_error(mstack.get("/api/models/base", user["token"]), 401)
    # A plain user sees no provider model without an entry that grants it.
    assert expect_ok(mstack.get("/api/models", user["token"]))["data"] == []


# ---- completions


def test_non_stream_completion(mstack, madmin, provider):
    body = expect_ok(chat(mstack, madmin["token"], "fake-gpt", "Say hi", stream=False))
    assert body["object"] == "chat.completion" and body["model"] == "fake-gpt"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hello from fakeai. You said: Say hi"}
    assert body["usage"] == {"prompt_tokens": 10, "completion_tokens": 8, "total_tokens": 18}
    sent = last_chat_request(provider)
    assert sent["body"] == {"model": "fake-gpt", "messages": [{"role": "user", "content": "Say hi"}], "stream": False}
    assert sent["authorization"] == "Bearer fake-key"


def test_stream_completion_passes_sse_through(mstack, madmin):
    r = chat(mstack, madmin["token"], "fake-gpt", "Stream please", stream=True)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "Hello from fakeai."
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["usage"]["total_tokens"] == 14
    # The aliases answer the same.
    for path in ("/api/v1/chat/completions", "/api/openai/v1/chat/completions"):
        body = expect_ok(mstack.post(path, madmin["token"], json={"model": "fake-gpt", "messages": [{"role": "user", "content": "a"}]}))
        assert body["choices"][0]["message"]["content"].endswith("You said: a")


def test_unknown_model_and_bad_bodies(mstack, madmin):
    expect_error(chat(mstack, madmin["token"], "nope", "x"), 400, MODEL_NOT_FOUND)
    expect_error(mstack.post("/api/chat/completions", madmin["token"], json={"messages": []}), 400, MODEL_NOT_FOUND)
    r = mstack.post("/api/chat/completions", madmin["token"], data="{not json", headers={"Content-Type": "application/json"})
    expect_422(r)
    expect_422(mstack.post("/api/chat/completions", madmin["token"], json=[1, 2]))
    expect_error(mstack.post("/api/chat/completions", json={"model": "fake-gpt", "messages": []}), 401)


def test_provider_error_is_relayed(mstack, madmin):
    r = chat(mstack, madmin["token"], "fake-gpt", "please explode", stream=False)
    assert r.status_code == 500 and r.json() == {"error": {"message": "fakeai exploded", "type": "server_error"}}


def test_custom_model_params_reach_the_provider(mstack, madmin, provider):
    form = {"id": "my-assistant", "base_model_id": "fake-gpt", "name": "My Assistant",
            "meta": {"description": "custom wrapper", "profile_image_url": "/static/favicon.png",
                     "capabilities": {"vision": False}},
            "params": {"system": "You are terse.", "temperature": 0.2}, "access_grants": [], "is_active": True}
    created = expect_ok(mstack.post("/api/v1/models/create", madmin["token"], json=form))
    assert list(created) == ["version_id", "id", "user_id", "base_model_id", "name", "params", "meta", "access_grants",
                             "is_active", "updated_at", "created_at"]
    assert list(created["meta"]) == ["profile_image_url", "background_image_url", "description", "i18n",
                                     "capabilities", "knowledge", "voice", "voice_avatar"]
    assert created["params"] == {"system": "You are terse.", "temperature": 0.2} and created["user_id"] == madmin["id"]
    expect_error(mstack.post("/api/v1/models/create", madmin["token"], json=form), 401,
                 "Uh-oh! This model id is already registered. Please choose another model id string.")

    got = expect_ok(mstack.get("/api/v1/models/model?id=my-assistant", madmin["token"]))
    assert got["write_access"] is True and got["user"] is None and got["params"]["system"] == "You are terse."
    listed = expect_ok(mstack.get("/api/v1/models/list", madmin["token"]))
    assert listed["total"] == 1 and listed["items"][0]["user"]["id"] == madmin["id"]
    assert "profile_image_url" not in listed["items"][0]["meta"]

    preset = next(m for m in expect_ok(mstack.get("/api/models", madmin["token"]))["data"] if m["id"] == "my-assistant")
    assert preset["preset"] is True and preset["owned_by"] == "openai" and preset["info"]["params"] == {}
    assert "profile_image_url" not in preset["info"]["meta"]

    body = expect_ok(chat(mstack, madmin["token"], "my-assistant", "who are you", stream=False))
    assert body["model"] == "fake-gpt"
    sent = last_chat_request(provider)["body"]
    assert sent == {"model": "fake-gpt", "messages": [{"role": "system", "content": "You are terse."},
                                                      {"role": "user", "content": "who are you"}],
                    "stream": False, "temperature": 0.2}
    # A temperature the client sends wins; its own system message gets the model's prompt in front.
    expect_ok(mstack.post("/api/chat/completions", madmin["token"], json={
        "model": "my-assistant", "temperature": 0.9, "stream": False,
        "messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "hi"}]}))
    sent = last_chat_request(provider)["body"]
    assert sent["temperature"] == 0.9 and sent["messages"][0] == {"role": "system", "content": "You are terse.\nBe kind."}

    # Toggle off: the preset leaves the list and completions refuse it.
    assert expect_ok(mstack.post("/api/v1/models/model/toggle?id=my-assistant", madmin["token"]))["is_active"] is False
    assert "my-assistant" not in [m["id"] for m in expect_ok(mstack.get("/api/models", madmin["token"]))["data"]]
    expect_error(chat(mstack, madmin["token"], "my-assistant", "x"), 400, MODEL_NOT_FOUND)
    expect_ok(mstack.post("/api/v1/models/model/toggle?id=my-assistant", madmin["token"]))

    # Update keeps the picture when the form leaves it out.
    form["meta"] = {"description": "changed"}
    form["name"] = "Renamed"
    updated = expect_ok(mstack.post("/api/v1/models/model/update", madmin["token"], json=form))
    assert updated["name"] == "Renamed" and updated["meta"]["profile_image_url"] == "/static/favicon.png"
    r = mstack.get("/api/v1/models/model/profile/image?id=my-assistant", madmin["token"], allow_redirects=False)
    assert r.status_code == 302 and r.headers["location"] == "/static/favicon.png"
    r = mstack.get("/api/v1/models/model/profile/image?id=fake-gpt&lang=en-US", madmin["token"], allow_redirects=False)
    assert r.status_code == 302


def test_model_access_for_users(mstack, madmin, provider):
    user = mstack.create_user(madmin["token"], role="user")
    expect_error(chat(mstack, user["token"], "fake-mini", "x", stream=False), 400, MODEL_NOT_FOUND)
    expect_error(mstack.get("/api/v1/models/model?id=nobody", user["token"]), 404)
    # Users may not create models without the workspace permission.
    expect_error(mstack.post("/api/v1/models/create", user["token"], json={
        "id": "mine", "base_model_id": "fake-mini", "name": "m", "meta": {}, "params": {}}), 401, "401 Unauthorized")
    # The admin gives the provider model an entry readable by this user.
    grant = {"principal_type": "user", "principal_id": user["id"], "permission": "read"}
    entry = expect_ok(mstack.post("/api/v1/models/model/access/update", madmin["token"],
                                  json={"id": "fake-mini", "access_grants": [grant]}))
    assert entry["base_model_id"] is None and entry["access_grants"][0]["principal_id"] == user["id"]
    seen = [m["id"] for m in expect_ok(mstack.get("/api/models", user["token"]))["data"]]
    assert seen == ["fake-mini"]
    body = expect_ok(chat(mstack, user["token"], "fake-mini", "granted", stream=False))
    assert body["choices"][0]["message"]["content"].endswith("granted")
    # Others still cannot; the user cannot change the entry.
    other = mstack.create_user(madmin["token"], role="user")
    expect_error(chat(mstack, other["token"], "fake-mini", "x"), 400, MODEL_NOT_FOUND)
    expect_error(mstack.post("/api/v1/models/model/delete", user["token"], json={"id": "fake-mini"}), 401)
    expect_error(mstack.post("/api/v1/models/model/access/update", user["token"],
                             json={"id": "fake-mini", "access_grants": []}), 400)
    expect_error(mstack.get("/api/v1/models/model?id=fake-mini", other["token"]), 401)


def test_completion_with_api_key_and_openai_sdk(mstack, madmin):
    key = expect_ok(mstack.post("/api/v1/auths/api_key", madmin["token"]))["api_key"]
    body = expect_ok(chat(mstack, key, "fake-gpt", "key", stream=False))
    assert body["choices"][0]["message"]["content"] == "Hello from fakeai. You said: key"

    client = openai.OpenAI(api_key=key, base_url=mstack.base + "/api")
    ids = [m.id for m in client.models.list().data]
    assert "fake-gpt" in ids and "fake-mini" in ids
    plain = client.chat.completions.create(model="fake-gpt", messages=[{"role": "user", "content": "sdk"}])
    assert plain.choices[0].message.content == "Hello from fakeai. You said: sdk"
    assert plain.usage.total_tokens == 18
    streamed = client.chat.completions.create(model="fake-gpt", messages=[{"role": "user", "content": "sdk"}], stream=True)
    text = "".join((c.choices[0].delta.content or "") for c in streamed if c.choices)
    assert text == "Hello from fakeai."


def test_client_disconnect_cancels_upstream(mstack, madmin, provider):
    before = provider.aborted
    r = requests.post(mstack.url("/api/chat/completions"), headers=mstack.auth(madmin["token"]), stream=True,
                      json={"model": "fake-gpt", "stream": True, "messages": [{"role": "user", "content": "slow please"}]})
    assert r.status_code == 200
    lines = r.iter_lines()
    got = [next(lines) for _ in range(3)]
    assert any(line.startswith(b"data: ") for line in got)
    r.close()
    eventually(lambda: provider.aborted > before, timeout=10)


def test_usage_is_recorded(mstack, madmin):
    expect_ok(chat(mstack, madmin["token"], "fake-mini", "count me", stream=False))

    def counted():
        out = psql(f"SELECT sum(prompt_tokens), sum(completion_tokens) FROM chat.usage "
                   f"WHERE user_id = '{madmin['id']}' AND model_id = 'fake-mini'", url=mstack.env["DATABASE_URL"])
        prompt, completion = (int(v or 0) for v in out.strip().split("|"))
        assert prompt >= 10 and completion >= 8
        return True

    until(counted)


# ---- Ollama


def test_ollama_routes_and_translation(mstack, madmin, provider):
    tags = expect_ok(mstack.get("/ollama/api/tags", madmin["token"]))["models"]
    assert tags[0]["model"] == "llama-fake:latest" and tags[0]["urls"] == [0]
    assert expect_ok(mstack.get("/ollama/api/version", madmin["token"])) == {"version": "0.9.0"}
    body = expect_ok(chat(mstack, madmin["token"], "llama-fake:latest", "olla", stream=False))
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"] == "Hello from ollama. You said: olla"
    assert body["usage"]["prompt_tokens"] == 7 and body["usage"]["completion_tokens"] == 9
    sent = last_chat_request(provider)
    assert sent["path"] == "/api/chat" and sent["body"]["stream"] is False and sent["body"]["model"] == "llama-fake:latest"
    r = chat(mstack, madmin["token"], "llama-fake:latest", "olla", stream=True, max_tokens=5)
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "Hello from ollama."
    assert chunks[-1]["usage"]["output_tokens"] == 4 and chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert last_chat_request(provider)["body"]["options"] == {"num_predict": 5}
    # Pull streams Ollama's progress lines through (admins only).
    r = mstack.post("/ollama/api/pull", madmin["token"], json={"name": "llama-fake:latest"})
    assert r.status_code == 200 and [json.loads(line)["status"] for line in r.text.splitlines()][-1] == "success"
    user = mstack.create_user(madmin["token"], role="user")
    expect_error(mstack.post("/ollama/api/pull", user["token"], json={"name": "x"}), 401)


# ---- connections


def test_connection_settings_and_a_provider_that_is_down(mstack, madmin, provider):
    config = expect_ok(mstack.get("/openai/config", madmin["token"]))
    assert config == {"ENABLE_OPENAI_API": True, "OPENAI_API_BASE_URLS": [provider.base_url],
                      "OPENAI_API_KEYS": ["fake-key"], "OPENAI_API_CONFIGS": {}}
    user = mstack.create_user(madmin["token"], role="user")
    expect_error(mstack.get("/openai/config", user["token"]), 401)
    verified = expect_ok(mstack.post("/openai/verify", madmin["token"], json={"url": provider.base_url, "key": "k"}))
    assert [m["id"] for m in verified["data"]] == ["fake-gpt", "fake-mini"]
    dead = f"http://127.0.0.1:{_closed_port()}/v1"
    expect_error(mstack.post("/openai/verify", madmin["token"], json={"url": dead, "key": ""}), 500,
                 "Open WebUI: Server Connection Error")
    expect_422(mstack.post("/openai/config/update", madmin["token"], json={"OPENAI_API_BASE_URLS": []}))

    # A second connection that is down: the first keeps working.
    updated = expect_ok(mstack.post("/openai/config/update", madmin["token"], json={
        "ENABLE_OPENAI_API": True, "OPENAI_API_BASE_URLS": [dead, provider.base_url], "OPENAI_API_KEYS": ["x"],
        "OPENAI_API_CONFIGS": {"1": {"prefix_id": "p"}, "junk": {}}}))
    assert updated["OPENAI_API_KEYS"] == ["x", ""] and updated["OPENAI_API_CONFIGS"] == {"1": {"prefix_id": "p"}}
    try:
        ids = [m["id"] for m in expect_ok(mstack.get("/api/models", madmin["token"]))["data"]]
        assert "p.fake-gpt" in ids and "fake-gpt" not in ids
        body = expect_ok(chat(mstack, madmin["token"], "p.fake-gpt", "prefixed", stream=False))
        assert body["choices"][0]["message"]["content"].endswith("prefixed")
        assert last_chat_request(provider)["body"]["model"] == "fake-gpt"
        assert last_chat_request(provider)["authorization"] is None
    finally:
        expect_ok(mstack.post("/openai/config/update", madmin["token"], json={
            "ENABLE_OPENAI_API": True, "OPENAI_API_BASE_URLS": [provider.base_url], "OPENAI_API_KEYS": ["fake-key"],
            "OPENAI_API_CONFIGS": {}}))
    assert "fake-gpt" in [m["id"] for m in expect_ok(mstack.get("/api/models", madmin["token"]))["data"]]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- task mode


def _events(client: Client, chat_id: str) -> list:
    return [d for e, d in list(client.received) if e == "events" and isinstance(d, dict) and d.get("chat_id") == chat_id]


def test_task_mode_creates_the_chat_and_saves_the_answer(mstack, madmin, clients):
    sock = clients(mstack, token=madmin["token"], join_token=madmin["token"])
    eventually(lambda: sock.join_acks, timeout=5)
    user_message = {"id": "u1", "parentId": None, "childrenIds": [], "role": "user", "content": "Hello socket",
                    "timestamp": int(time.time()), "models": ["fake-gpt"]}
    body = expect_ok(mstack.post("/api/chat/completions", madmin["token"], json={
        "model": "fake-gpt", "messages": [{"role": "user", "content": "Hello socket"}], "stream": True,
        "parent_id": None, "id": "a1", "session_id": sock.sid, "user_message": user_message,
        "background_tasks": {"title_generation": True, "tags_generation": False, "follow_up_generation": True},
        "features": {}, "params": {}}))
    assert body["status"] is True and len(body["task_ids"]) == 1 and body["chat_id"]
    chat_id = body["chat_id"]

    def ended():
        got = _events(sock, chat_id)
        assert any(e["data"] == {"type": "chat:active", "data": {"active": False, "folder_id": None}} for e in got)
        return got

    events = until(ended)
    types = [e["data"]["type"] for e in events]
    assert types[:2] == ["chat:list", "chat:active"] and types[-1] == "chat:active"
    deltas = [e["data"]["data"] for e in events if e["data"]["type"] == "response:completion"]
    assert deltas[0]["object"] == "chat.completion.chunk"
    assert "".join(d.get("delta", "") for d in deltas[1:]) == "Hello from fakeai."
    assert deltas[1]["type"] == "response.output_text.delta" and deltas[1]["item_id"].startswith("msg_")
    done = next(e["data"]["data"] for e in events if e["data"]["type"] == "chat:completion" and e["data"]["data"].get("done"))
    assert done["output"][0]["content"][0]["text"] == "Hello from fakeai." and done["usage"]["input_tokens"] == 10
    assert {"type": "chat:title", "data": "Hello socket"} in [e["data"] for e in events]
    assert {"type": "chat:message:follow_ups", "data": {"follow_ups": []}} in [e["data"] for e in events]

    saved = expect_ok(mstack.get(f"/api/v1/chats/{chat_id}", madmin["token"]))
    assert saved["title"] == "Hello socket"
    messages = saved["chat"]["history"]["messages"]
    assert messages["u1"]["childrenIds"] == ["a1"] and saved["chat"]["history"]["currentId"] == "a1"
    answer = messages["a1"]
    assert answer["content"] == "Hello from fakeai." and answer["done"] is True and answer["parentId"] == "u1"
    assert answer["usage"]["total_tokens"] == 14 and answer["meta"]["task_id"] == body["task_ids"][0]

    # The events stay readable for a while (catch-up after a reconnect).
    replay = expect_ok(mstack.get(f"/api/tasks/{body['task_ids'][0]}/events", madmin["token"]))
    assert replay["done"] is True and len(replay["events"]) == len(events)
    after = replay["events"][2]["id"]
    assert len(expect_ok(mstack.get(f"/api/tasks/{body['task_ids'][0]}/events?after={after}", madmin["token"]))["events"]) == len(events) - 3
    other = mstack.create_user(madmin["token"], role="user")
    expect_error(mstack.get(f"/api/tasks/{body['task_ids'][0]}/events", other["token"]), 404)

    # A second turn continues the same chat.
    second = expect_ok(mstack.post("/api/chat/completions", madmin["token"], json={
        "model": "fake-gpt", "messages": [{"role": "user", "content": "again"}], "stream": True, "chat_id": chat_id,
        "id": "a2", "session_id": sock.sid,
        "user_message": {"id": "u2", "parentId": "a1", "role": "user", "content": "again"}}))
    assert second["chat_id"] == chat_id

    def answered():
        msgs = expect_ok(mstack.get(f"/api/v1/chats/{chat_id}", madmin["token"]))["chat"]["history"]["messages"]
        assert msgs["a2"]["done"] is True and msgs["a2"]["content"] == "Hello from fakeai."
        return msgs

    msgs = until(answered)
    assert msgs["a1"]["childrenIds"] == ["u2"] and msgs["u2"]["childrenIds"] == ["a2"]
    # The same assistant id again, or another user's chat, is refused.
    expect_error(mstack.post("/api/chat/completions", madmin["token"], json={
        "model": "fake-gpt", "messages": [], "chat_id": chat_id, "id": "a2", "session_id": sock.sid}), 409)
    granted_user = mstack.create_user(madmin["token"], role="user")
    expect_ok(mstack.post("/api/v1/models/model/access/update", madmin["token"], json={
        "id": "fake-gpt", "access_grants": [{"principal_type": "user", "principal_id": "*", "permission": "read"}]}))
    expect_error(mstack.post("/api/chat/completions", granted_user["token"], json={
        "model": "fake-gpt", "messages": [], "chat_id": chat_id, "id": "a9", "session_id": "x"}), 404)


def test_task_mode_reads_crlf_and_split_characters(mstack, madmin, clients):
    sock = clients(mstack, token=madmin["token"], join_token=madmin["token"])
    until(lambda: sock.join_acks)
    body = expect_ok(mstack.post("/api/chat/completions", madmin["token"], json={
        "model": "fake-gpt", "messages": [{"role": "user", "content": "crlf please"}], "stream": True,
        "parent_id": None, "id": "a1", "session_id": sock.sid,
        "user_message": {"id": "u1", "parentId": None, "role": "user", "content": "crlf please"}}))

    def answered():
        msg = expect_ok(mstack.get(f"/api/v1/chats/{body['chat_id']}", madmin["token"]))["chat"]["history"]["messages"]["a1"]
        assert msg["done"] is True
        return msg

    assert until(answered)["content"] == "Grüße aus Zürich ✓"
    # Bad event ids and huge pages are refused or empty, never a crash.
    expect_error(mstack.get(f"/api/tasks/{body['task_ids'][0]}/events?after=junk", madmin["token"]), 400)
    assert expect_ok(mstack.get("/api/v1/models/list?page=9223372036854775807", madmin["token"]))["items"] == []
    expect_error(mstack.get("/api/v1/models/list?page=99999999999999999999999", madmin["token"]), 422)


def test_task_stop_saves_what_was_said(mstack, madmin, clients):
    sock = clients(mstack, token=madmin["token"], join_token=madmin["token"])
    eventually(lambda: sock.join_acks, timeout=5)
    body = expect_ok(mstack.post("/api/chat/completions", madmin["token"], json={
        "model": "fake-gpt", "messages": [{"role": "user", "content": "slow story"}], "stream": True,
        "parent_id": None, "id": "a1", "session_id": sock.sid,
        "user_message": {"id": "u1", "parentId": None, "role": "user", "content": "slow story"}}))
    task_id, chat_id = body["task_ids"][0], body["chat_id"]
    assert task_id in expect_ok(mstack.get("/api/tasks", madmin["token"]))["tasks"]
    assert expect_ok(mstack.get(f"/api/tasks/chat/{chat_id}", madmin["token"])) == {"task_ids": [task_id]}
    eventually(lambda: len([e for e in _events(sock, chat_id) if e["data"]["type"] == "response:completion"]) > 3)
    assert expect_ok(mstack.post(f"/api/tasks/stop/{task_id}", madmin["token"])) == {
        "status": True, "message": f"Task {task_id} stopped."}
    eventually(lambda: [e for e in _events(sock, chat_id) if e["data"]["type"] == "chat:tasks:cancel"], timeout=10)

    def saved():
        answer = expect_ok(mstack.get(f"/api/v1/chats/{chat_id}", madmin["token"]))["chat"]["history"]["messages"]["a1"]
        assert answer["done"] is True and answer["content"].startswith("word0")
        return answer

    assert until(saved)["output"][0]["status"] == "incomplete"
    assert eventually(lambda: expect_ok(mstack.get(f"/api/tasks/chat/{chat_id}", madmin["token"])) == {"task_ids": []})
    user = mstack.create_user(madmin["token"], role="user")
    expect_error(mstack.get("/api/tasks", user["token"]), 401)
    assert expect_ok(mstack.get(f"/api/tasks/chat/{chat_id}", user["token"])) == {"task_ids": []}


def test_task_mode_provider_error_is_saved(mstack, madmin, clients):
    sock = clients(mstack, token=madmin["token"], join_token=madmin["token"])
    eventually(lambda: sock.join_acks, timeout=5)
    body = expect_ok(mstack.post("/api/chat/completions", madmin["token"], json={
        "model": "fake-gpt", "messages": [{"role": "user", "content": "explode now"}], "stream": True,
        "parent_id": None, "id": "a1", "session_id": sock.sid,
        "user_message": {"id": "u1", "parentId": None, "role": "user", "content": "explode now"}}))
    chat_id = body["chat_id"]
    error = until(lambda: next(e for e in _events(sock, chat_id) if e["data"]["type"] == "chat:message:error"))
    assert error["data"]["data"] == {"error": {"content": "fakeai exploded"}, "done": True}
    answer = expect_ok(mstack.get(f"/api/v1/chats/{chat_id}", madmin["token"]))["chat"]["history"]["messages"]["a1"]
    assert answer["error"] == {"content": "fakeai exploded"} and answer["done"] is True


# ---- custom models: history, bad input, export and import, delete


def test_model_history_and_versions(mstack, madmin):
    form = {"id": "historian", "base_model_id": "fake-gpt", "name": "v1", "meta": {}, "params": {"system": "one"},
            "commit_message": "first"}
    first = expect_ok(mstack.post("/api/v1/models/create", madmin["token"], json=form))
    form.update(name="v2", params={"system": "two"}, commit_message="second")
    second = expect_ok(mstack.post("/api/v1/models/model/update", madmin["token"], json=form))
    assert second["version_id"] != first["version_id"]
    history = expect_ok(mstack.get("/api/v1/models/model/history?id=historian", madmin["token"]))
    assert [h["commit_message"] for h in history] == ["second", "first"] and history[0]["user"] == {"name": "Admin"}
    assert history[0]["parent_id"] == first["version_id"]
    entry = expect_ok(mstack.get(f"/api/v1/models/model/history/{first['version_id']}?id=historian", madmin["token"]))
    assert entry["snapshot"]["name"] == "v1" and entry["snapshot"]["params"] == {"system": "one"}
    expect_error(mstack.delete(f"/api/v1/models/model/history/{second['version_id']}?id=historian", madmin["token"]), 400,
                 "Cannot delete the current version")
    restored = expect_ok(mstack.post("/api/v1/models/model/update/version?id=historian", madmin["token"],
                                     json={"version_id": first["version_id"]}))
    assert restored["name"] == "v1" and restored["params"] == {"system": "one"} and restored["version_id"] == first["version_id"]
    assert expect_ok(mstack.delete(f"/api/v1/models/model/history/{second['version_id']}?id=historian", madmin["token"])) is True
    expect_error(mstack.get(f"/api/v1/models/model/history/{second['version_id']}?id=historian", madmin["token"]), 404,
                 "Model version not found")
    user = mstack.create_user(madmin["token"], role="user")
    expect_error(mstack.get("/api/v1/models/model/history?id=historian", user["token"]), 403)
    expect_error(mstack.get("/api/v1/models/model/history?id=nobody", madmin["token"]), 404)


def test_model_routes_refuse_bad_input(mstack, madmin):
    token = madmin["token"]
    expect_422(mstack.post("/api/v1/models/create", token, json={"id": "x"}))
    expect_422(mstack.post("/api/v1/models/create", token, json={"id": "has space", "name": "n", "meta": {}, "params": {}}))
    expect_422(mstack.post("/api/v1/models/create", token, json={"id": "x", "name": "n", "meta": [], "params": {}}))
    expect_422(mstack.post("/api/v1/models/create", token, data="{", headers={"Content-Type": "application/json"}))
    expect_error(mstack.post("/api/v1/models/create", token, json={"id": "x" * 300, "name": "n", "meta": {}, "params": {}}),
                 400, "The model id is too long. Please make sure your model id is less than 256 characters long.")
    missing = "We could not find what you're looking for :/"
    expect_error(mstack.post("/api/v1/models/model/toggle?id=nobody", token), 401, missing)
    expect_error(mstack.post("/api/v1/models/model/update", token, json={"id": "nobody", "name": "n", "meta": {}, "params": {}}),
                 401, missing)
    expect_error(mstack.post("/api/v1/models/model/delete", token, json={"id": "nobody"}), 401, missing)
    expect_error(mstack.get("/api/v1/models/model?id=nobody", token), 404, missing)
    expect_422(mstack.post("/api/v1/models/model/delete", token, json={}))
    expect_422(mstack.post("/openai/config/update", token, json={"OPENAI_API_BASE_URLS": "x", "OPENAI_API_KEYS": [],
                                                                  "OPENAI_API_CONFIGS": {}}))
    # Nothing of it was stored.
    ids = [m["id"] for m in expect_ok(mstack.get("/api/v1/models/all", token))]
    assert "x" not in ids and "has space" not in ids


def test_export_import_tags_and_delete(mstack, madmin):
    token = madmin["token"]
    expect_ok(mstack.post("/api/v1/models/create", token, json={
        "id": "tagged", "base_model_id": "fake-gpt", "name": "Tagged", "params": {},
        "meta": {"tags": ["work", {"name": "fun"}]}}))
    assert {"fun", "work"} <= set(expect_ok(mstack.get("/api/v1/models/tags", token)))
    assert [m["id"] for m in expect_ok(mstack.get("/api/v1/models/list?tag=work", token))["items"]] == ["tagged"]
    exported = expect_ok(mstack.get("/api/v1/models/export?ids=tagged", token))
    assert [m["id"] for m in exported] == ["tagged"] and exported[0]["background_image_data"] is None
    copy = dict(exported[0], id="tagged-copy", name="Copy")
    assert expect_ok(mstack.post("/api/v1/models/import", token, json={"models": [copy, {"id": ""}]})) is True
    assert expect_ok(mstack.get("/api/v1/models/model?id=tagged-copy", token))["name"] == "Copy"
    assert expect_ok(mstack.post("/api/v1/models/model/delete", token, json={"id": "tagged-copy"})) is True
    expect_error(mstack.get("/api/v1/models/model?id=tagged-copy", token), 404)
    user = mstack.create_user(madmin["token"], role="user")
    expect_error(mstack.delete("/api/v1/models/delete/all", user["token"]), 401)
    assert expect_ok(mstack.delete("/api/v1/models/delete/all", token)) is True
    assert expect_ok(mstack.get("/api/v1/models/all", token)) == []
    assert "my-assistant" not in [m["id"] for m in expect_ok(mstack.get("/api/models", token))["data"]]


# ---- RAG: files and knowledge bases in a completion


def test_files_and_collections_reach_the_provider(mstack, madmin, provider):
    from test_retrieval import CODEWORD, processed, upload

    token = madmin["token"]
    f = upload(mstack, madmin)
    processed(mstack, madmin, f["id"])
    body = expect_ok(chat(mstack, token, "fake-gpt", "What is the secret codeword?", stream=False,
                          files=[{"type": "file", "id": f["id"]}]))
    assert list(body)[0] == "sources" and body["object"] == "chat.completion"
    source = body["sources"][0]
    assert list(source) == ["source", "document", "metadata", "distances"]
    assert source["source"] == {"type": "file", "id": f["id"]} and "PELICAN-42" in source["document"][0]
    sent = last_chat_request(provider)["body"]
    assert "files" not in sent and len(sent["messages"]) == 1
    prompt = sent["messages"][0]["content"]
    assert prompt.startswith("### Task:") and prompt.endswith("</context>\n\nWhat is the secret codeword?")
    assert f'<source id="1" resource-type="file" resource-id="{f["id"]}">{CODEWORD.strip()}</source>' in prompt

    kb = expect_ok(mstack.post("/api/v1/knowledge/create", token, json={"name": "KB", "description": "d"}))
    expect_ok(mstack.post(f"/api/v1/knowledge/{kb['id']}/file/add", token, json={"file_id": f["id"]}))
    r = chat(mstack, token, "fake-gpt", "codeword please", stream=True, files=[{"type": "collection", "id": kb["id"]}])
    first = sse_events(r.text)[0]
    assert json.loads(first)["sources"][0]["source"]["id"] == kb["id"]
    assert "<source id=\"1\" resource-type=\"collection\"" in last_chat_request(provider)["body"]["messages"][-1]["content"]

    # Another user's file is left out: no sources, the question goes as it was.
    other = mstack.create_user(madmin["token"], role="user")
    expect_ok(mstack.post("/api/v1/models/model/access/update", token, json={
        "id": "fake-gpt", "access_grants": [{"principal_type": "user", "principal_id": "*", "permission": "read"}]}))
    body = expect_ok(chat(mstack, other["token"], "fake-gpt", "codeword?", stream=False, files=[{"type": "file", "id": f["id"]}]))
    assert "sources" not in body and last_chat_request(provider)["body"]["messages"][-1]["content"] == "codeword?"


def _webapp_turn(sock, model, *, text, user_id, answer_id, parent_id, chat_id=None, system=None, **extra):
    """A `POST /api/chat/completions` body as the 0.12.4 web app sends it for a stored chat: no history in
    `messages` (only the system prompt when one is set), the new user message in `user_message`."""
    body = {
        "stream": True, "model": model, "params": {"model_controls": {}}, "tool_ids": [], "tool_servers": [],
        "features": {"voice": False, "image_generation": False, "code_interpreter": False, "web_search": False},
        "variables": {"{{USER_NAME}}": "Admin", "{{USER_LANGUAGE}}": "en-US"},
        "model_item": {"id": model, "name": model, "owned_by": "openai"}, "session_id": sock.sid, "id": answer_id,
        "parent_id": parent_id,
        "user_message": {"id": user_id, "parentId": parent_id, "childrenIds": [answer_id], "role": "user",
                         "content": text, "timestamp": int(time.time()), "models": [model]},
        "background_tasks": {"follow_up_generation": True}, **extra,
    }
    if system is not None:
        body["messages"] = [{"role": "system", "content": system}]
    if chat_id is not None:
        body["chat_id"] = chat_id
    return body


def _answered(s, token, chat_id, answer_id):
    def done():
        message = expect_ok(s.get(f"/api/v1/chats/{chat_id}", token))["chat"]["history"]["messages"][answer_id]
        assert message["done"] is True
        return message
    return until(done)


def _conversation_sent(provider, since: int) -> list:
    """The messages of the one completion (not a title or follow-up prompt) the provider got after `since`."""
    sent = [r["body"] for r in provider.chat_requests()[since:]
            if "<chat_history>" not in json.dumps(r["body"].get("messages"))]
    assert len(sent) == 1, sent
    return sent[0]["messages"]


def test_task_mode_replays_the_stored_conversation(mstack, madmin, provider, clients):
    token = madmin["token"]
    sock = clients(mstack, token=token, join_token=token)
    until(lambda: sock.join_acks)
    system = {"role": "system", "content": "Answer briefly."}
    user1 = {"role": "user", "content": "First question"}
    answer = {"role": "assistant", "content": "Hello from fakeai."}

    # A new chat: no chat id, a null parent; the conversation is the system prompt and the user's message.
    before = len(provider.chat_requests())
    first = expect_ok(mstack.post("/api/chat/completions", token, json=_webapp_turn(
        sock, "fake-gpt", text="First question", user_id="u1", answer_id="a1", parent_id=None, system="Answer briefly.",
        background_tasks={"title_generation": True, "tags_generation": False, "follow_up_generation": True})))
    chat_id = first["chat_id"]
    _answered(mstack, token, chat_id, "a1")
    assert _conversation_sent(provider, before) == [system, user1]

    # The next turn sends only the system prompt: the provider still gets the whole conversation, in order,
    # with nothing of Open WebUI's own (ids, output, usage, model, meta) in any message.
    before = len(provider.chat_requests())
    expect_ok(mstack.post("/api/chat/completions", token, json=_webapp_turn(
        sock, "fake-gpt", text="Second question", user_id="u2", answer_id="a2", parent_id="a1", chat_id=chat_id,
        system="Answer briefly.")))
    _answered(mstack, token, chat_id, "a2")
    user2 = {"role": "user", "content": "Second question"}
    assert _conversation_sent(provider, before) == [system, user1, answer, user2]

    # No `messages` at all, and history the client sends is ignored: the stored chain wins.
    before = len(provider.chat_requests())
    expect_ok(mstack.post("/api/chat/completions", token, json=_webapp_turn(
        sock, "fake-gpt", text="Third question", user_id="u3", answer_id="a3", parent_id="a2", chat_id=chat_id)))
    _answered(mstack, token, chat_id, "a3")
    user3 = {"role": "user", "content": "Third question"}
    assert _conversation_sent(provider, before) == [user1, answer, user2, answer, user3]

    # Regenerating the third answer as a sibling: the stored user message is read back, not the siblings.
    before = len(provider.chat_requests())
    expect_ok(mstack.post("/api/chat/completions", token, json=_webapp_turn(
        sock, "fake-gpt", text="Third question", user_id="u3", answer_id="a3b", parent_id="a2", chat_id=chat_id,
        regeneration_message_id="a3", regeneration_prompt="Shorter, please.")))
    _answered(mstack, token, chat_id, "a3b")
    assert _conversation_sent(provider, before) == [
        user1, answer, user2, answer, user3, answer, {"role": "user", "content": "Shorter, please."}]


def test_task_mode_documents_answer_the_stored_question(mstack, madmin, provider, clients):
    from test_retrieval import CODEWORD, processed, upload

    token = madmin["token"]
    sock = clients(mstack, token=token, join_token=token)
    until(lambda: sock.join_acks)
    f = upload(mstack, madmin)
    processed(mstack, madmin, f["id"])
    before = len(provider.chat_requests())
    body = expect_ok(mstack.post("/api/chat/completions", token, json=_webapp_turn(
        sock, "fake-gpt", text="What is the secret codeword?", user_id="u1", answer_id="a1", parent_id=None,
        files=[{"type": "file", "id": f["id"]}])))
    assert _answered(mstack, token, body["chat_id"], "a1")["sources"][0]["source"]["id"] == f["id"]
    sent = _conversation_sent(provider, before)
    assert len(sent) == 1 and set(sent[0]) == {"role", "content"} and sent[0]["role"] == "user"
    assert sent[0]["content"].startswith("### Task:") and sent[0]["content"].endswith("</context>\n\nWhat is the secret codeword?")
    assert CODEWORD.strip() in sent[0]["content"]


def test_task_mode_images_the_provider_can_read(mstack, madmin, provider, clients):
    """A stored user message's images go to the provider as `image_url` parts: data and web URLs as they are, an
    uploaded image (its file id or content address, as the web app stores it) as a data URL of the file's bytes,
    read as the caller; an id no readable file has is left out (sent, the provider would refuse every later turn)."""
    import base64

    from test_retrieval import upload

    token = madmin["token"]
    sock = clients(mstack, token=token, join_token=token)
    until(lambda: sock.join_acks)
    png = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")
    pixel = "data:image/png;base64," + base64.b64encode(png).decode()
    uploaded = upload(mstack, madmin, name="dot.png", data=png, content_type="image/png")
    missing = "0b0c9a52-1d7e-4a41-9a52-6a0f3c1d2e11"
    body = _webapp_turn(sock, "fake-gpt", text="What is in these?", user_id="u1", answer_id="a1", parent_id=None)
    body["user_message"]["files"] = [
        {"type": "image", "url": "https://example.com/cat.png"},
        {"type": "image", "url": uploaded["id"], "content_type": "image/png"},
        {"type": "image", "url": f"/api/v1/files/{uploaded['id']}/content"},
        {"type": "image", "url": missing, "content_type": "image/png"},
    ]
    before = len(provider.chat_requests())
    chat_id = expect_ok(mstack.post("/api/chat/completions", token, json=body))["chat_id"]
    _answered(mstack, token, chat_id, "a1")
    assert _conversation_sent(provider, before) == [{"role": "user", "content": [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "image_url", "image_url": {"url": pixel}},
        {"type": "image_url", "image_url": {"url": pixel}}]}]
    # Only an unreadable one: the message stays plain text.
    body = _webapp_turn(sock, "fake-gpt", text="And this?", user_id="u2", answer_id="a2", parent_id=None)
    body["user_message"]["files"] = [{"type": "image", "url": missing}]
    before = len(provider.chat_requests())
    chat_id = expect_ok(mstack.post("/api/chat/completions", token, json=body))["chat_id"]
    _answered(mstack, token, chat_id, "a2")
    assert _conversation_sent(provider, before) == [{"role": "user", "content": "And this?"}]
