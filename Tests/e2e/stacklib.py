"""Support code for Skiff's end-to-end tests.

A `Stack` is one running copy of Skiff: a fresh Postgres database, its own Redis db index, and the six
executables (`gateway`, `auth`, `chat`, `files`, `retrieval`, `realtime`) on free loopback ports. Tests talk
to the gateway as a client would. Everything here uses only the standard library and `requests`.

Environment (exported by ./scripts/test, defaults match ./scripts/run):
  SKIFF_BIN_DIR         directory holding the six executables (default <repo>/.build/debug)
  SKIFF_TEST_PG_URL     Postgres URL of a database we may CREATE DATABASE from
  SKIFF_TEST_REDIS_URL  Redis base URL without db index
  SKIFF_PGDATA, SKIFF_PG_BIN  only for the Postgres outage test
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

import requests

REPO = Path(__file__).resolve().parents[2]
SERVICES = ["auth", "chat", "files", "retrieval", "realtime", "gateway"]
BACKENDS = ["auth", "chat", "files", "retrieval", "realtime"]

# Detail strings of the real server (open_webui/constants.py ERROR_MESSAGES and route code).
ACCESS_PROHIBITED = (
    "You do not have permission to access this resource. Please contact your administrator for assistance."
)
ACTION_PROHIBITED = "The requested action has been restricted as a security measure."
INVALID_CRED = "The email or password provided is incorrect. Please check for typos and try logging in again."
INCORRECT_PASSWORD = "The password provided is incorrect. Please check for typos and try again."
EMAIL_TAKEN = (
    "Uh-oh! This email is already registered. Sign in with your existing account or choose another email "
    "to start anew."
)
INVALID_EMAIL_FORMAT = (
    "The email format you entered is invalid. Please double-check and make sure you're using a valid email "
    "address (e.g., yourname@example.com)."
)
INVALID_TOKEN = "Your session has expired or the token is invalid. Please sign in again."
UNAUTHORIZED = "401 Unauthorized"
NOT_AUTHENTICATED = "Not authenticated"
NOT_FOUND = "We could not find what you're looking for :/"
GROUP_NOT_FOUND = "Group not found."
RATE_LIMIT_EXCEEDED = "API rate limit exceeded"
HUMAN_SESSION_REQUIRED = "A human session is required."
API_KEY_CREATION_NOT_ALLOWED = "API key creation is not allowed in the environment."
API_KEY_NOT_ALLOWED = "Use of API key is not enabled in the environment."
API_KEY_NOT_FOUND = (
    "Oops! It looks like there's a hiccup. The API key is missing. Please make sure to provide a valid API "
    "key to access this feature."
)
INVALID_AUTH_REQUEST = "Invalid authentication request."
METHOD_NOT_ALLOWED = "Method Not Allowed"


# --------------------------------------------------------------------------------------------------
# Environment


def bin_dir() -> Path:
    return Path(os.environ.get("SKIFF_BIN_DIR") or REPO / ".build" / "debug")


def pg_admin_url() -> str:
    return os.environ.get("SKIFF_TEST_PG_URL") or "postgresql://postgres@127.0.0.1:55432/postgres"


def redis_base_url() -> str:
    url = os.environ.get("SKIFF_TEST_REDIS_URL") or "redis://127.0.0.1:56379"
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", "")).rstrip("/")


def unique_email(prefix: str = "u") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


def unique_password() -> str:
    return "pw-" + secrets.token_hex(8)


# --------------------------------------------------------------------------------------------------
# Small helpers


def eventually(fn: Callable[[], Any], timeout: float = 5.0, interval: float = 0.1) -> Any:
    """Call fn until it returns a truthy value or timeout passes; return the last value."""
    deadline = time.monotonic() + timeout
    value = fn()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = fn()
    return value


def describe(r: requests.Response) -> str:
    return f"{r.request.method} {r.request.path_url} -> {r.status_code} {r.text[:600]!r}"


def expect_error(r: requests.Response, status: int, detail: Any = None) -> Any:
    """Assert an error answer: the status, a JSON body with "detail", and the exact detail when given."""
    assert r.status_code == status, f"expected {status}: {describe(r)}"
    assert r.headers.get("content-type", "").startswith("application/json"), describe(r)
    body = r.json()
    assert isinstance(body, dict) and "detail" in body, describe(r)
    if detail is not None:
        assert body["detail"] == detail, describe(r)
    return body["detail"]


def expect_422(r, loc: list | None = None, type_: str | None = None) -> list:
    """FastAPI's validation answer: 422 and a non-empty list of {type, loc, msg, input}."""
    assert r.status_code == 422, describe(r)
    assert r.headers.get("content-type", "").startswith("application/json"), describe(r)
    detail = r.json().get("detail")
    assert isinstance(detail, list) and detail, describe(r)
    for item in detail:
        assert {"type", "loc", "msg", "input"} <= item.keys(), describe(r)
        assert isinstance(item["loc"], list), describe(r)
    if loc is not None or type_ is not None:
        wanted = [i for i in detail if (loc is None or i["loc"] == loc) and (type_ is None or i["type"] == type_)]
        assert wanted, f"no {type_} error at {loc}: {describe(r)}"
    return detail


