#!/usr/bin/env python3
"""Prepare a Skiff (or Open WebUI) server for the benchmarks.

Signs the benchmark admin in (signing it up first when the server has no user yet), makes
sure BENCH_USERS sign-in users exist, and prints the admin's JWT on stdout (progress goes to
stderr). Sign-in is rate limited per e-mail (15 per 3 minutes), so signin.lua rotates over
these users. Standard library only.

Usage: prepare.py BASE_URL
"""
import json
import os
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

BASE = (sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080").rstrip("/")
ADMIN_EMAIL = os.environ.get("BENCH_EMAIL", "bench-admin@example.com")
ADMIN_PASSWORD = os.environ.get("BENCH_PASSWORD", "skiff-bench-admin")
USERS = int(os.environ.get("BENCH_USERS", "200"))
PREFIX = os.environ.get("BENCH_USER_PREFIX", "bench-user-")
DOMAIN = os.environ.get("BENCH_USER_DOMAIN", "example.com")
USER_PASSWORD = os.environ.get("BENCH_USER_PASSWORD", "skiff-bench-user")
PARALLEL = int(os.environ.get("BENCH_SETUP_PARALLEL", "4"))


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def call(method, path, body=None, token=None):
    """Returns (status, parsed JSON or text)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    try:
        return status, json.loads(raw or b"null")
    except ValueError:
        return status, raw.decode(errors="replace")


def die(message):
    log("prepare: " + message)
    sys.exit(1)


def admin_token():
    status, config = call("GET", "/api/config")
    if status != 200:
        die(f"GET /api/config answered {status}: {config}")
    if isinstance(config, dict) and config.get("onboarding"):
        log(f"empty system: signing up {ADMIN_EMAIL} as the first (admin) user")
        status, user = call("POST", "/api/v1/auths/signup",
                            {"name": "Bench Admin", "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    else:
        status, user = call("POST", "/api/v1/auths/signin",
                            {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    if status != 200:
        die(f"could not sign in {ADMIN_EMAIL} ({status}: {user}); "
            "set BENCH_EMAIL and BENCH_PASSWORD to an existing admin account")
    if user.get("role") != "admin":
        die(f"{ADMIN_EMAIL} has role {user.get('role')!r}; the benchmark needs an admin")
    return user["token"]


def email(i):
    return f"{PREFIX}{i}@{DOMAIN}"


def already_exists(status, body):
    return status == 400 and "already" in json.dumps(body).lower()


def add_users(token):
    """Creates the sign-in users with POST /api/v1/auths/add, or by opening sign-up."""
    def add(i):
        return call("POST", "/api/v1/auths/add",
                    {"name": f"Bench User {i}", "email": email(i), "password": USER_PASSWORD,
                     "role": "user"}, token)

    status, body = add(0)
    if status in (404, 405):
        return signup_users(token)
    if status != 200 and not already_exists(status, body):
        die(f"POST /api/v1/auths/add answered {status}: {body}")
    failures = []
    with ThreadPoolExecutor(PARALLEL) as pool:
        for i, (status, body) in zip(range(1, USERS), pool.map(add, range(1, USERS))):
            if status != 200 and not already_exists(status, body):
                failures.append((i, status, body))
    if failures:
        die(f"{len(failures)} users could not be added, first: {failures[0]}")


def signup_users(token):
    """Fallback when /auths/add is missing: enable sign-up, sign the users up, restore config."""
    status, config = call("GET", "/api/v1/auths/admin/config", token=token)
    if status != 200:
        die(f"GET /api/v1/auths/admin/config answered {status}: {config}")
    was_enabled = config.get("ENABLE_SIGNUP", False)
    if not was_enabled:
        status, body = call("POST", "/api/v1/auths/admin/config", dict(config, ENABLE_SIGNUP=True), token)
        if status != 200:
            die(f"could not enable sign-up ({status}: {body})")

    def signup(i):
        return call("POST", "/api/v1/auths/signup",
                    {"name": f"Bench User {i}", "email": email(i), "password": USER_PASSWORD})

    try:
        with ThreadPoolExecutor(PARALLEL) as pool:
            results = list(pool.map(signup, range(USERS)))
    finally:
        if not was_enabled:
            call("POST", "/api/v1/auths/admin/config", dict(config, ENABLE_SIGNUP=False), token)
    bad = [(i, s, b) for i, (s, b) in enumerate(results) if s != 200 and not already_exists(s, b)]
    if bad:
        die(f"{len(bad)} sign-ups failed, first: {bad[0]}")


def main():
    token = admin_token()
    log(f"ensuring {USERS} users {email(0)} .. {email(USERS - 1)} exist (one bcrypt hash each)")
    add_users(token)
    status, body = call("POST", "/api/v1/auths/signin", {"email": email(0), "password": USER_PASSWORD})
    if status == 429:
        die(f"{email(0)} is rate limited (sign-in attempts per e-mail and window): wait and retry, "
            "or raise BENCH_USERS")
    if status != 200:
        die(f"test sign-in of {email(0)} answered {status}: {body} "
            "(users from an earlier run with another BENCH_USER_PASSWORD?)")
    print(token)


if __name__ == "__main__":
    main()
