"""Realtime: Socket.IO (Engine.IO 4 / Socket.IO 5) at /ws/socket.io through the gateway, on one or two
realtime replicas.

What is pinned here (issue 5, /tmp/research/realtime-contract.md §1-§3, §5, §8), with Skiff's own decisions:
- Both transports work through the gateway. Polling is accepted and its open packet offers
  `"upgrades":["websocket"]` (the real server answers 400 "Invalid transport" to polling: a deliberate
  difference); a websocket handshake offers `[]`. pingInterval / pingTimeout come from
  WEBSOCKET_SERVER_PING_INTERVAL / _TIMEOUT in seconds (defaults 25 / 20), maxPayload is 16 MiB.
- A Socket.IO CONNECT is always accepted at once (`40{"sid":...}`), whatever the token; a valid
  `auth.token` joins the user's room. `user-join` binds a user (ack `{id, name}`, nothing for a bad token,
  no disconnect). `heartbeat` from a socket without a user is answered with a server disconnect (`41`).
- Any service PUBLISHes `{to: {user|room|session}, event, data, skip?}` on the Redis channel skiff:realtime and
  every replica delivers to the sockets it holds.
- Replicas register as skiff:rt:replica:<id>; the Engine.IO sid starts with the replica id, the gateway routes
  requests carrying `sid=` to that replica and spreads handshakes over the live ones.

Fixtures: the single-replica tests use the shared stack. `rt2` is a stack with two realtime replicas
(ids rtA1 and rtB2), `ping_stack` one with a 1 s ping interval and time-out. The SIGKILL test kills replica
rtB2 of `rt2`, so it is the last test that uses `rt2` in this file.
"""

from __future__ import annotations

import json
import re
import secrets
import signal
import string
import threading
import time
import uuid
from typing import Any, Callable

import pytest

import requests
import socketio
import websocket

from stacklib import (
    Stack,
    StackStartError,
    describe,
    eventually,
    expect_error,
    expect_ok,
    jwt_decode_unverified,
    jwt_sign,
    redis_cli,
    sample_chat,
)

EIO_PATH = "/ws/socket.io/"
SOCKETIO_PATH = "/ws/socket.io"
SID_RE = re.compile(r"^[A-Za-z0-9_-]{20}$")
REPLICA_A, REPLICA_B = "rtA1", "rtB2"
EXTRA_REPLICA = "realtime-b"  # process name of the second replica in the rt2 stack
UNSUPPORTED_VERSION = "The client is using an unsupported version of the Socket.IO or Engine.IO protocols"


