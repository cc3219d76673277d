"""A user's own data (settings with `raw`, status, variables), banners, `/api/usage`, and the list routes the
stock web app calls when a new user signs in (webapp-calls.md, boot sequence), through the gateway.

Facts pinned from the 0.12.4 source (routers/users.py, routers/configs.py, main.py): a new user's settings are
`null` (200); `ui` is written first; variables are `{"variables": {}}` until set and replaced whole, with 400s
for bad keys and values; status answers the whole user; banners are read by any signed-in user and replaced by
admins; `/api/usage` is `{"model_ids", "user_count"}`.
"""

from __future__ import annotations

import time

from stacklib import eventually, expect_422, expect_error, expect_ok
from test_realtime import Client, clients  # noqa: F401  (fixture re-export)

PROHIBITED = ("You do not have permission to access this resource. Please contact your administrator for "
              "assistance.")


def test_new_user_boot_lists(stack, make_user):
    """Every list route the web app calls at start-up answers 200 with the real shapes for a new user."""
    user = make_user()
    t = user["token"]
    assert expect_ok(stack.get("/api/v1/configs/banners", t)) == []
    assert expect_ok(stack.get("/api/v1/tools/?", t)) == []
    assert expect_ok(stack.get("/api/v1/users/user/settings", t)) is None
    assert expect_ok(stack.get("/api/v1/chats/all/tags", t)) == []
    assert expect_ok(stack.get("/api/v1/notes/pinned", t)) == []
    assert expect_ok(stack.get("/api/v1/chats/", t, params={"page": 1})) == []
    assert expect_ok(stack.get("/api/v1/chats/pinned", t)) == []
    assert expect_ok(stack.get("/api/v1/folders/", t)) == []
    assert isinstance(expect_ok(stack.get("/api/v1/functions/", t)), list)
    assert expect_ok(stack.get("/api/v1/skills/?", t)) == []
    assert expect_ok(stack.get("/api/v1/chats/", t, params={"page": 2})) == []
    # The settings dialog's calls.
    assert expect_ok(stack.get("/api/v1/users/user/settings", t, params={"raw": "true"})) is None
    assert expect_ok(stack.get("/api/v1/memories/", t)) == []
    assert expect_ok(stack.get("/api/v1/users/user/variables", t)) == {"variables": {}}
    assert expect_ok(stack.get("/api/v1/prompts/", t)) == []
    usage = expect_ok(stack.get("/api/usage", t))
    assert list(usage) == ["model_ids", "user_count"]


def test_settings_merge_and_order(stack, make_user):
    user = make_user()
    t = user["token"]
    saved = expect_ok(stack.post("/api/v1/users/user/settings/update", t, json={"memory": {"x": 1}}))
    assert saved == {"ui": {}, "memory": {"x": 1}}
    r = stack.get("/api/v1/users/user/settings", t)
    assert r.text.startswith('{"ui":'), "ui comes first"
    saved = expect_ok(stack.post("/api/v1/users/user/settings/update", t, json={"ui": {"version": "0.12.4", "a": 1}}))
    assert saved["ui"] == {"version": "0.12.4", "a": 1}
    saved = expect_ok(stack.post("/api/v1/users/user/settings/update", t, json={"ui": {"a": None}}))
    assert saved["ui"] == {"version": "0.12.4"} and saved["memory"] == {"x": 1}
    expect_422(stack.post("/api/v1/users/user/settings/update", t, json=[1]), ["body"])


def test_settings_keys_a_user_may_not_set(stack, make_user, make_stack):
    # Default permissions: no webhooks and no direct tool servers for users; interface and system prompt allowed.
    t = make_user()["token"]
    saved = expect_ok(stack.post("/api/v1/users/user/settings/update", t, json={
        "notifications": {"webhook_url": "https://hook"},
        "ui": {"notifications": {"webhook_url": "https://hook", "enabled": True}, "toolServers": [{"url": "x"}],
               "system": "Be brief.", "widescreenMode": True}}))
    assert "notifications" not in saved and "toolServers" not in saved["ui"]
    assert saved["ui"]["notifications"] == {"enabled": True}
    assert saved["ui"]["system"] == "Be brief." and saved["ui"]["widescreenMode"] is True

    # An admin who takes the interface and system-prompt permissions away: those keys are dropped, others kept.
    s = make_stack()
    admin = s.signup_admin()
    s.set_admin_config(admin["token"], ENABLE_SIGNUP=True)
    perms = expect_ok(s.get("/api/v1/users/default/permissions", admin["token"]))
    perms["settings"]["interface"] = False
    perms["chat"]["system_prompt"] = False
    expect_ok(s.post("/api/v1/users/default/permissions", admin["token"], json=perms))
    user = s.create_user(admin["token"], role="user")
    saved = expect_ok(s.post("/api/v1/users/user/settings/update", user["token"], json={
        "ui": {"widescreenMode": True, "system": "x", "version": "0.12.4", "memory": True}}))
    assert saved["ui"] == {"version": "0.12.4", "memory": True}
    # Admins keep everything.
    saved = expect_ok(s.post("/api/v1/users/user/settings/update", admin["token"], json={
        "ui": {"widescreenMode": True, "system": "x", "toolServers": []}, "notifications": {"webhook_url": "h"}}))
    assert saved["ui"] == {"widescreenMode": True, "system": "x", "toolServers": []} and saved["notifications"]


