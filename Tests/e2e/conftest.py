"""Fixtures for Skiff's end-to-end tests: stacks of the six real executables, and users on them.

- `stack`: one Skiff shared by the whole session. Tests that use it must not depend on what other tests
  did to it: they create their own users (unique emails) and never sign out or change the shared admin.
- `admin`: the first user of the shared stack (signed up once per session): {id, token, email, password}.
- `open_signup`: the shared stack with ENABLE_SIGNUP switched back on by the admin.
- `make_user(role="user")`: a new user on the shared stack, promoted by the admin to `role`.
- `make_stack(**env)`: a fresh, empty Skiff for one test (first admin, onboarding, special settings).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stacklib import Stack, StackStartError  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "resilience: stops Redis or Postgres while Skiff runs")
    config.addinivalue_line("markers", "slow: starts its own stack or waits on timers (deselect with -m 'not slow')")
    config.addinivalue_line(
        "markers", "stops_postgres: stops the shared Postgres cluster; always runs last in the session"
    )


def pytest_collection_modifyitems(session, config, items):
    """Tests that stop the shared Postgres cluster run after everything else."""
    last = [item for item in items if item.get_closest_marker("stops_postgres")]
    if last:
        items[:] = [item for item in items if item not in last] + last


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)
    if report.failed and report.when in ("setup", "call"):
        stacks = list(getattr(item, "_skiff_stacks", []))
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, Stack) and value not in stacks:
                stacks.append(value)
        for s in stacks:
            if s.procs:
                report.sections.append((f"Skiff logs ({s.name})", s.logs_tail(30)))


def _start(stack: Stack) -> Stack:
    try:
        return stack.start()
    except StackStartError as err:
        message = str(err)
    pytest.fail(f"Skiff stack did not start: {message}", pytrace=False)


@pytest.fixture(scope="session")
def stack(request):
    s = _start(Stack(name="shared"))
    yield s
    problems = s.stop(keep_logs=request.session.testsfailed > 0)
    assert not problems, f"shared stack shutdown: {problems}"


@pytest.fixture(scope="session")
def admin(stack):
    return stack.signup_admin()


@pytest.fixture(scope="session")
def open_signup(stack, admin):
    stack.set_admin_config(admin["token"], ENABLE_SIGNUP=True)
    return True


@pytest.fixture
def make_user(stack, admin, open_signup):
    def factory(role: str = "user", name: str | None = None) -> dict:
        return stack.create_user(admin["token"], role=role, name=name)

    return factory


@pytest.fixture
def make_stack(request):
    stacks: list[Stack] = []
    request.node._skiff_stacks = stacks

    def factory(**env) -> Stack:
        s = _start(Stack(env=env, name=request.node.name[:40].replace("/", "_").replace("[", "_").replace("]", "")))
        stacks.append(s)
        return s

    yield factory
    rep = getattr(request.node, "rep_call", None)
    failed = bool(rep and rep.failed)
    problems: list[str] = []
    for s in reversed(stacks):
        problems += s.stop(keep_logs=failed)
    assert not problems, f"stack shutdown: {problems}"
