"""The per-user rate limit on every route (beyond the original), shared through Redis."""

from __future__ import annotations

import time

from stacklib import describe, expect_error, expect_ok


def wait_for_fresh_minute_window():
    """Avoid straddling a wall-clock minute, in case the window is a fixed calendar minute."""
    if time.time() % 60 > 45:
        time.sleep(61 - time.time() % 60)


def test_user_limit_headers_and_429(make_stack):
    s = make_stack(SKIFF_RATE_LIMIT_PER_MINUTE=5)
    admin = s.signup_admin()
    s.set_admin_config(admin["token"], ENABLE_SIGNUP=True)
    email, password = "limited-" + str(int(time.time() * 1000)) + "@example.com", "pw-limited-1"
    user = expect_ok(s.signup("Limited", email, password))
    expect_ok(
        s.post(
            f"/api/v1/users/{user['id']}/update",
            admin["token"],
            json={"role": "user", "name": "Limited", "email": email, "profile_image_url": "/user.png"},
        )
    )

    wait_for_fresh_minute_window()
    remaining = []
    for i in range(5):
        r = s.get("/api/v1/auths/", user["token"])
        assert r.status_code == 200, f"request {i + 1}: {describe(r)}"
        assert r.headers.get("x-ratelimit-limit") == "5", r.headers
        remaining.append(int(r.headers["x-ratelimit-remaining"]))
        reset = int(r.headers["x-ratelimit-reset"])
        assert 0 <= reset <= 60 or reset > time.time() - 5, reset  # seconds to reset, or an epoch time
    assert remaining == [4, 3, 2, 1, 0], remaining

    r = s.get("/api/v1/auths/", user["token"])
    expect_error(r, 429)
    assert r.headers.get("x-ratelimit-limit") == "5", r.headers
    assert r.headers.get("x-ratelimit-remaining") == "0", r.headers
    # Every route counts, not only this one.
    expect_error(s.get("/api/v1/groups/", user["token"]), 429)

    # The admin is not limited by default, and other users have their own budget.
    for _ in range(8):
        expect_ok(s.get("/api/v1/auths/", admin["token"]))
    expect_ok(s.get("/api/v1/users/", admin["token"]))


def test_limit_is_per_user(make_stack):
    s = make_stack(SKIFF_RATE_LIMIT_PER_MINUTE=3)
    admin = s.signup_admin()
    s.set_admin_config(admin["token"], ENABLE_SIGNUP=True)
    a = s.create_user(admin["token"], role="pending")
    b = s.create_user(admin["token"], role="pending")
    wait_for_fresh_minute_window()
    for _ in range(3):
        expect_ok(s.get("/api/v1/auths/", a["token"]))
    expect_error(s.get("/api/v1/auths/", a["token"]), 429)
    expect_ok(s.get("/api/v1/auths/", b["token"]))
    # Unauthenticated routes are not per-user limited.
    for _ in range(5):
        expect_ok(s.get("/api/version"))


def test_admins_are_limited_when_configured(make_stack):
    s = make_stack(SKIFF_RATE_LIMIT_PER_MINUTE=3, SKIFF_RATE_LIMIT_ADMINS="true")
    admin = s.signup_admin()
    wait_for_fresh_minute_window()
    statuses = [s.get("/api/v1/auths/", admin["token"]).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429], statuses