# --------------------------------------------------------------------------------------------------
# Helpers


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll predicate every 50 ms until it is truthy or timeout passes; return its last value."""
    return eventually(predicate, timeout=timeout, interval=0.05)


def marker() -> str:
    return "m-" + uuid.uuid4().hex[:16]


class Client:
    """A python-socketio client of the gateway that records what the server sends.

    - `received`: (event, first argument) of every server emit, in arrival order (thread-safe).
    - `connects`: the Engine.IO sid of every successful Socket.IO connect (reconnects append).
    - `disconnects`: the reason of every disconnect ("server disconnect", "transport close", ...).
    - `join_acks`: with join_token, the connect handler sends user-join (as the web app does on every
      (re)connect); each ack is recorded as (Engine.IO sid at the time, ack data)."""

    def __init__(self, stack: Stack, token: str | None = None, auth: Any = None,
                 transports: list[str] | None = ("websocket",), join_token: str | None = None,
                 reconnection: bool = False):
        self.stack = stack
        self.auth = {"token": token} if token is not None else auth
        self.transports = list(transports) if transports else None
        self.join_token = join_token
        self.received: list[tuple[str, Any]] = []
        self.connects: list[str] = []
        self.disconnects: list[str] = []
        self.join_acks: list[tuple[str, Any]] = []
        self._lock = threading.Lock()
        self.sio = socketio.Client(reconnection=reconnection, reconnection_delay=0.5, reconnection_delay_max=2,
                                   randomization_factor=0.2, handle_sigint=False, logger=False)
        self.sio.on("*", self._on_any)
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)

    # ---- handlers (run on python-socketio's threads)

    def _on_any(self, event: str, *args: Any) -> None:
        with self._lock:
            self.received.append((event, args[0] if args else None))

    def _on_connect(self) -> None:
        eio_sid = self.sio.eio.sid or ""
        with self._lock:
            self.connects.append(eio_sid)
        if self.join_token:
            def ack(*args: Any) -> None:
                with self._lock:
                    self.join_acks.append((eio_sid, args[0] if args else None))

            self.sio.emit("user-join", {"auth": {"token": self.join_token}}, callback=ack)

    def _on_disconnect(self, reason: Any = None) -> None:
        with self._lock:
            self.disconnects.append(str(reason))

    # ---- life cycle

    def open(self) -> "Client":
        self.sio.connect(self.stack.base, socketio_path=SOCKETIO_PATH, transports=self.transports, auth=self.auth,
                         wait_timeout=5)
        return self

    def close(self) -> None:
        try:
            self.sio.shutdown()
        except Exception:
            pass

    # ---- state

    @property
    def connected(self) -> bool:
        return bool(self.sio.connected)

    @property
    def sid(self) -> str | None:
        """The Socket.IO sid (what {"session": sid} and skip address)."""
        return self.sio.get_sid()

    @property
    def eio_sid(self) -> str:
        return self.sio.eio.sid or ""

    @property
    def replica(self) -> str:
        return self.eio_sid[:4]

    def transport(self) -> str:
        return self.sio.transport()

    # ---- traffic

    def call(self, event: str, data: Any = None, timeout: float = 10) -> Any:
        return self.sio.call(event, data, timeout=timeout)

    def emit(self, event: str, data: Any = None) -> None:
        self.sio.emit(event, data)

    def find(self, predicate: Callable[[Any], bool], event: str = "events") -> list[Any]:
        with self._lock:
            items = list(self.received)
        return [d for e, d in items if e == event and _safe(predicate, d)]

    def wait_event(self, predicate: Callable[[Any], bool], event: str = "events", timeout: float = 10) -> Any:
        """The first `event` whose data matches, waiting up to timeout; None if none came."""
        found = wait_for(lambda: self.find(predicate, event), timeout)
        return found[0] if found else None

    def got_marker(self, m: str, event: str = "events") -> list[Any]:
        return self.find(lambda d: isinstance(d, dict) and d.get("marker") == m, event)

    def joined_on(self, prefix: str, user_id: str) -> bool:
        with self._lock:
            acks = list(self.join_acks)
        return any(sid.startswith(prefix) and isinstance(a, dict) and a.get("id") == user_id for sid, a in acks)


def _safe(predicate: Callable[[Any], bool], value: Any) -> bool:
    try:
        return bool(predicate(value))
    except Exception:
        return False


@pytest.fixture
def clients():
    """connect(stack, **Client kwargs) -> an open Client; every client is shut down after the test."""
    made: list[Client] = []

    def connect(stack: Stack, **kw: Any) -> Client:
        c = Client(stack, **kw)
        made.append(c)
        return c.open()

    yield connect
    for c in made:
        c.close()


def connect_on(connect: Callable[..., Client], stack: Stack, replica: str, attempts: int = 12, **kw: Any) -> Client:
    """A client whose Engine.IO session sits on `replica` (handshakes are spread round robin: retry)."""
    seen = []
    for _ in range(attempts):
        c = connect(stack, **kw)
        if c.replica == replica:
            return c
        seen.append(c.eio_sid)
        c.close()
    pytest.fail(f"no handshake landed on replica {replica} in {attempts} tries: sids {seen}")


def publish(stack: Stack, to: dict, data: Any, event: str = "events", skip: str | None = None) -> None:
    stack.publish_realtime(to, event, data, skip=skip)


def settle(stack: Stack, *clients: Client) -> None:
    """Publish a marker to each client's own socket and wait until each got it. Anything published before
    the markers was then delivered already, or will never be (one bus, delivered in order); a short pause
    covers python-socketio running each received message on its own thread."""
    pending = []
    for c in clients:
        m = marker()
        publish(stack, {"session": c.sid}, {"marker": m, "settle": True})
        pending.append((c, m))
    for c, m in pending:
        assert c.wait_event(lambda d, m=m: d.get("marker") == m, timeout=10) is not None, (
            f"marker published to {{'session': {c.sid!r}}} never arrived; received {c.received[-5:]}")
    time.sleep(0.3)


def new_chat(stack: Stack, user: dict) -> str:
    body = expect_ok(stack.post("/api/v1/chats/new", user["token"], json={"chat": sample_chat("Realtime chat")}))
    return body["id"]


def expired_token(stack: Stack, user: dict) -> str:
    _h, claims = jwt_decode_unverified(user["token"])
    now = int(time.time())
    return jwt_sign(dict(claims, iat=now - 7200, exp=now - 3600, jti=str(uuid.uuid4())), stack.secret)


# ---- raw Engine.IO over HTTP long-polling


def eio_request(stack: Stack, method: str = "GET", timeout: float = 10, data: bytes | None = None,
                **params: str) -> requests.Response:
    headers = {"Content-Type": "text/plain;charset=UTF-8"} if data is not None else {}
    return requests.request(method, stack.url(EIO_PATH), params=params, data=data, headers=headers, timeout=timeout)


def expect_eio_error(r: requests.Response, body: str | None = None) -> None:
    """python-engineio's error answer: 400, text/plain, the body a JSON string."""
    assert r.status_code == 400, describe(r)
    assert r.headers.get("content-type", "").startswith("text/plain"), describe(r)
    if body is not None:
        assert r.json() == body, describe(r)


class Polling:
    """One Engine.IO session driven by hand over HTTP long-polling through the gateway."""

    def __init__(self, stack: Stack):
        self.stack = stack
        r = eio_request(stack, EIO="4", transport="polling", t=str(time.time()))
        assert r.status_code == 200, describe(r)
        self.response = r
        packets = r.text.split("\x1e")
        assert packets[0].startswith("0"), describe(r)
        self.open = json.loads(packets[0][1:])
        self.sid: str = self.open["sid"]
        self.seen: list[str] = packets[1:]

    def post(self, *packets: str) -> requests.Response:
        return eio_request(self.stack, "POST", data="\x1e".join(packets).encode(), EIO="4", transport="polling",
                           sid=self.sid)

    def get(self, timeout: float = 10) -> requests.Response:
        return eio_request(self.stack, "GET", timeout=timeout, EIO="4", transport="polling", sid=self.sid)

    def get_packets(self, timeout: float = 10) -> list[str]:
        r = self.get(timeout)
        assert r.status_code == 200, describe(r)
        packets = r.text.split("\x1e")
        for p in packets:
            if p == "2":
                self.post("3")
        self.seen.extend(packets)
        return packets

    def expect(self, predicate: Callable[[str], bool], timeout: float = 10) -> str:
        """GET until a packet matches (pings answered, other packets kept in seen)."""
        for p in self.seen:
            if predicate(p):
                self.seen.remove(p)
                return p
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in self.get_packets(timeout=max(1.0, deadline - time.monotonic())):
                if predicate(p):
                    self.seen.remove(p)
                    return p
        pytest.fail(f"no matching packet within {timeout}s; got {self.seen}")

    def connect(self, auth: dict | None = None) -> str:
        r = self.post("40" + (json.dumps(auth) if auth is not None else ""))
        assert r.status_code == 200 and r.text == "OK", describe(r)
        pkt = self.expect(lambda p: p.startswith("40"))
        return json.loads(pkt[2:])["sid"]

    def close(self) -> None:
        try:
            self.post("1")
        except requests.RequestException:
            pass


def ack_of(pkt: str, ack_id: int) -> Any:
    """The content of an ack packet 43<id>[...] (as a list)."""
    prefix = f"43{ack_id}"
    assert pkt.startswith(prefix + "["), pkt
    return json.loads(pkt[len(prefix):])


