"""Health, version, public config, CORS, X-Process-Time and the OpenAPI documents."""

from __future__ import annotations

from stacklib import describe, expect_error, expect_ok, unique_email, unique_password

PUBLIC_CONFIG_KEYS = {"status", "name", "version", "default_locale", "oauth", "features"}
PUBLIC_FEATURE_KEYS = {
    "auth",
    "auth_trusted_header",
    "enable_signup_password_confirmation",
    "enable_ldap",
    "enable_signup",
    "enable_login_form",
    "enable_websocket",
}


def assert_process_time(r):
    value = r.headers.get("x-process-time")
    assert value is not None, f"no X-Process-Time: {describe(r)}"
    assert float(value) >= 0, value


def test_health_answers_status_true(stack):
    r = stack.get("/health")
    assert expect_ok(r) == {"status": True}
    assert r.headers["content-type"].startswith("application/json")
    assert_process_time(r)


def test_health_db_is_true_while_postgres_answers(stack):
    assert expect_ok(stack.get("/health/db")) == {"status": True}


def test_version_is_0_12_4(stack):
    body = expect_ok(stack.get("/api/version"))
    assert body["version"] == "0.12.4"
    assert "deployment_id" in body


def test_config_onboarding_until_first_user(make_stack):
    s = make_stack()
    r = s.get("/api/config")
    body = expect_ok(r)
    assert body["onboarding"] is True
    assert PUBLIC_CONFIG_KEYS <= body.keys(), body.keys()
    assert body["status"] is True
    assert body["name"] == "Open WebUI"
    assert body["version"] == "0.12.4"
    assert body["oauth"] == {"providers": {}, "auto_redirect": False}
    assert PUBLIC_FEATURE_KEYS <= body["features"].keys(), body["features"].keys()
    assert body["features"]["auth"] is True
    assert body["features"]["enable_signup"] is True
    assert body["features"]["enable_login_form"] is True

    admin = s.signup_admin()

    body = expect_ok(s.get("/api/config"))
    assert not body.get("onboarding"), body
    assert PUBLIC_CONFIG_KEYS <= body.keys()
    # The first sign-up closes sign-up, as in the real server.
    assert body["features"]["enable_signup"] is False

    body = expect_ok(s.get("/api/config", admin["token"]))
    assert not body.get("onboarding"), body
    assert PUBLIC_CONFIG_KEYS <= body.keys()
    assert {"enable_api_keys", "enable_signup", "enable_login_form", "enable_websocket"} <= body["features"].keys()
    assert body["features"]["enable_api_keys"] is False


def test_cors_preflight_echoes_origin(stack):
    r = stack.request(
        "OPTIONS",
        "/api/v1/auths/signin",
        headers={
            "Origin": "http://example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,authorization",
        },
    )
    assert r.status_code == 200, describe(r)
    assert r.headers.get("access-control-allow-origin") == "http://example.com"
    assert r.headers.get("access-control-allow-credentials") == "true"
    methods = {m.strip().upper() for m in r.headers.get("access-control-allow-methods", "").split(",")}
    assert {"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"} <= methods, methods
    allowed = {h.strip().lower() for h in r.headers.get("access-control-allow-headers", "").split(",")}
    assert {"content-type", "authorization"} <= allowed, allowed
    assert "origin" in r.headers.get("vary", "").lower()


def test_cors_simple_get_with_origin(stack):
    r = stack.get("/api/version", headers={"Origin": "http://example.com"})
    assert expect_ok(r)["version"] == "0.12.4"
    assert r.headers.get("access-control-allow-origin") == "http://example.com"
    assert r.headers.get("access-control-allow-credentials") == "true"
    assert "origin" in r.headers.get("vary", "").lower()
    assert_process_time(r)


def test_cors_allow_origin_list_is_respected(make_stack):
    s = make_stack(CORS_ALLOW_ORIGIN="http://good.example;http://also-good.example")
    r = s.get("/api/version", headers={"Origin": "http://also-good.example"})
    assert r.status_code == 200
    assert r.headers.get("access-control-allow-origin") == "http://also-good.example"
    r = s.get("/api/version", headers={"Origin": "http://evil.example"})
    assert r.headers.get("access-control-allow-origin") in (None, ""), r.headers


def test_process_time_on_every_response(stack, admin):
    cases = [
        stack.get("/health"),
        stack.get("/api/version"),
        stack.get("/api/config"),
        stack.get("/api/v1/auths/", admin["token"]),
        stack.get("/api/v1/auths/"),  # 401
        stack.get("/api/v1/auths/", "not.a.jwt"),  # 401
        stack.get("/api/v1/nope", admin["token"]),  # 404
        stack.delete("/api/v1/auths/signin"),  # 405
        stack.post("/api/v1/auths/signin", data='{"email": ', headers={"Content-Type": "application/json"}),  # 422
        stack.signin(unique_email("nobody"), unique_password()),  # 400
    ]
    statuses = [r.status_code for r in cases]
    assert statuses == [200, 200, 200, 200, 401, 401, 404, 405, 422, 400], [describe(r) for r in cases]
    for r in cases:
        assert_process_time(r)


def test_openapi_json_lists_auth_routes(stack):
    r = stack.get("/openapi.json")
    body = expect_ok(r)
    assert r.headers["content-type"].startswith("application/json")
    assert str(body.get("openapi", "")).startswith("3"), body.get("openapi")
    paths = body["paths"]
    for path in ("/api/v1/auths/signin", "/api/v1/auths/signup", "/api/v1/auths/", "/api/v1/users/", "/api/v1/groups/"):
        assert path in paths, f"{path} not in openapi paths"
    assert "post" in paths["/api/v1/auths/signin"]


def test_docs_is_html(stack):
    r = stack.get("/docs")
    assert r.status_code == 200, describe(r)
    assert r.headers["content-type"].startswith("text/html")
    assert "<html" in r.text.lower()


def test_unknown_route_is_json_404(stack, admin):
    expect_error(stack.get("/api/v1/nope", admin["token"]), 404)


def test_config_for_a_pending_user(stack, admin, make_user):
    """A pending user gets every feature flag and the waiting screen's texts, and nothing of a verified user's."""
    pending = make_user(role="pending")
    body = expect_ok(stack.get("/api/config", pending["token"]))
    verified = expect_ok(stack.get("/api/config", admin["token"]))
    assert body["features"] == verified["features"]
    assert body["ui"] == {"pending_user_overlay_title": verified["ui"]["pending_user_overlay_title"],
                          "pending_user_overlay_content": verified["ui"]["pending_user_overlay_content"]}
    assert "permissions" not in body and "default_models" not in body
