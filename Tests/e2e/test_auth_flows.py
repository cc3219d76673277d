"""Accounts and access through the gateway: sign-up, sign-in, sessions, roles, profile, deletion."""

from __future__ import annotations

import time

from stacklib import (
    ACCESS_PROHIBITED,
    ACTION_PROHIBITED,
    EMAIL_TAKEN,
    INCORRECT_PASSWORD,
    INVALID_CRED,
    NOT_FOUND,
    RATE_LIMIT_EXCEEDED,
    cookie_attributes,
    describe,
    eventually,
    expect_error,
    expect_ok,
    jwt_decode_unverified,
    set_cookie_headers,
    unique_email,
    unique_password,
)

PERMISSION_SECTIONS = {"workspace", "sharing", "access_grants", "chat", "features", "settings"}
SIGNIN_KEYS = {"id", "name", "role", "email", "profile_image_url", "token", "token_type", "expires_at", "permissions"}
FOUR_WEEKS = 4 * 7 * 24 * 3600


def token_cookie(r):
    cookies = [cookie_attributes(h) for h in set_cookie_headers(r)]
    found = [c for c in cookies if c[0] == "token"]
    assert found, f"no token cookie in {set_cookie_headers(r)}"
    return found[-1]


def assert_signin_result(body, email, role):
    assert SIGNIN_KEYS <= body.keys(), body.keys()
    assert body["email"] == email
    assert body["role"] == role
    assert body["token_type"] == "Bearer"
    assert isinstance(body["expires_at"], int)
    assert isinstance(body["permissions"], dict)
    assert PERMISSION_SECTIONS <= body["permissions"].keys(), body["permissions"].keys()
    assert body["profile_image_url"] == f"/api/v1/users/{body['id']}/profile/image"


def test_first_signup_becomes_admin_then_signup_closes(make_stack):
    s = make_stack()
    email, password = unique_email("first"), unique_password()
    before = int(time.time())
    r = s.signup("Alice Admin", email, password)
    body = expect_ok(r)
    assert_signin_result(body, email, "admin")
    assert body["name"] == "Alice Admin"

    # The cookie is set as the real server sets it.
    name, value, attrs = token_cookie(r)
    assert value == body["token"]
    assert "httponly" in attrs
    assert attrs.get("samesite", "").lower() == "lax"
    assert attrs.get("path") == "/"
    assert FOUR_WEEKS - 120 <= int(attrs["max-age"]) <= FOUR_WEEKS

    # JWT: HS256 with the claims of the real server.
    header, claims = jwt_decode_unverified(body["token"])
    assert header["alg"] == "HS256"
    assert claims["id"] == body["id"]
    assert claims["typ"] == "session"
    assert claims["auth_method"] == "password"
    assert isinstance(claims["jti"], str) and claims["jti"]
    assert before - 5 <= claims["iat"] <= int(time.time()) + 5
    assert claims["exp"] == body["expires_at"]
    assert claims["exp"] - claims["iat"] == FOUR_WEEKS

    # Sign-up closed itself after the first admin.
    r = s.signup("Bob", unique_email("bob"), unique_password())
    expect_error(r, 403, ACCESS_PROHIBITED)

    # The admin opens it again by posting the whole admin config back.
    config = s.admin_config(body["token"])
    assert config["ENABLE_SIGNUP"] is False
    assert config["DEFAULT_USER_ROLE"] == "pending"
    assert config["JWT_EXPIRES_IN"] == "4w"
    config["ENABLE_SIGNUP"] = True
    saved = expect_ok(s.post("/api/v1/auths/admin/config", body["token"], json=config))
    assert saved["ENABLE_SIGNUP"] is True
    assert expect_ok(s.get("/api/v1/auths/admin/config", body["token"]))["ENABLE_SIGNUP"] is True
    assert expect_ok(s.get("/api/config"))["features"]["enable_signup"] is True

    bob_email = unique_email("bob")
    bob = expect_ok(s.signup("Bob User", bob_email, unique_password()))
    assert_signin_result(bob, bob_email, "pending")

    # The same email cannot sign up twice (case does not matter).
    expect_error(s.signup("Bob Again", bob_email, "x"), 400, EMAIL_TAKEN)
    expect_error(s.signup("Bob Again", bob_email.upper(), "x"), 400, EMAIL_TAKEN)


def test_signin_right_wrong_and_unknown(stack, make_user):
    user = make_user()
    r = stack.signin(user["email"], user["password"])
    body = expect_ok(r)
    assert_signin_result(body, user["email"], "user")
    assert body["id"] == user["id"]
    assert token_cookie(r)[1] == body["token"]
    # Email is matched case-insensitively.
    assert expect_ok(stack.signin(user["email"].upper(), user["password"]))["id"] == user["id"]

    expect_error(stack.signin(user["email"], "wrong-password"), 400, INVALID_CRED)
    expect_error(stack.signin(unique_email("nobody"), "wrong-password"), 400, INVALID_CRED)