def is_ack(ack_id: int) -> Callable[[str], bool]:
    return lambda p: p.startswith(f"43{ack_id}[")


# ---- raw websocket


class RawWS:
    """A raw Engine.IO websocket through the gateway (websocket-client), one packet per frame."""

    def __init__(self, stack: Stack, query: str = "EIO=4&transport=websocket", timeout: float = 10):
        url = stack.base.replace("http://", "ws://", 1) + EIO_PATH + "?" + query
        self.ws = websocket.create_connection(url, timeout=timeout)
        self.closed = False

    def recv(self, timeout: float) -> str | bytes | None:
        """The next packet; None once the connection is closed; raises TimeoutError when nothing came."""
        if self.closed:
            return None
        self.ws.settimeout(max(0.01, timeout))
        try:
            opcode, data = self.ws.recv_data()
        except (websocket.WebSocketTimeoutException, TimeoutError):
            raise TimeoutError from None
        except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
            self.closed = True
            return None
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            self.closed = True
            return None
        if opcode == websocket.ABNF.OPCODE_TEXT:
            return data.decode() if isinstance(data, bytes) else data
        return data

    def send(self, text: str) -> None:
        self.ws.send(text)

    def open_and_connect(self, auth: dict | None = None) -> dict:
        """Read the open packet, send 40, read 40{"sid"}; returns the open packet's JSON."""
        first = self.recv(10)
        assert isinstance(first, str) and first.startswith("0"), first
        opened = json.loads(first[1:])
        self.send("40" + (json.dumps(auth) if auth is not None else ""))
        reply = self.recv(10)
        assert isinstance(reply, str) and reply.startswith("40"), reply
        assert SID_RE.match(json.loads(reply[2:])["sid"]), reply
        return opened

    def close(self) -> None:
        try:
            self.ws.close(timeout=1)
        except Exception:
            pass


# --------------------------------------------------------------------------------------------------
# Stacks of this module


def _module_stack(request, name: str, env: dict, setup: Callable[[Stack], None] | None = None):
    s = Stack(env=env, name=name)
    try:
        s.start()
        if setup:
            setup(s)
    except BaseException as err:
        logs = s.logs_tail(40) if not isinstance(err, StackStartError) else ""
        s.stop(keep_logs=True)
        pytest.fail(f"stack {name} did not start: {type(err).__name__}: {err}\n{logs}", pytrace=False)
    yield s
    problems = s.stop(keep_logs=request.session.testsfailed > 0)
    assert not problems, f"stack {name} shutdown: {problems}"


def wait_routable(stack: Stack, replicas: set[str], timeout: float = 30) -> None:
    """Open polling handshakes through the gateway until every replica in `replicas` has taken one."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while not replicas <= seen:
        if time.monotonic() > deadline:
            pytest.fail(f"handshakes reached only {sorted(seen)} of {sorted(replicas)} within {timeout}s; "
                        f"registry {stack.realtime_replicas()}\n{stack.logs_tail(20)}")
        try:
            p = Polling(stack)
            seen.add(p.sid[:4])
            p.close()
        except (AssertionError, requests.RequestException, ValueError):
            pass
        time.sleep(0.2)


@pytest.fixture(scope="module")
def rt2(request):
    """A stack with two realtime replicas: the stack's own (rtA1) and an extra process (rtB2)."""

    def setup(s: Stack) -> None:
        s.spawn_extra(EXTRA_REPLICA, "realtime", {"SKIFF_REALTIME_REPLICA_ID": REPLICA_B})
        admin = s.signup_admin()
        s.set_admin_config(admin["token"], ENABLE_SIGNUP=True)
        s.rt_admin = admin  # type: ignore[attr-defined]
        wait_routable(s, {REPLICA_A, REPLICA_B})

    yield from _module_stack(request, "rt-2replicas", {"SKIFF_REALTIME_REPLICA_ID": REPLICA_A}, setup)


@pytest.fixture
def rt2_user(rt2):
    def make(name: str | None = None) -> dict:
        return rt2.create_user(rt2.rt_admin["token"], name=name)

    return make


@pytest.fixture(scope="module")
def ping_stack(request):
    def setup(s: Stack) -> None:
        s.rt_admin = s.signup_admin()  # type: ignore[attr-defined]

    yield from _module_stack(request, "rt-ping",
                             {"WEBSOCKET_SERVER_PING_INTERVAL": "1", "WEBSOCKET_SERVER_PING_TIMEOUT": "1"}, setup)


# --------------------------------------------------------------------------------------------------
# Connecting: transports, tokens, user-join, heartbeat


def test_websocket_connect_with_token(stack, make_user, clients):
    alice = make_user()
    c = clients(stack, token=alice["token"])
    assert c.connected and c.transport() == "websocket"
    assert SID_RE.match(c.eio_sid), c.eio_sid
    assert c.sid and SID_RE.match(c.sid) and c.sid != c.eio_sid, (c.sid, c.eio_sid)
    time.sleep(1)
    assert c.received == [], "nothing is emitted on connect"

    assert c.call("user-join", {"auth": {"token": alice["token"]}}) == {"id": alice["id"], "name": alice["name"]}
    assert c.call("heartbeat", {}) is None
    assert c.connected

    # The token in the CONNECT auth alone joins the user's room.
    m = marker()
    publish(stack, {"user": alice["id"]}, {"marker": m})
    assert c.wait_event(lambda d: d.get("marker") == m) == {"marker": m}
    stack.assert_alive()