def test_status_and_variables(stack, make_user):
    user = make_user()
    t = user["token"]
    me = expect_ok(stack.get("/api/v1/users/user/status", t))
    assert me["id"] == user["id"] and me["status_emoji"] is None
    me = expect_ok(stack.post("/api/v1/users/user/status/update", t, json={
        "status_emoji": "🌴", "status_message": "away", "status_expires_at": None}))
    assert me["status_emoji"] == "🌴" and me["status_message"] == "away"
    me = expect_ok(stack.post("/api/v1/users/user/status/update", t, json={"status_emoji": None}))
    assert me["status_emoji"] == "🌴", "null leaves a field as it is"

    assert expect_ok(stack.post("/api/v1/users/user/variables/update", t, json={
        "variables": {"city": "Oslo", "team_2": "a\r\nb"}})) == {"variables": {"city": "Oslo", "team_2": "a\nb"}}
    assert expect_ok(stack.post("/api/v1/users/user/variables/update", t, json={"variables": {"only": "x"}})) == {
        "variables": {"only": "x"}}
    assert expect_ok(stack.get("/api/v1/users/user/variables", t)) == {"variables": {"only": "x"}}
    expect_error(stack.post("/api/v1/users/user/variables/update", t, json={"variables": {"Bad": "x"}}), 400,
                 "Invalid user variable key: Bad")
    expect_error(stack.post("/api/v1/users/user/variables/update", t, json={"variables": {"n": 1}}), 400,
                 "User variable must be a string: n")
    expect_error(stack.post("/api/v1/users/user/variables/update", t, json={"variables": {"n": "x" * 20001}}), 400,
                 "User variable is too long: n")
    expect_422(stack.post("/api/v1/users/user/variables/update", t, json={"variables": [1]}), ["body", "variables"])
    assert expect_ok(stack.get("/api/v1/users/user/variables", t)) == {"variables": {"only": "x"}}, "nothing harmed"


def test_banners(stack, admin, make_user):
    user, pending = make_user(), make_user(role="pending")
    banner = {"id": "b1", "type": "info", "content": "Maintenance tonight", "dismissible": True, "timestamp": 1795421000,
              "extra": "dropped"}
    saved = expect_ok(stack.post("/api/v1/configs/banners", admin["token"], json={"banners": [banner]}))
    assert saved == [{"i18n": None, "id": "b1", "type": "info", "title": None, "content": "Maintenance tonight",
                      "dismissible": True, "timestamp": 1795421000}]
    assert list(saved[0]) == ["i18n", "id", "type", "title", "content", "dismissible", "timestamp"]
    assert expect_ok(stack.get("/api/v1/configs/banners", user["token"])) == saved
    expect_error(stack.post("/api/v1/configs/banners", user["token"], json={"banners": []}), 401, PROHIBITED)
    expect_error(stack.get("/api/v1/configs/banners", pending["token"]), 401, PROHIBITED)
    expect_422(stack.post("/api/v1/configs/banners", admin["token"], json={"banners": [{"id": "x"}]}))
    assert expect_ok(stack.post("/api/v1/configs/banners", admin["token"], json={"banners": []})) == []


def test_usage_counts_active_users_and_models(stack, make_user, clients):
    user = make_user()
    client = clients(stack, token=user["token"])
    client.emit("usage", {"model": "fake-gpt"})
    # Models in use within 3 seconds; users active within 3 minutes (gateways flush every 5 seconds).
    usage = eventually(lambda: (u := expect_ok(stack.get("/api/usage", user["token"])))["model_ids"] and u or None,
                       timeout=5)
    assert usage["model_ids"] == ["fake-gpt"]
    counted = eventually(lambda: (u := expect_ok(stack.get("/api/usage", user["token"])))["user_count"] >= 1 and u,
                         timeout=10)
    assert counted["user_count"] >= 1
    time.sleep(3.5)
    assert "fake-gpt" not in expect_ok(stack.get("/api/usage", user["token"]))["model_ids"]