def test_signin_is_rate_limited_per_lowercased_email(stack, make_user):
    victim = make_user()
    bystander = make_user()
    local, _, domain = victim["email"].partition("@")
    variants = [victim["email"], victim["email"].upper(), local.capitalize() + "@" + domain.upper()]
    statuses = []
    for i in range(15):
        r = stack.signin(variants[i % len(variants)], "wrong-password")
        statuses.append(r.status_code)
        expect_error(r, 400, INVALID_CRED)
    r = stack.signin(variants[15 % len(variants)], "wrong-password")
    expect_error(r, 429, RATE_LIMIT_EXCEEDED)
    # Limited before the password is checked: the right password is refused as well.
    expect_error(stack.signin(victim["email"], victim["password"]), 429, RATE_LIMIT_EXCEEDED)
    # Another email is not affected.
    assert expect_ok(stack.signin(bystander["email"], bystander["password"]))["id"] == bystander["id"]


def test_session_user_by_bearer_and_by_cookie(stack, make_user):
    user = make_user()
    body = expect_ok(stack.get("/api/v1/auths/", user["token"]))
    assert body["id"] == user["id"]
    assert body["email"] == user["email"]
    assert body["role"] == "user"
    assert body["token"] == user["token"]
    assert body["token_type"] == "Bearer"
    assert isinstance(body["permissions"], dict)

    r = stack.get("/api/v1/auths/", headers={"Cookie": f"token={user['token']}"})
    assert expect_ok(r)["id"] == user["id"]


def test_signout_revokes_only_that_token(stack, make_user):
    user = make_user()
    first = expect_ok(stack.signin(user["email"], user["password"]))["token"]
    second = expect_ok(stack.signin(user["email"], user["password"]))["token"]
    assert first != second
    assert expect_ok(stack.get("/api/v1/auths/", first))["id"] == user["id"]

    r = stack.post("/api/v1/auths/signout", first)
    assert expect_ok(r) == {"status": True}
    cleared = [c for c in map(cookie_attributes, set_cookie_headers(r)) if c[0] == "token"]
    assert cleared and cleared[-1][2].get("max-age") == "0", set_cookie_headers(r)

    # Beyond the original: the signed-out token is refused from now on ...
    expect_error(stack.get("/api/v1/auths/", first), 401)
    expect_error(stack.get("/api/v1/auths/", headers={"Cookie": f"token={first}"}), 401)
    expect_error(stack.get("/api/v1/groups/", first), 401)
    # ... while the user's other sessions keep working.
    assert expect_ok(stack.get("/api/v1/auths/", second))["id"] == user["id"]
    assert expect_ok(stack.get("/api/v1/auths/", user["token"]))["id"] == user["id"]


def test_signout_by_cookie_revokes_the_cookie_token(stack, make_user):
    user = make_user()
    token = expect_ok(stack.signin(user["email"], user["password"]))["token"]
    r = stack.post("/api/v1/auths/signout", headers={"Cookie": f"token={token}"})
    assert expect_ok(r) == {"status": True}
    expect_error(stack.get("/api/v1/auths/", token), 401)


def test_pending_user_is_refused_until_promoted(stack, admin, make_user):
    pending = make_user(role="pending")
    body = expect_ok(stack.get("/api/v1/auths/", pending["token"]))
    assert body["role"] == "pending"
    expect_error(stack.get("/api/v1/users/", pending["token"]), 401, ACCESS_PROHIBITED)
    expect_error(stack.get("/api/v1/groups/", pending["token"]), 401, ACCESS_PROHIBITED)
    expect_error(stack.get("/api/v1/auths/admin/config", pending["token"]), 401, ACCESS_PROHIBITED)

    updated = expect_ok(
        stack.post(
            f"/api/v1/users/{pending['id']}/update",
            admin["token"],
            json={"role": "user", "name": pending["name"], "email": pending["email"], "profile_image_url": "/user.png"},
        )
    )
    assert updated["id"] == pending["id"]
    assert updated["role"] == "user"

    # The same token now carries the new role (the gateway's cache follows the change).
    assert eventually(lambda: stack.get("/api/v1/auths/", pending["token"]).json().get("role") == "user")
    assert expect_ok(stack.get("/api/v1/groups/", pending["token"])) == []
    # A plain user is still refused on admin routes, with the real server's 401.
    expect_error(stack.get("/api/v1/users/", pending["token"]), 401, ACCESS_PROHIBITED)
    expect_error(stack.get(f"/api/v1/users/{admin['id']}", pending["token"]), 401, ACCESS_PROHIBITED)
    expect_error(stack.get("/api/v1/auths/admin/config", pending["token"]), 401, ACCESS_PROHIBITED)
    expect_error(
        stack.post(f"/api/v1/users/{admin['id']}/update", pending["token"], json={"role": "user"}), 401, ACCESS_PROHIBITED
    )
    expect_error(stack.delete(f"/api/v1/users/{admin['id']}", pending["token"]), 401, ACCESS_PROHIBITED)


