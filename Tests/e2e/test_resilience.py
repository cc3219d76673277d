"""Outages: Redis or Postgres stopped for a few seconds while requests run.

Errors are allowed only during the outage, they are JSON with a "detail", no request hangs, no service
dies, the services recover by themselves, and no event written to an outbox is lost.

The Postgres test stops the shared cluster (SKIFF_PGDATA), so it is marked `stops_postgres` and conftest
moves it to the very end of the session.
"""

from __future__ import annotations

import os
import pwd
import shlex
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from stacklib import (
    INVALID_CRED,
    NOT_FOUND,
    RedisServer,
    describe,
    eventually,
    expect_error,
    expect_ok,
    free_port,
    jwt_decode_unverified,
    redis_cli,
    unique_email,
    unique_password,
)

HANG = 10  # seconds: an answer slower than this counts as a hang


def probe(stack, method, path, token=None, **kw):
    """One request during an outage: it must answer within HANG seconds, in JSON, 200 or with a detail."""
    started = time.monotonic()
    try:
        r = stack.request(method, path, token, timeout=HANG, **kw)
    except requests.Timeout:
        pytest.fail(f"{method} {path} hung for more than {HANG}s during the outage")
    except requests.ConnectionError as err:
        pytest.fail(f"{method} {path}: connection failed during the outage ({err}); did the gateway die?")
    assert time.monotonic() - started < HANG
    assert r.headers.get("content-type", "").startswith("application/json"), describe(r)
    body = r.json()
    assert r.status_code == 200 or (isinstance(body, dict) and "detail" in body), describe(r)
    return r


def stream_entries(redis_url: str, stream: str) -> str:
    r = redis_cli(redis_url, "XRANGE", stream, "-", "+")
    return r.stdout if r.returncode == 0 else ""


def event_seen(redis_url: str, kind: str, subject: str, timeout: float) -> bool:
    return bool(
        eventually(
            lambda: kind in (out := stream_entries(redis_url, "skiff:events:auth")) and subject in out,
            timeout=timeout,
            interval=0.5,
        )
    )


