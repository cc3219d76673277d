"""A pending user (signed up, not yet approved) and a plain user against every workspace family's routes:
the real server's `get_verified_user` answers 401 with its access text to pending users, and its admin-only
routes answer plain users the same way."""

from __future__ import annotations

import pytest

from stacklib import ACCESS_PROHIBITED, expect_error

PENDING_REFUSED = [
    ("GET", "/api/v1/prompts/"), ("GET", "/api/v1/prompts/list"), ("POST", "/api/v1/prompts/create"),
    ("GET", "/api/v1/notes/"), ("POST", "/api/v1/notes/create"), ("GET", "/api/v1/notes/pinned"),
    ("GET", "/api/v1/memories/"), ("POST", "/api/v1/memories/add"), ("POST", "/api/v1/memories/paths"),
    ("GET", "/api/v1/tools/"), ("GET", "/api/v1/tools/list"), ("POST", "/api/v1/tools/create"),
    ("GET", "/api/v1/functions/"), ("GET", "/api/v1/skills/"), ("GET", "/api/v1/skills/list"),
    ("POST", "/api/v1/skills/create"), ("GET", "/api/v1/users/user/settings"), ("GET", "/api/v1/configs/banners"),
    ("GET", "/api/models"), ("GET", "/api/v1/models/list"), ("POST", "/api/chat/completions"), ("GET", "/api/tasks/chat/x"),
]

ADMIN_ONLY = [
    ("GET", "/api/v1/functions/list"), ("POST", "/api/v1/functions/create"), ("POST", "/api/v1/configs/banners"),
    ("GET", "/api/models/base"), ("GET", "/api/v1/models/all"), ("GET", "/openai/config"), ("GET", "/ollama/config"),
    ("GET", "/api/tasks"), ("POST", "/api/v1/memories/reindex"),
]


@pytest.mark.parametrize("method,path", PENDING_REFUSED)
def test_pending_user_is_refused(stack, make_user, method, path):
    pending = make_user(role="pending")
    r = stack.request(method, path, pending["token"], json={} if method == "POST" else None)
    expect_error(r, 401, ACCESS_PROHIBITED)


@pytest.mark.parametrize("method,path", ADMIN_ONLY)
def test_plain_user_is_refused_admin_routes(stack, make_user, method, path):
    user = make_user()
    r = stack.request(method, path, user["token"], json={} if method == "POST" else None)
    expect_error(r, 401, ACCESS_PROHIBITED)