def test_admin_lists_and_reads_users(stack, admin, make_user):
    user = make_user()
    body = expect_ok(stack.get("/api/v1/users/", admin["token"]))
    assert set(body.keys()) >= {"users", "total"}
    assert isinstance(body["total"], int) and body["total"] >= 2

    body = expect_ok(stack.get("/api/v1/users/", admin["token"], params={"query": user["email"]}))
    ids = [u["id"] for u in body["users"]]
    assert user["id"] in ids, body
    row = next(u for u in body["users"] if u["id"] == user["id"])
    assert row["email"] == user["email"]
    assert row["role"] == "user"
    assert row["name"] == user["name"]
    assert row["group_ids"] == []
    for key in ("created_at", "updated_at", "last_active_at"):
        assert isinstance(row[key], int), (key, row)

    one = expect_ok(stack.get(f"/api/v1/users/{user['id']}", admin["token"]))
    assert one["id"] == user["id"]
    assert one["email"] == user["email"]
    assert one["role"] == "user"
    assert one["groups"] == []
    assert "is_active" in one

    expect_error(stack.get("/api/v1/users/no-such-user", admin["token"]), 400, NOT_FOUND)


def test_update_profile(stack, make_user):
    user = make_user()
    r = stack.post(
        "/api/v1/auths/update/profile",
        user["token"],
        json={"name": "Renamed Person", "profile_image_url": "/user.png", "bio": "hello"},
    )
    body = expect_ok(r)
    assert body["name"] == "Renamed Person"
    me = expect_ok(stack.get("/api/v1/auths/", user["token"]))
    assert me["name"] == "Renamed Person"
    assert me["bio"] == "hello"


def test_update_password(stack, make_user):
    user = make_user()
    new_password = unique_password()
    r = stack.post(
        "/api/v1/auths/update/password", user["token"], json={"password": "not-the-password", "new_password": new_password}
    )
    expect_error(r, 400, INCORRECT_PASSWORD)

    r = stack.post(
        "/api/v1/auths/update/password", user["token"], json={"password": user["password"], "new_password": new_password}
    )
    assert expect_ok(r) is True
    # As in the real server, a password change ends every session of the user.
    expect_error(stack.get("/api/v1/auths/", user["token"]), 401)
    expect_error(stack.signin(user["email"], user["password"]), 400, INVALID_CRED)
    assert expect_ok(stack.signin(user["email"], new_password))["id"] == user["id"]


def test_api_alias_without_v1(stack, make_user):
    user = make_user()
    r = stack.post("/api/auths/signin", json={"email": user["email"], "password": user["password"]})
    token = expect_ok(r)["token"]
    assert expect_ok(stack.get("/api/auths/", token))["id"] == user["id"]
    expect_error(stack.get("/api/auths/"), 401, "Not authenticated")


def test_admin_deletes_user_and_its_token_stops_working(stack, admin, make_user):
    user = make_user()
    assert expect_ok(stack.get("/api/v1/auths/", user["token"]))["id"] == user["id"]
    assert expect_ok(stack.delete(f"/api/v1/users/{user['id']}", admin["token"])) is True
    assert eventually(lambda: stack.get("/api/v1/auths/", user["token"]).status_code == 401), describe(
        stack.get("/api/v1/auths/", user["token"])
    )
    expect_error(stack.get("/api/v1/auths/", user["token"]), 401)
    expect_error(stack.signin(user["email"], user["password"]), 400, INVALID_CRED)
    expect_error(stack.get(f"/api/v1/users/{user['id']}", admin["token"]), 400, NOT_FOUND)


def test_admin_cannot_delete_or_demote_the_primary_admin(stack, admin):
    expect_error(stack.delete(f"/api/v1/users/{admin['id']}", admin["token"]), 403, ACTION_PROHIBITED)
    r = stack.post(f"/api/v1/users/{admin['id']}/update", admin["token"], json={"role": "user"})
    expect_error(r, 403, ACTION_PROHIBITED)
    assert expect_ok(stack.get("/api/v1/auths/", admin["token"]))["role"] == "admin"
