"""The chat routes beyond the everyday ones: events on the chat stream, the admin's chat settings,
compaction's answer, forking a branch, per-chat params and read state."""

from __future__ import annotations

import json

from stacklib import ACCESS_PROHIBITED, eventually, expect_error, expect_ok, redis_cli
from test_chats import API, create_chat, get_chat, sample_chat


def stream_events(stack, stream: str = "skiff:events:chat") -> list[dict]:
    out = redis_cli(stack.redis_url, "--no-raw", "XRANGE", stream, "-", "+").stdout
    events = []
    for line in out.splitlines():
        line = line.strip()
        start = line.find('"{')
        if start < 0:
            continue
        text = line[start:]
        try:
            events.append(json.loads(json.loads(text)))
        except ValueError:
            continue
    return events


def test_changes_go_out_on_the_chat_stream(stack, make_user):
    alice = make_user()
    chat = create_chat(stack, alice, sample_chat("Streamed"))
    expect_ok(stack.post(f"{API}/{chat['id']}", alice["token"], json={"chat": {"title": "Streamed again"}}))
    expect_ok(stack.request("DELETE", f"{API}/{chat['id']}", alice["token"]))

    def seen():
        types = [e["type"] for e in stream_events(stack) if e.get("data", {}).get("chat_id") == chat["id"]]
        return types if {"chat.created", "chat.updated", "chat.deleted"} <= set(types) else None

    types = eventually(seen, timeout=10)
    assert types, [e["type"] for e in stream_events(stack)]
    assert types.index("chat.updated") < types.index("chat.deleted")
    deleted = [e for e in stream_events(stack) if e["type"] == "chat.deleted" and e["data"].get("chat_id") == chat["id"]]
    assert deleted[0]["data"]["user_id"] == alice["id"] and deleted[0]["actor_id"] == alice["id"]


def test_chat_config_is_for_admins(stack, admin, make_user):
    bob = make_user()
    expect_error(stack.get(f"{API}/config", bob["token"]), 401, ACCESS_PROHIBITED)
    config = expect_ok(stack.get(f"{API}/config", admin["token"]))
    assert list(config)[:3] == [
        "CONTEXT_COMPACTION_MODEL", "ENABLE_CONTEXT_COMPACTION", "CONTEXT_COMPACTION_TOKEN_THRESHOLD"]
    missing = expect_error(stack.post(f"{API}/config", admin["token"], json={}), 422)
    assert {tuple(i["loc"]) for i in missing} == {
        ("body", "ENABLE_CONTEXT_COMPACTION"), ("body", "CONTEXT_COMPACTION_PROMPT_TEMPLATE")} or missing
    saved = expect_ok(stack.post(f"{API}/config", admin["token"], json={
        "ENABLE_CONTEXT_COMPACTION": False, "CONTEXT_COMPACTION_PROMPT_TEMPLATE": "Summarise.",
        "CONTEXT_COMPACTION_RETENTION_PERCENTAGE": 90, "TOOL_SEARCH_ALWAYS_LOADED": [" a ", ""]}))
    assert saved["CONTEXT_COMPACTION_RETENTION_PERCENTAGE"] == 50
    assert saved["TOOL_SEARCH_ALWAYS_LOADED"] == ["a"]
    assert expect_ok(stack.get(f"{API}/config", admin["token"]))["CONTEXT_COMPACTION_PROMPT_TEMPLATE"] == "Summarise."


def test_compact_answers_disabled(stack, make_user):
    alice, bob = make_user(), make_user()
    chat = create_chat(stack, alice, sample_chat())
    reply = expect_ok(stack.post(f"{API}/{chat['id']}/compact", alice["token"], json={}))
    assert reply == {"ok": True, "compacted": False, "reason": "disabled", "context_usage": None}
    expect_error(stack.post(f"{API}/{chat['id']}/compact", bob["token"], json={}), 401)
    empty = create_chat(stack, alice, {"title": "No model", "history": {"messages": {}, "currentId": None}})
    expect_error(stack.post(f"{API}/{empty['id']}/compact", alice["token"], json={}), 400,
                 "No model found for context compaction.")


def test_fork_takes_one_branch(stack, make_user):
    alice, bob = make_user(), make_user()
    chat = create_chat(stack, alice, sample_chat("Forked"))
    fork = expect_ok(stack.post(f"{API}/{chat['id']}/fork", alice["token"], json={"message_id": "m1"}))
    assert fork["id"] != chat["id"] and fork["title"] == "Forked (fork)"
    history = fork["chat"]["history"]
    assert list(history["messages"]) == ["m1"] and history["currentId"] == "m1"
    assert history["messages"]["m1"]["childrenIds"] == []
    assert fork["chat"]["originalChatId"] == chat["id"] and fork["chat"]["branchPointMessageId"] == "m1"
    assert fork["meta"]["forked_from"] == chat["id"]
    whole = expect_ok(stack.post(f"{API}/{chat['id']}/fork", alice["token"], json={}))
    assert set(whole["chat"]["history"]["messages"]) == {"m1", "m2"}
    expect_error(stack.post(f"{API}/{chat['id']}/fork", alice["token"], json={"message_id": "nope"}), 404,
                 "message not found")
    expect_error(stack.post(f"{API}/{chat['id']}/fork", bob["token"], json={}), 401)


def test_params_merge_without_touching_the_rest(stack, make_user):
    alice, bob = make_user(), make_user()
    chat = create_chat(stack, alice, sample_chat())
    merged = expect_ok(stack.request("PATCH", f"{API}/{chat['id']}/params", alice["token"], json={"temperature": 0.3}))
    assert merged == {"temperature": 0.3}
    merged = expect_ok(stack.request("PATCH", f"{API}/{chat['id']}/params", alice["token"], json={"top_p": 0.9}))
    assert merged == {"temperature": 0.3, "top_p": 0.9}
    stored = get_chat(stack, alice, chat["id"])
    assert stored["chat"]["params"] == merged and stored["updated_at"] == chat["updated_at"]
    expect_error(stack.request("PATCH", f"{API}/{chat['id']}/params", bob["token"], json={"x": 1}), 401,
                 ACCESS_PROHIBITED)
    expect_error(stack.request("PATCH", f"{API}/{chat['id']}/params", alice["token"], json=[1]), 422)


def test_read_and_unread(stack, make_user):
    alice = make_user()
    chat = create_chat(stack, alice, sample_chat())
    unread = expect_ok(stack.post(f"{API}/{chat['id']}/unread", alice["token"]))
    assert unread == {"chat_id": chat["id"], "last_read_at": 0, "folder_id": None, "folder_unread_counts": {}}
    listed = expect_ok(stack.get(f"{API}/", alice["token"]))
    assert listed[0]["last_read_at"] == 0
    read = expect_ok(stack.post(f"{API}/read", alice["token"]))
    assert read["updated_count"] >= 1
    assert expect_ok(stack.get(f"{API}/", alice["token"]))[0]["last_read_at"] == chat["updated_at"]