def test_polling_only_transport(stack, make_user, clients):
    alice = make_user()
    c = clients(stack, transports=["polling"])
    assert c.connected and c.transport() == "polling"
    assert SID_RE.match(c.eio_sid), c.eio_sid
    assert c.call("user-join", {"auth": {"token": alice["token"]}}) == {"id": alice["id"], "name": alice["name"]}
    assert c.call("heartbeat", {}) is None
    m = marker()
    publish(stack, {"user": alice["id"]}, {"marker": m, "n": 1})
    assert c.wait_event(lambda d: d.get("marker") == m) == {"marker": m, "n": 1}
    # A long-poll that is already waiting gets what arrives later, too.
    time.sleep(0.5)
    m2 = marker()
    publish(stack, {"user": alice["id"]}, {"marker": m2})
    assert c.wait_event(lambda d: d.get("marker") == m2) is not None
    assert c.transport() == "polling" and c.connected


def test_default_transports_upgrade_to_websocket(stack, make_user, clients):
    alice = make_user()
    c = clients(stack, transports=None)
    assert wait_for(lambda: c.transport() == "websocket", 10), f"still on {c.transport()}"
    assert c.connected
    assert c.call("user-join", {"auth": {"token": alice["token"]}}) == {"id": alice["id"], "name": alice["name"]}
    m = marker()
    publish(stack, {"user": alice["id"]}, {"marker": m})
    assert c.wait_event(lambda d: d.get("marker") == m) is not None
    assert c.call("heartbeat", {}) is None


@pytest.mark.parametrize("kind", ["none", "garbage", "expired"])
def test_bad_or_missing_token_connects_anonymously(stack, make_user, clients, kind):
    alice = make_user()
    bad = {"none": None, "garbage": "not-a-jwt", "expired": expired_token(stack, alice)}[kind]
    c = clients(stack, token=bad) if bad is not None else clients(stack)
    assert c.connected and c.sid, "the connection is accepted whatever the token"

    # No user room was joined: an event for alice does not reach a socket that showed her expired token.
    m = marker()
    publish(stack, {"user": alice["id"]}, {"marker": m})
    settle(stack, c)
    assert not c.got_marker(m)

    for token in ["not-a-jwt", expired_token(stack, alice), ""]:
        assert c.call("user-join", {"auth": {"token": token}}) is None, token
    assert c.call("user-join", {}) is None
    assert c.connected
    assert c.call("no-such-event", {"x": 1}) is None, "the socket still works"

    # A socket without a user that sends heartbeat is disconnected by the server (41).
    c.emit("heartbeat", {})
    assert wait_for(lambda: not c.connected and c.disconnects, 10), "anonymous heartbeat: still connected"
    assert c.disconnects == ["server disconnect"], c.disconnects
    stack.assert_alive()


def test_user_join_after_anonymous_connect(stack, make_user, clients):
    alice, bob = make_user(), make_user()
    a = clients(stack)  # 40{} as the logged-out web app sends
    b = clients(stack, token=bob["token"])
    anon = clients(stack)
    assert a.call("user-join", {"auth": {"token": alice["token"]}}) == {"id": alice["id"], "name": alice["name"]}

    m = marker()
    publish(stack, {"user": alice["id"]}, {"chat_id": "c1", "marker": m})
    assert a.wait_event(lambda d: d.get("marker") == m) == {"chat_id": "c1", "marker": m}
    # The form the chat service publishes: the user's room by name.
    m2 = marker()
    publish(stack, {"room": f"user:{alice['id']}"}, {"marker": m2})
    assert a.wait_event(lambda d: d.get("marker") == m2) is not None
    # Another event name is delivered under its own name.
    m3 = marker()
    publish(stack, {"user": alice["id"]}, {"marker": m3}, event="events:channel")
    assert a.wait_event(lambda d: d.get("marker") == m3, event="events:channel") is not None

    settle(stack, b, anon)
    for other in (b, anon):
        assert not other.got_marker(m) and not other.got_marker(m2)
        assert not other.got_marker(m3, event="events:channel")
    assert len(a.got_marker(m)) == 1, "delivered once"


def test_session_target_and_room_skip(stack, make_user, clients):
    alice, bob = make_user(), make_user()
    a1 = clients(stack, token=alice["token"])
    a2 = clients(stack, token=alice["token"])
    b = clients(stack, token=bob["token"])

    m = marker()
    publish(stack, {"session": a1.sid}, {"marker": m})
    assert a1.wait_event(lambda d: d.get("marker") == m) is not None
    settle(stack, a2, b)
    assert not a2.got_marker(m) and not b.got_marker(m)

    chat_id = new_chat(stack, alice)
    join = {"chat_id": chat_id, "data": {"type": "join"}}
    assert a1.call("events:chat", join) is True
    assert a2.call("events:chat", join) is True

    m = marker()
    publish(stack, {"room": f"chat:{chat_id}"}, {"chat_id": chat_id, "marker": m}, skip=a1.sid)
    assert a2.wait_event(lambda d: d.get("marker") == m) is not None
    settle(stack, a1, b)
    assert not a1.got_marker(m), "the skipped socket got the event"
    assert not b.got_marker(m), "a socket outside the room got the event"

    m = marker()
    publish(stack, {"room": f"chat:{chat_id}"}, {"chat_id": chat_id, "marker": m})
    assert a1.wait_event(lambda d: d.get("marker") == m) is not None
    assert a2.wait_event(lambda d: d.get("marker") == m) is not None
    settle(stack, b)
    assert not b.got_marker(m)


def test_events_chat_join_and_leave(stack, make_user, clients):
    alice, bob = make_user(), make_user()
    mine, theirs = new_chat(stack, alice), new_chat(stack, bob)
    a = clients(stack, token=alice["token"])

    def chat_event(chat_id: Any, type_: str) -> Any:
        return a.call("events:chat", {"chat_id": chat_id, "data": {"type": type_}})

    assert chat_event(mine, "join") is True
    assert chat_event(theirs, "join") is False, "another user's chat"
    assert chat_event("temporary:x", "join") is False
    assert chat_event(str(uuid.uuid4()), "join") is False, "unknown chat"
    assert a.connected

    m = marker()
    publish(stack, {"room": f"chat:{mine}"}, {"marker": m})
    assert a.wait_event(lambda d: d.get("marker") == m) is not None
    m = marker()
    publish(stack, {"room": f"chat:{theirs}"}, {"marker": m})
    settle(stack, a)
    assert not a.got_marker(m), "a refused join must not put the socket in the room"

    assert chat_event(mine, "leave") is True
    m = marker()
    publish(stack, {"room": f"chat:{mine}"}, {"marker": m})
    settle(stack, a)
    assert not a.got_marker(m), "still in the chat room after leave"