def expect_ok(r: requests.Response) -> Any:
    assert r.status_code == 200, describe(r)
    return r.json()


def set_cookie_headers(r: requests.Response) -> list[str]:
    """Every Set-Cookie header of a response (requests folds them into one string otherwise)."""
    return list(r.raw.headers.getlist("Set-Cookie")) if r.raw is not None else []


def cookie_attributes(header: str) -> tuple[str, str, dict[str, str]]:
    """Split one Set-Cookie header into (name, value, {lower-case attribute: value})."""
    parts = [p.strip() for p in header.split(";")]
    name, _, value = parts[0].partition("=")
    attrs: dict[str, str] = {}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        attrs[k.strip().lower()] = v.strip()
    return name.strip(), value.strip(), attrs


# --------------------------------------------------------------------------------------------------
# JWT by hand (HS256), so tests can craft expired, tampered and foreign tokens.


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwt_decode_unverified(token: str) -> tuple[dict, dict]:
    header, payload, _sig = token.split(".")
    return json.loads(b64url_decode(header)), json.loads(b64url_decode(payload))


def jwt_sign(payload: dict, secret: str, header: dict | None = None) -> str:
    header = header or {"alg": "HS256", "typ": "JWT"}
    h = b64url_encode(json.dumps(header, separators=(",", ":")).encode())
    p = b64url_encode(json.dumps(payload, separators=(",", ":")).encode())
    sig = hmac.new(secret.encode(), f"{h}.{p}".encode(), hashlib.sha256).digest()
    return f"{h}.{p}.{b64url_encode(sig)}"


# --------------------------------------------------------------------------------------------------
# Infrastructure helpers


def psql(sql: str, url: str | None = None, timeout: float = 60) -> str:
    env = dict(os.environ, PGCONNECT_TIMEOUT="10")
    r = subprocess.run(
        ["psql", url or pg_admin_url(), "-v", "ON_ERROR_STOP=1", "-qAtX", "-c", sql],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if r.returncode != 0:
        raise RuntimeError(f"psql failed ({r.returncode}) for {sql!r}: {r.stderr.strip()}")
    return r.stdout


def database_url(dbname: str) -> str:
    parts = urlsplit(pg_admin_url())
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, ""))


def redis_cli(url: str, *args: str, timeout: float = 10) -> subprocess.CompletedProcess:
    return subprocess.run(["redis-cli", "-u", url, *args], capture_output=True, text=True, timeout=timeout)


_handed_out_ports: set[int] = set()


