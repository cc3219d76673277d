"""API keys: the ENABLE_API_KEYS switch, use as Bearer and x-api-key, endpoint restrictions, deletion.

These tests share one Skiff of their own (the admin config switches they flip would disturb other tests);
each test sets the switches it needs first, so they still run in any order.
"""

from __future__ import annotations

import pytest

from stacklib import (
    ACCESS_PROHIBITED,
    API_KEY_CREATION_NOT_ALLOWED,
    API_KEY_NOT_ALLOWED,
    API_KEY_NOT_FOUND,
    HUMAN_SESSION_REQUIRED,
    INVALID_TOKEN,
    describe,
    eventually,
    expect_error,
    expect_ok,
    module_stack,
)


@pytest.fixture(scope="module")
def kstack(request):
    yield from module_stack(request, "apikeys")


@pytest.fixture(scope="module")
def kadmin(kstack):
    return kstack.signup_admin()


def configure(s, admin, **changes):
    defaults = {"ENABLE_API_KEYS": True, "ENABLE_API_KEYS_ENDPOINT_RESTRICTIONS": False, "API_KEYS_ALLOWED_ENDPOINTS": ""}
    defaults.update(changes)
    return s.set_admin_config(admin["token"], **defaults)


def new_key(s, admin):
    body = expect_ok(s.post("/api/v1/auths/api_key", admin["token"]))
    assert set(body.keys()) == {"api_key"}, body
    assert body["api_key"].startswith("sk-"), body
    return body["api_key"]


def status_becomes(fn, status, timeout=5.0):
    """The gateway learns config and key changes through events; allow it a moment."""
    return eventually(lambda: fn().status_code == status, timeout=timeout)


def test_key_creation_refused_while_disabled(kstack, kadmin):
    configure(kstack, kadmin, ENABLE_API_KEYS=False)
    expect_error(kstack.post("/api/v1/auths/api_key", kadmin["token"]), 403, API_KEY_CREATION_NOT_ALLOWED)
    expect_error(kstack.get("/api/v1/auths/api_key", kadmin["token"]), 403, API_KEY_CREATION_NOT_ALLOWED)
    assert expect_ok(kstack.get("/api/config", kadmin["token"]))["features"]["enable_api_keys"] is False


def test_key_lifecycle(kstack, kadmin):
    s, admin = kstack, kadmin
    configure(s, admin)
    assert expect_ok(s.get("/api/config", admin["token"]))["features"]["enable_api_keys"] is True

    # No key yet (or a leftover from another test: delete it first).
    assert expect_ok(s.delete("/api/v1/auths/api_key", admin["token"])) in (True, False)
    expect_error(s.get("/api/v1/auths/api_key", admin["token"]), 404, API_KEY_NOT_FOUND)

    key = new_key(s, admin)
    got = expect_ok(s.get("/api/v1/auths/api_key", admin["token"]))
    # Skiff stores keys hashed: GET cannot give the whole key back, only something that looks like one.
    assert got["api_key"].startswith("sk-"), got

    # A key is not a human session ...
    expect_error(s.get("/api/v1/auths/", key), 403, HUMAN_SESSION_REQUIRED)
    expect_error(s.get("/api/v1/auths/", headers={"x-api-key": key}), 403, HUMAN_SESSION_REQUIRED)
    # ... but works on ordinary verified routes, as Bearer and as x-api-key.
    assert isinstance(expect_ok(s.get("/api/v1/groups/", key)), list)
    assert isinstance(expect_ok(s.get("/api/v1/groups/", headers={"x-api-key": key})), list)
    assert isinstance(expect_ok(s.get("/api/v1/users/", key))["users"], list)  # the owner is an admin

    # Creating a key again replaces the old one.
    second = new_key(s, admin)
    assert second != key
    assert status_becomes(lambda: s.get("/api/v1/groups/", key), 401), describe(s.get("/api/v1/groups/", key))
    expect_error(s.get("/api/v1/groups/", key), 401, INVALID_TOKEN)
    expect_ok(s.get("/api/v1/groups/", second))

    assert expect_ok(s.delete("/api/v1/auths/api_key", admin["token"])) is True
    assert status_becomes(lambda: s.get("/api/v1/auths/", second), 401), describe(s.get("/api/v1/auths/", second))
    expect_error(s.get("/api/v1/auths/", second), 401, INVALID_TOKEN)
    expect_error(s.get("/api/v1/groups/", headers={"x-api-key": second}), 401, INVALID_TOKEN)
    # The session token is untouched.
    expect_ok(s.get("/api/v1/auths/", admin["token"]))


def test_unknown_key_is_refused(kstack, kadmin):
    configure(kstack, kadmin)
    expect_error(kstack.get("/api/v1/groups/", "sk-00000000000000000000000000000000"), 401, INVALID_TOKEN)


def test_endpoint_restrictions(kstack, kadmin):
    s, admin = kstack, kadmin
    configure(s, admin)
    key = new_key(s, admin)
    try:
        configure(s, admin, ENABLE_API_KEYS_ENDPOINT_RESTRICTIONS=True, API_KEYS_ALLOWED_ENDPOINTS="/api/v1/groups")
        assert status_becomes(lambda: s.get("/api/v1/users/user/settings", key), 403), describe(
            s.get("/api/v1/users/user/settings", key)
        )
        expect_error(s.get("/api/v1/users/user/settings", key), 403, ACCESS_PROHIBITED)
        expect_error(s.get("/api/v1/users/user/settings", headers={"x-api-key": key}), 403, ACCESS_PROHIBITED)
        expect_error(s.get("/api/v1/users/", key), 403, ACCESS_PROHIBITED)
        # A prefix match must end at a path segment: /api/v1/groupsX is not /api/v1/groups.
        assert s.get("/api/v1/groupsX", key).status_code in (403, 404)
        assert isinstance(expect_ok(s.get("/api/v1/groups/", key)), list)
        # Restrictions bind keys only, never sessions.
        assert s.get("/api/v1/users/user/settings", admin["token"]).status_code == 200

        configure(s, admin, ENABLE_API_KEYS_ENDPOINT_RESTRICTIONS=False)
        assert status_becomes(lambda: s.get("/api/v1/users/user/settings", key), 200), describe(
            s.get("/api/v1/users/user/settings", key)
        )
        assert isinstance(expect_ok(s.get("/api/v1/users/", key))["users"], list)
    finally:
        configure(s, admin, ENABLE_API_KEYS_ENDPOINT_RESTRICTIONS=False)


def test_existing_key_stops_working_when_keys_are_disabled(kstack, kadmin):
    s, admin = kstack, kadmin
    configure(s, admin)
    key = new_key(s, admin)
    expect_ok(s.get("/api/v1/groups/", key))
    try:
        configure(s, admin, ENABLE_API_KEYS=False)
        assert status_becomes(lambda: s.get("/api/v1/groups/", key), 403), describe(s.get("/api/v1/groups/", key))
        expect_error(s.get("/api/v1/groups/", key), 403, API_KEY_NOT_ALLOWED)
    finally:
        configure(s, admin)
    assert status_becomes(lambda: s.get("/api/v1/groups/", key), 200), describe(s.get("/api/v1/groups/", key))


def test_plain_user_may_not_create_keys_by_default(kstack, kadmin):
    s, admin = kstack, kadmin
    configure(s, admin, ENABLE_SIGNUP=True)
    user = s.create_user(admin["token"], role="user")
    # features.api_keys is false in the default user permissions.
    expect_error(s.post("/api/v1/auths/api_key", user["token"]), 403, API_KEY_CREATION_NOT_ALLOWED)