def test_unknown_and_reserved_events(stack, make_user, clients):
    alice = make_user()
    a = clients(stack, token=alice["token"])
    assert a.call("no-such-event", {"x": 1}) is None
    assert a.call("no-such-event") is None
    a.emit("disconnect", {})  # a client event named disconnect is ignored
    a.emit("connect", {})
    time.sleep(0.5)
    assert a.connected and a.disconnects == []
    assert a.call("heartbeat", {}) is None
    m = marker()
    publish(stack, {"user": alice["id"]}, {"marker": m})
    assert a.wait_event(lambda d: d.get("marker") == m) is not None


def presence_of(chat_id: str) -> Callable[[Any], bool]:
    return lambda d: d.get("chat_id") == chat_id and d["data"]["type"] == "chat:presence"


def test_chat_presence_on_join_leave_and_disconnect(stack, make_user, clients):
    """`chat:presence` goes to the chat's room after every join, leave and disconnect: the users whose sockets
    are in the chat, once each, sorted by id; sockets whose presence expired (a dead replica's) drop out."""
    alice = make_user()
    chat_id = new_chat(stack, alice)
    me = {"id": alice["id"], "name": alice["name"]}
    a1 = clients(stack, token=alice["token"])
    a2 = clients(stack, token=alice["token"])
    join = {"chat_id": chat_id, "data": {"type": "join"}}

    assert a1.call("events:chat", join) is True
    got = a1.wait_event(presence_of(chat_id))
    assert got == {"chat_id": chat_id, "shared": True, "data": {"type": "chat:presence", "data": {"users": [me]}}}

    # Another user's socket (as on a replica elsewhere) that is alive, and one whose presence key expired.
    key = f"skiff:rt:chat:{chat_id}"
    live, ghost = "live" + secrets.token_hex(8), "ghost" + secrets.token_hex(8)
    other = {"id": "0" * 8 + "-live", "name": "Zed"}
    redis_cli(stack.redis_url, "SET", f"skiff:rt:sess:{live}", json.dumps(other), "EX", "60")
    redis_cli(stack.redis_url, "HSET", key, live, json.dumps(other), ghost, json.dumps({"id": "zzz", "name": "Ghost"}))

    a1.received.clear()
    assert a2.call("events:chat", join) is True
    for c in (a1, a2):
        got = c.wait_event(presence_of(chat_id))
        assert got and got["data"]["data"]["users"] == sorted([me, other], key=lambda u: u["id"]), got
    assert ghost not in redis_cli(stack.redis_url, "HKEYS", key).stdout, "an expired socket stays listed"

    # One of alice's sockets leaving keeps her listed (the other is still there).
    a2.received.clear()
    assert a1.call("events:chat", {"chat_id": chat_id, "data": {"type": "leave"}}) is True
    got = a2.wait_event(presence_of(chat_id))
    assert got and got["data"]["data"]["users"] == sorted([me, other], key=lambda u: u["id"])

    # The live stranger's socket goes away; alice's last socket disconnecting empties her entry.
    redis_cli(stack.redis_url, "DEL", f"skiff:rt:sess:{live}")
    a2.received.clear()
    assert a1.call("events:chat", join) is True
    got = a2.wait_event(presence_of(chat_id))
    assert got and got["data"]["data"]["users"] == [me]
    a1.close()
    a2.close()
    assert wait_for(lambda: redis_cli(stack.redis_url, "HLEN", key).stdout.strip() in ("0", ""), 10), (
        "sockets that disconnected stay in the chat's presence")


def last_read(stack: Stack, user: dict, chat_id: str) -> int:
    listed = expect_ok(stack.get(f"/api/v1/chats/folder/{expect_ok(stack.get(f'/api/v1/chats/{chat_id}', user['token']))['folder_id']}/list", user["token"]))
    return next(c["last_read_at"] for c in listed if c["id"] == chat_id)


def test_events_chat_last_read_at(stack, make_user, clients):
    """`last_read_at` stamps the chat read and tells every socket of the user (`chat:list`), with the folders'
    unread counts when the chat had been unread; another user's chat is left alone."""
    alice, bob = make_user(), make_user()
    chat_id = new_chat(stack, alice)
    folder = expect_ok(stack.post("/api/v1/folders/", alice["token"], json={"name": "Reading " + marker()}))
    expect_ok(stack.post(f"/api/v1/chats/{chat_id}/folder", alice["token"], json={"folder_id": folder["id"]}))
    unread = expect_ok(stack.post(f"/api/v1/chats/{chat_id}/unread", alice["token"]))
    assert unread["folder_unread_counts"] == {folder["id"]: 1}, unread
    a1 = clients(stack, token=alice["token"])
    a2 = clients(stack, token=alice["token"])
    b = clients(stack, token=bob["token"])

    def chat_list(d: Any) -> bool:
        return d.get("chat_id") == chat_id and d["data"]["type"] == "chat:list"

    before = int(time.time())
    assert a1.call("events:chat", {"chat_id": chat_id, "data": {"type": "last_read_at"}}) is None
    for c in (a1, a2):
        got = c.wait_event(chat_list)
        assert got is not None, c.received[-5:]
        data = got["data"]["data"]
        assert got == {"chat_id": chat_id, "data": {"type": "chat:list", "data": data}}
        assert data["chat_id"] == chat_id and data["last_read_at"] >= before
        assert data["folder_unread_counts"] == {folder["id"]: 0}, data
    assert last_read(stack, alice, chat_id) == data["last_read_at"]

    # Read already: no folder counts this time.
    a1.received.clear()
    assert a1.call("events:chat", {"chat_id": chat_id, "data": {"type": "last_read_at"}}) is None
    got = a1.wait_event(chat_list)
    assert got is not None and "folder_unread_counts" not in got["data"]["data"], got

    # Bob cannot stamp alice's chat, and nobody hears of it.
    expect_ok(stack.post(f"/api/v1/chats/{chat_id}/unread", alice["token"]))
    a1.received.clear()
    assert b.call("events:chat", {"chat_id": chat_id, "data": {"type": "last_read_at"}}) is None
    assert b.call("events:chat", {"chat_id": str(uuid.uuid4()), "data": {"type": "last_read_at"}}) is None
    settle(stack, a1, b)
    assert not a1.find(chat_list) and not b.find(chat_list)
    assert last_read(stack, alice, chat_id) == 0
    assert b.connected and a1.connected