def free_port() -> int:
    """A loopback TCP port nobody listens on, not handed out before by this process."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out_ports:
            _handed_out_ports.add(port)
            return port
    raise RuntimeError("no free port found")


_REDIS_STATE = Path(tempfile.gettempdir()) / "skiff-e2e-redis-dbs.json"
_REDIS_LOCK = Path(tempfile.gettempdir()) / "skiff-e2e-redis-dbs.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _redis_db_state():
    """The shared record of which Redis db indexes live test processes hold, read and written back under a lock."""
    with open(_REDIS_LOCK, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            state = json.loads(_REDIS_STATE.read_text()) if _REDIS_STATE.exists() else {}
        except (OSError, ValueError):
            state = {}
        yield state
        _REDIS_STATE.write_text(json.dumps(state))


def allocate_redis_db(base: str) -> tuple[int, str]:
    """Reserve a Redis db index 1..15 on `base` (shared between concurrent pytest processes), flush it."""
    with _redis_db_state() as state:
        for key in [k for k, v in state.items() if not _pid_alive(int(v.get("pid", 0)))]:
            del state[key]
        for index in range(1, 16):
            key = f"{base}/{index}"
            if key not in state:
                token = uuid.uuid4().hex
                state[key] = {"pid": os.getpid(), "token": token}
                break
        else:
            raise RuntimeError(f"all Redis db indexes 1..15 on {base} are in use by live test processes")
    url = f"{base}/{index}"
    r = redis_cli(url, "FLUSHDB")
    if r.returncode != 0 or "OK" not in r.stdout:
        release_redis_db(base, index, token)
        raise RuntimeError(f"cannot FLUSHDB {url}: {r.stdout.strip()} {r.stderr.strip()} (is Redis running?)")
    return index, token


def release_redis_db(base: str, index: int, token: str) -> None:
    redis_cli(f"{base}/{index}", "FLUSHDB")
    with _redis_db_state() as state:
        key = f"{base}/{index}"
        if state.get(key, {}).get("token") == token:
            del state[key]


def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when pytest dies, so no stray services survive a crashed run."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _minimal_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "LD_LIBRARY_PATH", "TZ", "USER")
    return {k: os.environ[k] for k in keep if k in os.environ}


# --------------------------------------------------------------------------------------------------
# The stack


def sample_chat(title: str | None = "First chat") -> dict:
    """The chat of the recorded sample "Create chat POST /api/v1/chats/new" (a user and an assistant message)."""
    chat = {
        "title": title,
        "models": ["fake-gpt"],
        "messages": [
            {"id": "m1", "role": "user", "content": "Hello?", "timestamp": 1700000000},
            {"id": "m2", "parentId": "m1", "role": "assistant", "content": "Hi!", "model": "fake-gpt"},
        ],
        "history": {
            "currentId": "m2",
            "messages": {
                "m1": {"id": "m1", "parentId": None, "childrenIds": ["m2"], "role": "user", "content": "Hello?",
                       "timestamp": 1700000000},
                "m2": {"id": "m2", "parentId": "m1", "childrenIds": [], "role": "assistant", "content": "Hi!",
                       "model": "fake-gpt", "done": True},
            },
        },
        "tags": [],
        "params": {},
    }
    if title is None:
        del chat["title"]
    return chat


class StackStartError(RuntimeError):
    pass


class Stack:
    """One running Skiff: a fresh database, a Redis db index and the six executables."""

    def __init__(self, env: dict[str, Any] | None = None, name: str = "stack"):
        self.name = name
        self.overrides = {k: v for k, v in (env or {}).items()}
        self.dir = Path(tempfile.mkdtemp(prefix=f"skiff-e2e-{name}-"))
        self.dbname = "skiff_e2e_" + secrets.token_hex(6)
        self.ports = {svc: free_port() for svc in SERVICES}
        self.procs: dict[str, subprocess.Popen] = {}
        self.logfiles: dict[str, Any] = {}
        self.env: dict[str, str] = {}
        self.redis_url = ""
        self._redis_alloc: tuple[str, int, str] | None = None
        self._db_created = False
        self.died_early: dict[str, int] = {}
        self.extras: dict[str, str] = {}  # name of an extra process -> the service it runs (spawn_extra)
        self.killed: dict[str, int] = {}  # name -> signal, for processes stopped on purpose by kill()

    # ---- lifecycle

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    @property
    def secret(self) -> str:
        return self.env["WEBUI_SECRET_KEY"]

    @property
    def internal_secret(self) -> str:
        return self.env["SKIFF_INTERNAL_SECRET"]

    def start(self, timeout: float = 60) -> "Stack":
        binaries = {svc: bin_dir() / svc for svc in SERVICES}
        try:
            missing = [str(p) for p in binaries.values() if not os.access(p, os.X_OK)]
            if missing:
                raise StackStartError(f"executables missing (build first, or set SKIFF_BIN_DIR): {missing}")
            psql(f'CREATE DATABASE "{self.dbname}"')
            self._db_created = True
            if "REDIS_URL" in self.overrides:
                self.redis_url = str(self.overrides["REDIS_URL"])
            else:
                base = redis_base_url()
                index, token = allocate_redis_db(base)
                self._redis_alloc = (base, index, token)
                self.redis_url = f"{base}/{index}"
            env = {
                "HOST": "127.0.0.1",
                "DATABASE_URL": database_url(self.dbname),
                "REDIS_URL": self.redis_url,
                "WEBUI_SECRET_KEY": secrets.token_hex(32),
                "SKIFF_INTERNAL_SECRET": secrets.token_hex(24),
                "SKIFF_BCRYPT_COST": "4",
                "GLOBAL_LOG_LEVEL": "warning",
                "DATA_DIR": str(self.dir / "data"),
                # No outside providers unless a test brings its fake one (CI has no network to reach them).
                "ENABLE_OPENAI_API": "false",
                "ENABLE_OLLAMA_API": "false",
                # The stock web app that the set-up unpacks (served by the gateway when it is there).
                "FRONTEND_BUILD_DIR": os.environ.get("FRONTEND_BUILD_DIR") or str(REPO / ".data" / "webui" / "frontend"),
                "STATIC_DIR": os.environ.get("STATIC_DIR") or str(REPO / ".data" / "webui" / "static"),
            }
            for svc in BACKENDS:
                env[f"SKIFF_{svc.upper()}_URL"] = f"http://127.0.0.1:{self.ports[svc]}"
            for k, v in self.overrides.items():
                if v is None:
                    env.pop(k, None)
                else:
                    env[k] = ("true" if v else "false") if isinstance(v, bool) else str(v)
            self.env = env
            (self.dir / "data").mkdir(exist_ok=True)
            for svc in SERVICES:
                self._spawn(svc, binaries[svc])
            self._wait_ready(timeout)
        except BaseException as err:
            logs = self.logs_tail(60)
            self.stop()
            if isinstance(err, StackStartError):
                raise StackStartError(f"{err}\n{logs}") from None
            if isinstance(err, Exception):
                raise StackStartError(f"{type(err).__name__}: {err}\n{logs}") from None
            raise
        return self

    def _spawn(self, svc: str, binary: Path, name: str | None = None, overrides: dict[str, Any] | None = None) -> None:
        """Start `binary` as process `name` (default: svc) on self.ports[name], with the stack's env + overrides."""
        name = name or svc
        env = dict(_minimal_env(), **self.env, PORT=str(self.ports[name]))
        for k, v in (overrides or {}).items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = ("true" if v else "false") if isinstance(v, bool) else str(v)
        log = open(self.dir / f"{name}.log", "ab", buffering=0)
        old = self.logfiles.pop(name, None)
        if old is not None:
            old.close()
        self.logfiles[name] = log
        self.procs[name] = subprocess.Popen(
            [str(binary)],
            env=env,
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )

    def _wait_ready(self, timeout: float, names: list[str] | None = None) -> None:
        deadline = time.monotonic() + timeout
        pending = list(names or SERVICES)
        while pending:
            for svc in list(pending):
                proc = self.procs[svc]
                if proc.poll() is not None:
                    raise StackStartError(f"{svc} exited with status {proc.returncode} during start-up")
                try:
                    r = requests.get(
                        f"http://127.0.0.1:{self.ports[svc]}/health",
                        headers={"X-Skiff-Internal-Secret": self.internal_secret},
                        timeout=2,
                    )
                    if r.status_code == 200:
                        pending.remove(svc)
                except requests.RequestException:
                    pass
            if pending and time.monotonic() > deadline:
                raise StackStartError(f"not ready after {timeout:.0f}s: {pending}")
            if pending:
                time.sleep(0.2)

    def alive_problems(self) -> list[str]:
        return [f"{svc} exited with status {p.returncode}" for svc, p in self.procs.items() if p.poll() is not None]

    def assert_alive(self) -> None:
        problems = self.alive_problems()
        assert not problems, f"services died: {problems}\n{self.logs_tail(40)}"

    def stop(self, keep_logs: bool = False) -> list[str]:
        """SIGTERM every process, SIGKILL what is left after 10 s, drop the database, free the Redis db.

        Returns a list of problems (processes that had died before, or did not stop in time)."""
        problems: list[str] = []
        for svc, proc in self.procs.items():
            if proc.poll() is not None:
                self.died_early[svc] = proc.returncode
                problems.append(f"{svc} had exited (status {proc.returncode}) before shutdown")
            else:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for svc, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                problems.append(f"{svc} did not exit within 10 s of SIGTERM (killed)")
        for log in self.logfiles.values():
            log.close()
        if self._db_created:
            for attempt in range(20):
                try:
                    psql(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
                    self._db_created = False
                    break
                except Exception:
                    time.sleep(1)
        if self._redis_alloc:
            base, index, token = self._redis_alloc
            release_redis_db(base, index, token)
            self._redis_alloc = None
        if problems:
            problems.append(f"logs kept in {self.dir}")
            keep_logs = True
        if not keep_logs:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.procs = {}
        return problems

    def logs_tail(self, lines: int = 40) -> str:
        out = [f"--- logs of stack {self.name} in {self.dir}"]
        for svc in SERVICES + [n for n in self.extras if n not in SERVICES]:
            path = self.dir / f"{svc}.log"
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {svc}.log (last {len(text)} lines)")
                out.extend(text)
        return "\n".join(out)

    # ---- extra processes (a second realtime replica, ...)

    def spawn_extra(self, name: str, svc: str, env: dict[str, Any] | None = None, timeout: float = 60,
                    wait: bool = True) -> dict[str, Any]:
        """Start one more copy of service `svc` in this stack as process `name` (e.g. "realtime-b").

        It gets its own free port (PORT), the stack's environment (same DATABASE_URL, REDIS_URL, secrets,
        SKIFF_*_URL) plus `env` (None removes a variable), logs to <dir>/<name>.log, shows in logs_tail,
        alive_problems and assert_alive, and is stopped by stop(). A name whose process was kill()ed may be
        spawned again (new port). With wait, returns once its /health answers 200.
        Returns {"name", "svc", "port", "url", "proc"}."""
        if not self.env:
            raise RuntimeError("start the stack before spawning extra processes")
        if name in SERVICES:
            raise ValueError(f"{name!r} is the name of a core service; pick another name")
        if name in self.procs and self.procs[name].poll() is None:
            raise ValueError(f"{name!r} is already running")
        binary = bin_dir() / svc
        if not os.access(binary, os.X_OK):
            raise StackStartError(f"executable missing: {binary}")
        self.ports[name] = free_port()
        self.extras[name] = svc
        self.killed.pop(name, None)
        self._spawn(svc, binary, name=name, overrides=env)
        if wait:
            try:
                self._wait_ready(timeout, [name])
            except StackStartError as err:
                raise StackStartError(f"{err}\n{self.logs_tail(40)}") from None
        return self.process(name)

    def process(self, name: str) -> dict[str, Any]:
        """{"name", "svc", "port", "url", "proc"} of a running process of this stack (core or extra)."""
        port = self.ports[name]
        return {"name": name, "svc": self.extras.get(name, name), "port": port,
                "url": f"http://127.0.0.1:{port}", "proc": self.procs[name]}

    def kill(self, name: str, sig: int = signal.SIGKILL, timeout: float = 10) -> int:
        """Send `sig` to process `name` (core service or extra) and wait for it to exit; returns its status.

        A process stopped this way is dropped from procs, so stop() and alive_problems() do not count it as
        a crash; its log stays in logs_tail."""
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        del self.procs[name]
        self.killed[name] = sig
        log = self.logfiles.pop(name, None)
        if log is not None:
            log.close()
        if name not in SERVICES:
            self.extras.setdefault(name, name)
        return proc.returncode

    # ---- realtime bus and replica registry

    REALTIME_CHANNEL = "skiff:realtime"

    def publish_realtime(self, to: dict[str, str], event: str, data: Any, skip: str | None = None) -> int:
        """PUBLISH {to, event, data[, skip]} on skiff:realtime (as any service does); returns the number of
        subscribers Redis reported. Pub/sub ignores the db index, so every stack's replicas see it (harmless:
        targets are unique user ids, rooms and socket ids)."""
        message: dict[str, Any] = {"to": to, "event": event, "data": data}
        if skip is not None:
            message["skip"] = skip
        r = redis_cli(self.redis_url, "PUBLISH", self.REALTIME_CHANNEL, json.dumps(message))
        if r.returncode != 0 or not r.stdout.strip().lstrip("-").isdigit():
            raise RuntimeError(f"PUBLISH failed: {r.stdout.strip()} {r.stderr.strip()}")
        return int(r.stdout.strip())

    def realtime_replicas(self) -> dict[str, str]:
        """The live realtime replicas registered in this stack's Redis (hash `skiff:rt:replicas`, values
        `<url>|<expiry epoch>`): {replica id: advertised URL}."""
        r = redis_cli(self.redis_url, "HGETALL", "skiff:rt:replicas")
        items = r.stdout.split()
        now = int(time.time())
        out: dict[str, str] = {}
        for tag, value in zip(items[0::2], items[1::2]):
            url, _, expiry = value.rpartition("|")
            if expiry.isdigit() and int(expiry) >= now:
                out[tag] = url
        return out

    # ---- HTTP

    def url(self, path: str) -> str:
        return self.base + path

    def service_url(self, svc: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[svc]}{path}"

    @staticmethod
    def auth(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def request(self, method: str, path: str, token: str | None = None, headers: dict | None = None,
                timeout: float = 15, **kw: Any) -> requests.Response:
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        return requests.request(method, self.url(path), headers=h, timeout=timeout, **kw)

    def get(self, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        return self.request("GET", path, token, **kw)

    def post(self, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        return self.request("POST", path, token, **kw)

    def delete(self, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        return self.request("DELETE", path, token, **kw)

    def signup(self, name: str, email: str, password: str) -> requests.Response:
        return self.post("/api/v1/auths/signup", json={"name": name, "email": email, "password": password})

    def signin(self, email: str, password: str) -> requests.Response:
        return self.post("/api/v1/auths/signin", json={"email": email, "password": password})

    # ---- higher level

    def admin_config(self, token: str) -> dict:
        return expect_ok(self.get("/api/v1/auths/admin/config", token))

    def set_admin_config(self, token: str, **changes: Any) -> dict:
        """GET the admin config, change some keys, POST it back whole (as the web app does)."""
        body = self.admin_config(token)
        body.pop("sessions_revoked", None)
        body.update(changes)
        result = expect_ok(self.post("/api/v1/auths/admin/config", token, json=body))
        for k, v in changes.items():
            assert result.get(k) == v, f"admin config {k} not saved: {result.get(k)!r} != {v!r}"
        return result

    def signup_admin(self) -> dict:
        """Sign up the first user of an empty system (becomes admin)."""
        email, password = unique_email("admin"), unique_password()
        body = expect_ok(self.signup("Admin", email, password))
        assert body["role"] == "admin", body
        return {"id": body["id"], "token": body["token"], "email": email, "password": password, "name": "Admin"}

    def create_user(self, admin_token: str, role: str = "user", name: str | None = None) -> dict:
        """Sign up a new user (sign-up must be open) and, unless role is pending, let the admin set the role.

        Waits until the gateway sees the new role on the user's own token."""
        email, password = unique_email(), unique_password()
        name = name or "User " + email[:14]
        body = expect_ok(self.signup(name, email, password))
        user = {"id": body["id"], "token": body["token"], "email": email, "password": password, "name": name}
        if body["role"] != role:
            self.set_role(admin_token, user, role)
        user["role"] = role
        return user

    def set_role(self, admin_token: str, user: dict, role: str) -> dict:
        body = expect_ok(
            self.post(
                f"/api/v1/users/{user['id']}/update",
                admin_token,
                json={"role": role, "name": user["name"], "email": user["email"], "profile_image_url": "/user.png"},
            )
        )
        assert body["role"] == role, body
        seen = eventually(
            lambda: (r := self.get("/api/v1/auths/", user["token"])).status_code == 200 and r.json()["role"] == role,
            timeout=5,
        )
        assert seen, f"gateway still does not see role {role} for {user['email']}"
        return body


# --------------------------------------------------------------------------------------------------
# A private redis-server (for the Redis outage test)


class RedisServer:
    def __init__(self, port: int, workdir: Path):
        self.port = port
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.workdir / f"redis-{self.port}.log", "ab")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--dir", str(self.workdir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        log.close()
        ok = eventually(
            lambda: redis_cli(f"redis://127.0.0.1:{self.port}", "PING").stdout.strip() == "PONG", timeout=10
        )
        if not ok:
            raise RuntimeError(f"redis-server on {self.port} did not start")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def module_stack(request, name: str, env: dict[str, Any] | None = None):
    """For a module-scoped fixture (`yield from module_stack(request, "name", env)`): a started Stack (the test
    fails if it does not start), stopped at the end with its logs kept when a test failed."""
    import pytest

    s = Stack(name=name, env=env)
    message = None
    try:
        s.start()
    except StackStartError as err:
        message = str(err)
    if message:
        pytest.fail(f"Skiff stack did not start: {message}", pytrace=False)
    yield s
    problems = s.stop(keep_logs=request.session.testsfailed > 0)
    assert not problems, problems
