#!/usr/bin/env python3
"""Prepare a Skiff (or Open WebUI) server for the benchmarks.

Signs the benchmark admin in (signing it up first when the server has no user yet), makes
sure BENCH_USERS sign-in users exist, makes sure the admin has BENCH_CHATS chats, and prints
the admin's JWT on stdout (progress goes to stderr). Sign-in is rate limited per e-mail
(15 per 3 minutes), so signin.lua rotates over these users. The id of one of the admin's
"Bench chat N" chats (for chat_get.lua) is written to the file BENCH_CHAT_ID_FILE when that
is set, and logged on stderr. Standard library only.

BENCH_PREPARE selects the steps beyond the admin's sign-in: a comma- or space-separated
subset of "users" and "chats" (default both; empty = token only).

Usage: prepare.py BASE_URL
"""
import json
import os
import re
import sys
import urllib.error
import urllib.parse
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
CHATS = int(os.environ.get("BENCH_CHATS", "100"))
CHAT_ID_FILE = os.environ.get("BENCH_CHAT_ID_FILE", "")
STEPS = set(re.split(r"[,\s]+", os.environ.get("BENCH_PREPARE", "users,chats").strip())) - {""}
CHAT_TITLE = "Bench chat "


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


def bench_chat(n):
    """One imported chat: a question and an answer of a few hundred characters."""
    answer = (f"Answer {n}. " + "This is a benchmark answer with enough text to look like a real reply: "
              "it explains the question, gives an example, and ends with a short summary. " * 3).strip()
    return {"chat": {
        "title": f"{CHAT_TITLE}{n}",
        "models": ["m"],
        "history": {
            "currentId": "a",
            "messages": {
                "q": {"id": "q", "parentId": None, "childrenIds": ["a"], "role": "user",
                      "content": f"Question {n}", "timestamp": 1700000000},
                "a": {"id": "a", "parentId": "q", "childrenIds": [], "role": "assistant",
                      "content": answer, "done": True},
            },
        },
        "messages": [],
    }}


def is_bench_chat(item):
    return isinstance(item, dict) and str(item.get("title") or "").startswith(CHAT_TITLE) and item.get("id")


def count_chats(token, enough):
    """Counts the admin's chats in GET /api/v1/chats/?page=N (page 1, 2, ...) until a page is empty
    or `enough` were seen. Returns (count, id of a "Bench chat N" seen on the way or None)."""
    seen, found, page = set(), None, 1
    while len(seen) < enough:
        status, items = call("GET", f"/api/v1/chats/?page={page}", token=token)
        if status != 200 or not isinstance(items, list):
            die(f"GET /api/v1/chats/?page={page} answered {status}: {items}")
        ids = [item.get("id") for item in items if isinstance(item, dict) and item.get("id")]
        if not ids or seen.issuperset(ids):  # the end, or a server that ignores `page`
            break
        seen.update(ids)
        found = found or next((item["id"] for item in items if is_bench_chat(item)), None)
        page += 1
    return len(seen), found


def find_bench_chat(token):
    """A "Bench chat N" of the admin through the search route (when newer chats hide them in the list)."""
    query = urllib.parse.quote(CHAT_TITLE.strip())
    status, items = call("GET", f"/api/v1/chats/search?text={query}&page=1", token=token)
    if status != 200 or not isinstance(items, list):
        log(f"GET /api/v1/chats/search answered {status}; not using it")
        return None
    return next((item["id"] for item in items if is_bench_chat(item)), None)


def import_chats(token, numbers):
    """Imports "Bench chat N" for every N in `numbers` in one call; returns the new chats' ids."""
    status, body = call("POST", "/api/v1/chats/import", {"chats": [bench_chat(n) for n in numbers]}, token)
    if status != 200 or not isinstance(body, list):
        die(f"POST /api/v1/chats/import answered {status}: {str(body)[:300]}")
    ids = [chat.get("id") for chat in body if isinstance(chat, dict) and chat.get("id")]
    if len(ids) != len(numbers):
        die(f"POST /api/v1/chats/import returned {len(ids)} chats for {len(numbers)}")
    return ids


def prepare_chats(token):
    """Makes sure the admin has at least CHATS chats and returns the id of a "Bench chat N"."""
    count, chat_id = count_chats(token, CHATS)
    if count < CHATS:
        log(f"the admin has {count} chats in the list: importing {CHATS - count} more")
        ids = import_chats(token, range(count + 1, CHATS + 1))
        chat_id = chat_id or ids[len(ids) // 2]
    else:
        log(f"the admin has at least {CHATS} chats in the list")
    chat_id = chat_id or find_bench_chat(token)
    if not chat_id:
        # Enough chats, but none of ours (another account's history): one of ours keeps chat_get comparable.
        log(f"no '{CHAT_TITLE}N' chat found: importing one for chat_get")
        chat_id = import_chats(token, [1])[0]
    status, chat = call("GET", f"/api/v1/chats/{urllib.parse.quote(chat_id)}", token=token)
    if status != 200:
        die(f"GET /api/v1/chats/{chat_id} answered {status}: {chat}")
    return chat_id


def check_user_signin():
    """One sign-in of the first user: the password matches and the e-mail is not rate limited."""
    status, body = call("POST", "/api/v1/auths/signin", {"email": email(0), "password": USER_PASSWORD})
    if status == 429:
        die(f"{email(0)} is rate limited (sign-in attempts per e-mail and window): wait and retry, "
            "or raise BENCH_USERS")
    if status != 200:
        die(f"test sign-in of {email(0)} answered {status}: {body} "
            "(users from an earlier run with another BENCH_USER_PASSWORD?)")


def main():
    unknown = STEPS - {"users", "chats"}
    if unknown:
        die(f"BENCH_PREPARE: unknown steps {sorted(unknown)} (known: users, chats)")
    token = admin_token()
    if "users" in STEPS:
        log(f"ensuring {USERS} users {email(0)} .. {email(USERS - 1)} exist (one bcrypt hash each)")
        add_users(token)
        check_user_signin()
    if "chats" in STEPS:
        log(f"ensuring the admin has {CHATS} chats")
        chat_id = prepare_chats(token)
        log(f"chat for chat_get: {chat_id}")
        if CHAT_ID_FILE:
            with open(CHAT_ID_FILE, "w") as f:
                f.write(chat_id + "\n")
    print(token)


if __name__ == "__main__":
    main()