def test_message_event_route_reaches_owner(stack, make_user, clients):
    alice, bob = make_user(), make_user()
    chat_id = new_chat(stack, alice)
    a = clients(stack, token=alice["token"])
    b = clients(stack, token=bob["token"])
    data = {"description": "Searching the web", "done": False, "m": marker()}
    r = stack.post(f"/api/v1/chats/{chat_id}/messages/m2/event", alice["token"], json={"type": "status", "data": data})
    assert expect_ok(r) is True
    expected = {"chat_id": chat_id, "message_id": "m2", "data": {"type": "status", "data": data}}
    got = a.wait_event(lambda d: d.get("chat_id") == chat_id and d["data"]["data"].get("m") == data["m"])
    assert got == expected, a.received[-5:]
    settle(stack, b)
    assert not b.find(lambda d: d.get("chat_id") == chat_id)


# --------------------------------------------------------------------------------------------------
# Raw protocol over HTTP long-polling


def test_polling_handshake_shape(stack):
    p = Polling(stack)
    try:
        r = p.response
        assert r.headers.get("content-type", "").startswith("text/plain"), describe(r)
        assert set(p.open) == {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}, p.open
        assert SID_RE.match(p.sid), p.sid
        assert p.open["upgrades"] == ["websocket"]
        assert p.open["pingInterval"] == 25000 and p.open["pingTimeout"] == 20000, p.open
        assert p.open["maxPayload"] == 16777216
    finally:
        p.close()
    # Without the trailing slash, as python-engineio also accepts it.
    r = requests.get(stack.url("/ws/socket.io"), params={"EIO": "4", "transport": "polling"}, timeout=10)
    assert r.status_code == 200 and r.text.startswith("0{"), describe(r)
    sid = json.loads(r.text.split("\x1e")[0][1:])["sid"]
    assert SID_RE.match(sid) and sid != p.sid
    eio_request(stack, "POST", data=b"1", EIO="4", transport="polling", sid=sid)


def test_polling_packets_and_acks(stack, make_user):
    alice = make_user()
    p = Polling(stack)
    try:
        r = p.post("40")
        assert r.status_code == 200 and r.text == "OK", describe(r)
        assert r.headers.get("content-type", "").startswith("text/plain"), describe(r)
        pkt = p.expect(lambda x: x.startswith("40"))
        sio_sid = json.loads(pkt[2:])["sid"]
        assert SID_RE.match(sio_sid) and sio_sid != p.sid, pkt

        # Two packets in one POST, handled in order: user-join binds the user before heartbeat runs.
        join = json.dumps(["user-join", {"auth": {"token": alice["token"]}}])
        assert p.post("421" + join, '422["heartbeat",{}]').text == "OK"
        time.sleep(1.0)  # both acks are queued by now: one GET returns them joined by \x1e
        r = p.get()
        assert r.status_code == 200, describe(r)
        packets = r.text.split("\x1e")
        p.seen.extend(packets)
        assert "\x1e" in r.text and len(packets) >= 2, f"expected two queued packets in one GET: {r.text!r}"
        assert ack_of(p.expect(is_ack(1)), 1) == [{"id": alice["id"], "name": alice["name"]}]
        assert ack_of(p.expect(is_ack(2)), 2) == []

        # A bus event for the session arrives as 42["events",{...}].
        m = marker()
        publish(stack, {"session": sio_sid}, {"marker": m})
        pkt = p.expect(lambda x: x.startswith("42") and m in x)
        assert json.loads(pkt[2:]) == ["events", {"marker": m}]
    finally:
        p.close()


def test_polling_garbage_keeps_session(stack, make_user):
    alice = make_user()
    p = Polling(stack)
    try:
        p.connect()
        for garbage in ['42[bad', "9", '42{"a":1}', '42["user-join","str"]', "42", "42[]", "4x"]:
            r = p.post(garbage)
            assert r.status_code == 200 and r.text == "OK", f"{garbage!r}: {describe(r)}"
        join = json.dumps(["user-join", {"auth": {"token": alice["token"]}}])
        assert p.post("423" + join).text == "OK"
        assert ack_of(p.expect(is_ack(3)), 3) == [{"id": alice["id"], "name": alice["name"]}]
        assert p.post('424["heartbeat",{}]').text == "OK"
        assert ack_of(p.expect(is_ack(4)), 4) == []
    finally:
        p.close()
    stack.assert_alive()


def test_polling_errors(stack):
    live = Polling(stack)
    live.close()
    prefix = live.sid[:4]
    alphabet = string.ascii_letters + string.digits + "-_"
    rand = "".join(secrets.choice(alphabet) for _ in range(16))
    unknown_on_live = prefix + rand  # a live replica's prefix, a session it never had
    unknown_nowhere = "-_-_" + rand  # replica ids are [A-Za-z0-9]: no replica has this prefix
    for sid in (unknown_on_live, unknown_nowhere, "x"):
        expect_eio_error(eio_request(stack, "GET", EIO="4", transport="polling", sid=sid), f"Invalid session {sid}")
        expect_eio_error(eio_request(stack, "POST", data=b"40", EIO="4", transport="polling", sid=sid),
                         f"Invalid session {sid}")
    # The session closed with "1" above is gone too (python-engineio's text differs here; only the status).
    expect_eio_error(live.get())

    expect_eio_error(eio_request(stack, "GET", EIO="3", transport="polling"), UNSUPPORTED_VERSION)
    expect_eio_error(eio_request(stack, "GET", transport="polling"), UNSUPPORTED_VERSION)
    expect_eio_error(eio_request(stack, "GET", EIO="4", transport="foo"), "Invalid transport")
    # A websocket handshake sent as plain HTTP (no Upgrade header) is refused.
    r = eio_request(stack, "GET", EIO="4", transport="websocket")
    assert r.status_code == 400, describe(r)
    stack.assert_alive()