def internal_headers(stack, admin):
    _h, claims = jwt_decode_unverified(admin["token"])
    return {
        "X-Skiff-Internal-Secret": stack.internal_secret,
        "X-Skiff-User-Id": admin["id"],
        "X-Skiff-User-Role": "admin",
        "X-Skiff-Auth": "jwt",
        "X-Skiff-Token-Id": str(claims.get("jti", "")),
        "X-Skiff-Token-Exp": str(claims.get("exp", "")),
    }


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(free_port(), tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.mark.resilience
def test_redis_outage_recovers_and_loses_no_event(own_redis, make_stack):
    redis_url = f"redis://127.0.0.1:{own_redis.port}/3"
    s = make_stack(REDIS_URL=redis_url)
    admin = s.signup_admin()
    s.set_admin_config(admin["token"], ENABLE_SIGNUP=True)
    victim = s.create_user(admin["token"], role="user")
    expect_ok(s.get("/api/v1/auths/", admin["token"]))

    own_redis.kill()
    deleted = False
    statuses = []
    until = time.monotonic() + 3
    while time.monotonic() < until:
        statuses.append(probe(s, "GET", "/health").status_code)
        statuses.append(probe(s, "GET", "/api/v1/auths/", admin["token"]).status_code)
        statuses.append(probe(s, "GET", "/api/v1/groups/", victim["token"]).status_code)
        statuses.append(probe(s, "POST", "/api/v1/auths/signin",
                              json={"email": unique_email("outage"), "password": "x"}).status_code)
        if not deleted:
            r = probe(s, "DELETE", f"/api/v1/users/{victim['id']}", admin["token"])
            deleted = r.status_code == 200 and r.json() is True
        time.sleep(0.2)
    if not deleted:
        # The gateway may refuse everything while it cannot reach Redis; the outbox is the auth service's
        # business, so make the change there directly, as the gateway would have forwarded it.
        r = requests.delete(
            s.service_url("auth", f"/api/v1/users/{victim['id']}"), headers=internal_headers(s, admin), timeout=HANG
        )
        assert (r.status_code == 200 and r.json() is True) or r.status_code == 400, describe(r)
    s.assert_alive()

    own_redis.start()
    recovered = eventually(lambda: s.get("/api/v1/auths/", admin["token"], timeout=HANG).status_code == 200,
                           timeout=15, interval=0.5)
    assert recovered, describe(s.get("/api/v1/auths/", admin["token"]))
    signed_in = eventually(lambda: s.signin(admin["email"], admin["password"]).status_code == 200, timeout=10, interval=1)
    assert signed_in, describe(s.signin(admin["email"], admin["password"]))

    # The deletion made during the outage reached the stream once Redis was back.
    assert event_seen(redis_url, "user.deleted", victim["id"], timeout=20), stream_entries(
        redis_url, "skiff:events:auth"
    )
    expect_error(s.get(f"/api/v1/users/{victim['id']}", admin["token"]), 400, NOT_FOUND)
    # The gateway hears of the deletion through the event as well.
    assert eventually(lambda: s.get("/api/v1/auths/", victim["token"]).status_code == 401, timeout=5), describe(
        s.get("/api/v1/auths/", victim["token"])
    )

    # Everything that needs Redis works again: revocation on sign-out, the sign-in limiter, new events.
    token = expect_ok(s.signin(admin["email"], admin["password"]))["token"]
    expect_ok(s.post("/api/v1/auths/signout", token))
    expect_error(s.get("/api/v1/auths/", token), 401)
    expect_error(s.signin(admin["email"], "wrong"), 400, INVALID_CRED)
    later = s.create_user(admin["token"], role="pending")
    assert expect_ok(s.delete(f"/api/v1/users/{later['id']}", admin["token"])) is True
    assert event_seen(redis_url, "user.deleted", later["id"], timeout=10), stream_entries(redis_url, "skiff:events:auth")
    s.assert_alive()


@pytest.mark.resilience
def test_restarted_redis_keeps_gateway_caches_honest(own_redis, make_stack):
    """After Redis comes back, changes made by the admin still reach the gateway at once (events flow again)."""
    s = make_stack(REDIS_URL=f"redis://127.0.0.1:{own_redis.port}/4")
    admin = s.signup_admin()
    s.set_admin_config(admin["token"], ENABLE_SIGNUP=True)
    user = s.create_user(admin["token"], role="user")
    own_redis.kill()
    time.sleep(2)
    own_redis.start()
    assert eventually(lambda: s.get("/api/v1/auths/", admin["token"], timeout=HANG).status_code == 200, timeout=15,
                      interval=0.5)
    time.sleep(1)
    s.set_role(admin["token"], user, "pending")  # waits until the gateway sees the new role
    expect_error(s.get("/api/v1/groups/", user["token"]), 401)
    assert expect_ok(s.delete(f"/api/v1/users/{user['id']}", admin["token"])) is True
    assert eventually(lambda: s.get("/api/v1/auths/", user["token"]).status_code == 401, timeout=5)
    s.assert_alive()


# ---- Postgres


def postmaster_options(pgdata: Path) -> str:
    """The options the running cluster was started with (postmaster.opts), minus -D, for `pg_ctl -o`."""
    opts = pgdata / "postmaster.opts"
    if opts.exists():
        args = shlex.split(opts.read_text().strip())[1:]
        out, skip = [], False
        for a in args:
            if skip:
                skip = False
                continue
            if a == "-D":
                skip = True
                continue
            if a.startswith("-D"):
                continue
            out.append(a)
        if out:
            return " ".join(shlex.quote(a) for a in out)
    return f"-c listen_addresses=127.0.0.1 -p 55432 -k {shlex.quote(str(pgdata))}"


def run_as_owner(pgdata: Path) -> tuple[list[str], int]:
    owner = pgdata.stat().st_uid
    if os.geteuid() == 0 and owner != 0:
        return ["runuser", "-u", pwd.getpwuid(owner).pw_name, "--"], owner
    return [], owner


def pg_ctl(prefix: list[str], pg_bin: str, *args: str) -> None:
    cmd = prefix + [str(Path(pg_bin) / "pg_ctl"), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, f"{shlex.join(cmd)} failed: {r.stdout}\n{r.stderr}"


@pytest.mark.resilience
@pytest.mark.stops_postgres
def test_postgres_outage_recovers(make_stack):
    if not os.environ.get("SKIFF_PGDATA"):
        pytest.skip("SKIFF_PGDATA is not set (./scripts/test sets it)")
    pgdata = Path(os.environ["SKIFF_PGDATA"]).resolve()
    pg_bin = os.environ.get("SKIFF_PG_BIN") or "/usr/lib/postgresql/15/bin"
    prefix, owner = run_as_owner(pgdata)
    options = postmaster_options(pgdata)
    # Log where ./scripts keeps the server log, so the restarted server writes to the same place.
    logfile = str(pgdata / "server.log")
    if not (pgdata / "server.log").exists():
        fd, logfile = tempfile.mkstemp(prefix="skiff-e2e-pg-restart-", suffix=".log")
        os.close(fd)
        if os.geteuid() == 0:
            os.chown(logfile, owner, -1)

    s = make_stack()
    admin = s.signup_admin()
    s.set_admin_config(admin["token"], ENABLE_SIGNUP=True)
    expect_ok(s.get("/api/v1/users/", admin["token"]))

    stopped = False
    health_db = []
    try:
        pg_ctl(prefix, pg_bin, "-D", str(pgdata), "-m", "fast", "-w", "-t", "60", "stop")
        stopped = True
        until = time.monotonic() + 4
        while time.monotonic() < until:
            assert probe(s, "GET", "/health").status_code == 200
            r = probe(s, "GET", "/health/db")
            health_db.append((r.status_code, r.json()))
            probe(s, "GET", "/api/v1/auths/", admin["token"])
            probe(s, "GET", "/api/v1/users/", admin["token"])
            probe(s, "POST", "/api/v1/groups/create", admin["token"], json={"name": "during outage", "description": "d"})
            probe(s, "POST", "/api/v1/auths/signin", json={"email": unique_email("outage"), "password": "x"})
            probe(s, "POST", "/api/v1/auths/signup", json={"name": "n", "email": unique_email("outage"),
                                                           "password": unique_password()})
            time.sleep(0.2)
        s.assert_alive()
    finally:
        if stopped:
            pg_ctl(prefix, pg_bin, "-D", str(pgdata), "-w", "-t", "60", "-l", logfile, "-o", options, "start")
    # /health/db tells the truth while Postgres is down.
    assert any(code != 200 or body.get("status") is not True for code, body in health_db), health_db

    assert eventually(lambda: s.get("/health/db", timeout=HANG).json() == {"status": True}, timeout=30, interval=0.5), \
        describe(s.get("/health/db"))
    signed_in = eventually(lambda: s.signin(admin["email"], admin["password"]).status_code == 200, timeout=15, interval=1)
    assert signed_in, describe(s.signin(admin["email"], admin["password"]))
    # Once recovered, requests succeed again, every time.
    for _ in range(3):
        expect_ok(s.get("/api/v1/users/", admin["token"]))
        expect_ok(s.get("/api/v1/auths/", admin["token"]))
    group = expect_ok(s.post("/api/v1/groups/create", admin["token"], json={"name": "after outage", "description": "d"}))
    assert expect_ok(s.get(f"/api/v1/groups/id/{group['id']}", admin["token"]))["name"] == "after outage"
    user = s.create_user(admin["token"], role="user")
    assert expect_ok(s.get("/api/v1/auths/", user["token"]))["role"] == "user"
    s.assert_alive()