def test_oversized_polling_body_is_413_and_spares_the_replica(make_stack):
    """A client's own error on a polling request (a chunked body over the gateway's limit) answers 413 and does
    not mark the replica unreachable: the replica's other sessions go on."""
    s = make_stack(SKIFF_MAX_BODY_SIZE=4096)
    first, second = Polling(s), Polling(s)

    def chunks():
        for _ in range(64):
            yield b"4" * 1024

    r = requests.post(s.url(EIO_PATH), params={"EIO": "4", "transport": "polling", "sid": first.sid},
                      data=chunks(), headers={"Content-Type": "text/plain;charset=UTF-8"}, timeout=10)
    assert r.status_code == 413, describe(r)
    assert r.json()["detail"], describe(r)

    r = second.post("40")
    assert r.status_code == 200 and r.text == "OK", describe(r)
    assert any(p.startswith("40") for p in second.get_packets()), second.seen
    s.assert_alive()


def test_unknown_ws_path_is_404(stack):
    for path in ["/ws/other", "/ws/other/?EIO=4&transport=polling"]:
        expect_error(requests.get(stack.url(path), timeout=10), 404)


def test_websocket_upgrades_the_gateway_cannot_place(stack):
    """A websocket upgrade to a path that takes none answers 400 with a detail and does not hang; an upgrade
    for a session no replica holds is accepted and closed at once (Socket.IO clients then reconnect)."""
    ws_url = stack.url("/api/v1/chats/").replace("http://", "ws://")
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(ws_url, timeout=5)
    assert refused.value.status_code == 400
    assert json.loads(refused.value.resp_body)["detail"]

    dead = "zzzz" + "".join(secrets.choice(string.ascii_letters) for _ in range(16))
    url = stack.url(f"/ws/socket.io/?EIO=4&transport=websocket&sid={dead}").replace("http://", "ws://")
    ws = websocket.create_connection(url, timeout=5)
    opcode, _ = ws.recv_data(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE
    ws.close()
    # The gateway still serves websockets afterwards.
    ws = websocket.create_connection(stack.url("/ws/socket.io/?EIO=4&transport=websocket").replace("http://", "ws://"), timeout=5)
    assert ws.recv().startswith("0{")
    ws.close()
    stack.assert_alive()


# --------------------------------------------------------------------------------------------------
# Ping / pong (interval and time-out of 1 s)


@pytest.mark.slow
def test_ping_timeout_closes_silent_websocket(ping_stack):
    ws = RawWS(ping_stack)
    try:
        opened = ws.open_and_connect()
        assert opened["pingInterval"] == 1000 and opened["pingTimeout"] == 1000, opened
        assert opened["upgrades"] == [] and opened["maxPayload"] == 16777216, opened
        assert opened["sid"].startswith(tuple(ping_stack.realtime_replicas()) or ("",)), opened
        started = time.monotonic()
        packets: list[Any] = []
        while time.monotonic() - started < 8:
            try:
                pkt = ws.recv(8 - (time.monotonic() - started))
            except TimeoutError:
                break
            if pkt is None:
                break
            packets.append(pkt)  # never answered
        elapsed = time.monotonic() - started
        assert ws.closed, f"still open after {elapsed:.1f}s without answering pings; got {packets}"
        assert "2" in packets, f"the server never pinged: {packets}"
        assert 1.5 <= elapsed <= 4.5, f"closed after {elapsed:.1f}s (interval 1 s + time-out 1 s); got {packets}"
    finally:
        ws.close()
    ping_stack.assert_alive()


@pytest.mark.slow
def test_answering_pings_keeps_websocket_open(ping_stack, clients):
    admin = ping_stack.rt_admin
    ws = RawWS(ping_stack)
    c = clients(ping_stack, token=admin["token"])  # python-socketio answers pings by itself
    try:
        ws.open_and_connect({"token": admin["token"]})
        started = time.monotonic()
        pings = 0
        while time.monotonic() - started < 5:
            try:
                pkt = ws.recv(0.5)
            except TimeoutError:
                continue
            assert pkt is not None, f"closed after {time.monotonic() - started:.1f}s although every ping was answered"
            if pkt == "2":
                pings += 1
                ws.send("3")
        assert pings >= 3, f"{pings} pings in 5 s with a 1 s interval"
        ws.send('421["heartbeat",{}]')
        deadline = time.monotonic() + 5
        while True:
            assert time.monotonic() < deadline, "no ack for heartbeat"
            try:
                pkt = ws.recv(1)
            except TimeoutError:
                continue
            assert pkt is not None, "closed while waiting for the heartbeat ack"
            if pkt == "2":
                ws.send("3")
            elif isinstance(pkt, str) and pkt.startswith("431"):
                assert json.loads(pkt[3:]) == [], pkt
                break
    finally:
        ws.close()
    assert c.connected and c.disconnects == [], c.disconnects
    assert c.call("heartbeat", {}) is None


# --------------------------------------------------------------------------------------------------
# Two replicas


@pytest.mark.slow
def test_two_replicas_deliver_everywhere(rt2, rt2_user, clients):
    registry = rt2.realtime_replicas()
    assert {REPLICA_A, REPLICA_B} <= set(registry), registry

    # Handshakes are spread over the live replicas.
    landed = []
    for _ in range(6):
        p = Polling(rt2)
        landed.append(p.sid[:4])
        p.close()
    assert landed.count(REPLICA_A) >= 2 and landed.count(REPLICA_B) >= 2, landed

    alice, bob = rt2_user(), rt2_user()
    a_on_a = connect_on(clients, rt2, REPLICA_A, token=alice["token"])
    a_on_b = connect_on(clients, rt2, REPLICA_B, token=alice["token"])
    b_on_b = connect_on(clients, rt2, REPLICA_B, token=bob["token"])
    # Polling needs every request of a session to reach its replica.
    poll_a = connect_on(clients, rt2, REPLICA_A, transports=["polling"], join_token=alice["token"])
    poll_b = connect_on(clients, rt2, REPLICA_B, transports=["polling"], join_token=alice["token"])
    for c in (poll_a, poll_b):
        assert wait_for(lambda c=c: c.joined_on(c.replica, alice["id"]), 10), c.join_acks
        assert c.call("heartbeat", {}) is None
    for c in (a_on_a, a_on_b):
        assert c.call("user-join", {"auth": {"token": alice["token"]}}) == {"id": alice["id"], "name": alice["name"]}

    # Published on the bus: every socket of alice, on both replicas, gets it; bob's does not.
    m = marker()
    publish(rt2, {"user": alice["id"]}, {"marker": m})
    for c in (a_on_a, a_on_b, poll_a, poll_b):
        assert c.wait_event(lambda d: d.get("marker") == m) is not None, f"not delivered on {c.replica}"
    # One socket addressed on the other replica.
    m = marker()
    publish(rt2, {"session": a_on_b.sid}, {"marker": m})
    assert a_on_b.wait_event(lambda d: d.get("marker") == m) is not None
    # A real service: the chat service's message event reaches the owner on both replicas.
    chat_id = new_chat(rt2, alice)
    data = {"description": "working", "done": False, "m": marker()}
    assert expect_ok(rt2.post(f"/api/v1/chats/{chat_id}/messages/m2/event", alice["token"],
                              json={"type": "status", "data": data})) is True
    for c in (a_on_a, a_on_b, poll_a, poll_b):
        got = c.wait_event(lambda d: d.get("chat_id") == chat_id and d.get("message_id") == "m2")
        assert got == {"chat_id": chat_id, "message_id": "m2", "data": {"type": "status", "data": data}}, c.replica
    # A chat room spanning both replicas.
    assert a_on_a.call("events:chat", {"chat_id": chat_id, "data": {"type": "join"}}) is True
    assert a_on_b.call("events:chat", {"chat_id": chat_id, "data": {"type": "join"}}) is True
    me = {"id": alice["id"], "name": alice["name"]}
    for c in (a_on_a, a_on_b):  # presence is computed from Redis, so it spans the replicas
        assert c.wait_event(lambda d: presence_of(chat_id)(d) and d["data"]["data"]["users"] == [me]), c.replica
    m = marker()
    publish(rt2, {"room": f"chat:{chat_id}"}, {"marker": m}, skip=a_on_a.sid)
    assert a_on_b.wait_event(lambda d: d.get("marker") == m) is not None
    settle(rt2, a_on_a, b_on_b)
    assert not a_on_a.got_marker(m)
    assert not b_on_b.find(lambda d: d.get("chat_id") == chat_id or d.get("marker") == m)
    rt2.assert_alive()


@pytest.mark.slow
def test_replica_sigkill_clients_reconnect(rt2, rt2_user, clients):
    """SIGKILL replica rtB2 while clients sit on it: they reconnect to rtA1 by themselves, user-join again
    from their connect handler and keep receiving. Clients on rtA1 are not disturbed. (Destructive: rtB2 stays
    dead, so this is the last test using rt2.)"""
    alice, bob = rt2_user(), rt2_user()
    victims = [
        connect_on(clients, rt2, REPLICA_B, token=alice["token"], join_token=alice["token"], reconnection=True),
        connect_on(clients, rt2, REPLICA_B, transports=["polling"], join_token=alice["token"], reconnection=True),
    ]
    bystander = connect_on(clients, rt2, REPLICA_A, token=bob["token"], join_token=bob["token"], reconnection=True)
    for c in victims:
        assert wait_for(lambda c=c: c.joined_on(REPLICA_B, alice["id"]), 10), c.join_acks
    assert wait_for(lambda: bystander.joined_on(REPLICA_A, bob["id"]), 10), bystander.join_acks

    rt2.kill(EXTRA_REPLICA, signal.SIGKILL)
    killed_at = time.monotonic()

    for c in victims:
        assert wait_for(lambda c=c: c.joined_on(REPLICA_A, alice["id"]) and c.connected, 15), (
            f"{c.transports}: not back on {REPLICA_A} within 15 s; connects {c.connects}, "
            f"disconnects {c.disconnects}, acks {c.join_acks}")
        assert c.disconnects, "the client never saw its connection drop"
    reconnected_in = time.monotonic() - killed_at

    m = marker()
    publish(rt2, {"user": alice["id"]}, {"marker": m})
    for c in victims:
        assert c.wait_event(lambda d: d.get("marker") == m, timeout=5) is not None, (c.transports, c.connects)
    m = marker()
    publish(rt2, {"user": bob["id"]}, {"marker": m})
    assert bystander.wait_event(lambda d: d.get("marker") == m, timeout=5) is not None
    assert bystander.disconnects == [] and bystander.connects == [bystander.eio_sid], (
        "a client of the surviving replica was disturbed", bystander.connects, bystander.disconnects)

    # A session of the dead replica is unknown now; new handshakes all land on the survivor.
    dead_sid = REPLICA_B + "".join(secrets.choice(string.ascii_letters) for _ in range(16))
    expect_eio_error(eio_request(rt2, "GET", EIO="4", transport="polling", sid=dead_sid),
                     f"Invalid session {dead_sid}")
    for _ in range(3):
        p = Polling(rt2)
        assert p.sid.startswith(REPLICA_A), p.sid
        p.close()
    assert reconnected_in < 15
    rt2.assert_alive()
