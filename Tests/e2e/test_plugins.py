"""Tools and functions (/api/v1/tools, /api/v1/functions) through the gateway: stored, never run. Shapes of the
real 0.12.4 server (ToolResponse, ToolModel, ToolUserResponse with its extra keys, FunctionResponse with `type`
before `name`, FunctionModel), the id rule and its texts, access by owner and grants, valves and user valves,
the version history and its diff, and the routes that would need the Python code loaded (400 with a detail).
"""

from __future__ import annotations

import difflib
import uuid

from stacklib import expect_422, expect_error, expect_ok
from test_prompts import grant_permissions

TOOLS = "/api/v1/tools"
FUNCTIONS = "/api/v1/functions"
TOOL_RESPONSE = ["version_id", "id", "user_id", "name", "meta", "access_grants", "updated_at", "created_at"]
TOOL_MODEL = ["version_id", "id", "user_id", "name", "content", "specs", "meta", "access_grants", "updated_at",
              "created_at"]
FUNCTION_RESPONSE = ["version_id", "id", "user_id", "type", "name", "meta", "is_active", "is_global", "updated_at",
                     "created_at"]
FUNCTION_MODEL = ["version_id", "id", "user_id", "name", "type", "content", "meta", "is_active", "is_global",
                  "updated_at", "created_at"]
NOT_FOUND = "We could not find what you're looking for :/"
PROHIBITED = ("You do not have permission to access this resource. Please contact your administrator for "
              "assistance.")
ID_RULE = "Only alphanumeric characters and underscores are allowed in the id"
ID_TAKEN = "Uh-oh! This id is already registered. Please choose another id string."

TOOL_CODE = '''"""
title: Calculator
author: skiff
version: 0.1
"""
from utils.misc import x


class Tools:
    class UserValves(BaseModel):
        unit: str = "m"

    def add(self, a: int, b: int) -> int:
        """Add two numbers."""
        return a + b
'''

FILTER_CODE = '''"""
title: Upper Filter
"""


class Filter:
    def __init__(self):
        self.toggle = True

    def inlet(self, body: dict) -> dict:
        return body
'''


def tool_id() -> str:
    return f"calc_{uuid.uuid4().hex[:8]}"


def test_tool_lifecycle_and_shapes(stack, admin):
    tid = tool_id()
    made = expect_ok(stack.post(f"{TOOLS}/create", admin["token"], json={
        "id": tid.upper(), "name": "Calculator", "content": TOOL_CODE, "meta": {"description": "adds", "extra": 1}}))
    assert list(made) == TOOL_RESPONSE and made["id"] == tid, "ids are lowercased"
    assert made["meta"]["description"] == "adds" and made["meta"]["manifest"] == {
        "title": "Calculator", "author": "skiff", "version": "0.1"}
    assert made["meta"]["has_user_valves"] is True and made["meta"]["extra"] == 1
    assert list(made["meta"])[:4] == ["i18n", "description", "manifest", "has_user_valves"]
    assert made["version_id"]

    got = expect_ok(stack.get(f"{TOOLS}/id/{tid}", admin["token"]))
    assert list(got) == TOOL_RESPONSE + ["user", "write_access", "content", "specs"]
    assert "from open_webui.utils.misc import x" in got["content"], "import paths rewritten as the original"
    listed = [t for t in expect_ok(stack.get(f"{TOOLS}/", admin["token"])) if t["id"] == tid][0]
    assert list(listed) == TOOL_RESPONSE + ["user", "content", "specs", "has_user_valves"]
    assert listed["content"] is None and listed["user"]["id"] == admin["id"] and listed["has_user_valves"] is True
    item = [t for t in expect_ok(stack.get(f"{TOOLS}/list", admin["token"])) if t["id"] == tid][0]
    assert list(item) == TOOL_RESPONSE + ["user", "write_access", "content", "specs"]
    assert [t["id"] for t in expect_ok(stack.get(f"{TOOLS}/", admin["token"], params={"query": "CALCUL"}))].count(tid) == 1
    exported = [t for t in expect_ok(stack.get(f"{TOOLS}/export", admin["token"])) if t["id"] == tid][0]
    assert list(exported) == TOOL_MODEL

    # Id rules and texts.
    expect_error(stack.post(f"{TOOLS}/create", admin["token"], json={
        "id": tid, "name": "x", "content": TOOL_CODE, "meta": {}}), 400, ID_TAKEN)
    expect_error(stack.post(f"{TOOLS}/create", admin["token"], json={
        "id": "bad-id", "name": "x", "content": TOOL_CODE, "meta": {}}), 400, ID_RULE)
    expect_error(stack.post(f"{TOOLS}/create", admin["token"], json={
        "id": tool_id(), "name": "x", "content": "def (:", "meta": {}}), 400, "[ERROR: Error creating tool]")
    expect_422(stack.post(f"{TOOLS}/create", admin["token"], json={"id": tool_id(), "name": "x", "content": "c"}),
               ["body", "meta"], "missing")

    # Update: a new version whose diff is Python's unified diff of the code.
    new_code = TOOL_CODE.replace("return a + b", "return b + a")
    updated = expect_ok(stack.post(f"{TOOLS}/id/{tid}/update", admin["token"], json={
        "id": tid, "name": "Calc", "content": new_code, "meta": {"description": "adds", "extra": 1},
        "commit_message": "swap"}))
    assert list(updated) == TOOL_MODEL and updated["version_id"] != made["version_id"] and updated["name"] == "Calc"
    entries = expect_ok(stack.get(f"{TOOLS}/id/{tid}/history", admin["token"]))
    assert [e["id"] for e in entries] == [updated["version_id"], made["version_id"]]
    assert list(entries[0]) == ["id", "tool_id", "parent_id", "user_id", "commit_message", "created_at", "user"]
    assert entries[0]["user"] == {"name": admin["name"]} and entries[0]["parent_id"] == made["version_id"]
    entry = expect_ok(stack.get(f"{TOOLS}/id/{tid}/history/{made['version_id']}", admin["token"]))
    assert list(entry)[-1] == "snapshot" and list(entry["snapshot"]) == ["name", "content", "meta"]
    diff = expect_ok(stack.get(f"{TOOLS}/id/{tid}/history/diff", admin["token"], params={
        "from_id": made["version_id"], "to_id": updated["version_id"]}))
    old = entry["snapshot"]["content"]
    new = expect_ok(stack.get(f"{TOOLS}/id/{tid}", admin["token"]))["content"]
    assert diff["content_diff"] == "\n".join(difflib.unified_diff(
        old.splitlines(), new.splitlines(), fromfile="selected.py", tofile="production.py", lineterm=""))
    assert diff["metadata"] == {"name": {"before": "Calculator", "after": "Calc"}}
    expect_error(stack.delete(f"{TOOLS}/id/{tid}/history/{updated['version_id']}", admin["token"]), 400,
                 "Cannot delete the current version")
    expect_error(stack.get(f"{TOOLS}/id/{tid}/history/nope", admin["token"]), 404, "Version not found")
    back = expect_ok(stack.post(f"{TOOLS}/id/{tid}/update/version", admin["token"], json={
        "version_id": made["version_id"]}))
    assert back["version_id"] == made["version_id"] and back["name"] == "Calculator" and "a + b" in back["content"]
    assert expect_ok(stack.delete(f"{TOOLS}/id/{tid}/history/{updated['version_id']}", admin["token"])) is True

    # Valves and user valves are stored JSON; specs need the code loaded.
    assert expect_ok(stack.get(f"{TOOLS}/id/{tid}/valves", admin["token"])) == {}
    assert expect_ok(stack.post(f"{TOOLS}/id/{tid}/valves/update", admin["token"], json={"key": "v", "n": None})) == {
        "key": "v"}
    assert expect_ok(stack.get(f"{TOOLS}/id/{tid}/valves", admin["token"])) == {"key": "v"}
    assert expect_ok(stack.post(f"{TOOLS}/id/{tid}/valves/user/update", admin["token"], json={"unit": "km"})) == {
        "unit": "km"}
    assert expect_ok(stack.get(f"{TOOLS}/id/{tid}/valves/user", admin["token"])) == {"unit": "km"}
    r = stack.get(f"{TOOLS}/id/{tid}/valves/spec", admin["token"])
    assert r.status_code == 400 and "does not run" in r.json()["detail"]
    expect_422(stack.post(f"{TOOLS}/id/{tid}/valves/update", admin["token"], json=[1, 2]), ["body"])

    assert expect_ok(stack.delete(f"{TOOLS}/id/{tid}/delete", admin["token"])) is True
    expect_error(stack.get(f"{TOOLS}/id/{tid}", admin["token"]), 404, NOT_FOUND)
    expect_error(stack.delete(f"{TOOLS}/id/{tid}/delete", admin["token"]), 401, NOT_FOUND)


def test_tool_access(stack, admin, make_user):
    alice, bob, pending = make_user(), make_user(), make_user(role="pending")
    expect_error(stack.post(f"{TOOLS}/create", bob["token"], json={
        "id": tool_id(), "name": "x", "content": TOOL_CODE, "meta": {}}), 401, "401 Unauthorized")
    expect_error(stack.get(f"{TOOLS}/", pending["token"]), 401, PROHIBITED)
    grant_permissions(stack, admin, alice, {"workspace": {"tools": True}})
    tid = tool_id()
    mine = expect_ok(stack.post(f"{TOOLS}/create", alice["token"], json={
        "id": tid, "name": "Mine", "content": TOOL_CODE, "meta": {},
        "access_grants": [{"principal_type": "user", "principal_id": bob["id"], "permission": "read"}]}))
    assert mine["access_grants"] == []
    expect_error(stack.get(f"{TOOLS}/id/{tid}", bob["token"]), 401, PROHIBITED)
    expect_error(stack.post(f"{TOOLS}/id/{tid}/update", bob["token"], json={
        "id": tid, "name": "x", "content": TOOL_CODE, "meta": {}}), 401, "401 Unauthorized")
    expect_error(stack.get(f"{TOOLS}/id/{tid}/history", bob["token"]), 401, PROHIBITED)
    assert tid not in [t["id"] for t in expect_ok(stack.get(f"{TOOLS}/", bob["token"]))]

    # The admin shares it with bob for reading: he sees it without its code.
    expect_ok(stack.post(f"{TOOLS}/id/{tid}/access/update", admin["token"], json={"access_grants": [
        {"principal_type": "user", "principal_id": bob["id"], "permission": "read"}]}))
    seen = expect_ok(stack.get(f"{TOOLS}/id/{tid}", bob["token"]))
    assert seen["write_access"] is False and "content" not in seen
    assert tid in [t["id"] for t in expect_ok(stack.get(f"{TOOLS}/", bob["token"]))]
    assert expect_ok(stack.get(f"{TOOLS}/id/{tid}/valves/user", bob["token"])) == {}
    expect_error(stack.get(f"{TOOLS}/id/{tid}/valves", bob["token"]), 401, PROHIBITED)
    expect_error(stack.post(f"{TOOLS}/id/{tid}/valves/update", bob["token"], json={"a": 1}), 400, PROHIBITED)
    expect_error(stack.post(f"{TOOLS}/id/{tid}/access/update", alice["token"], json={"access_grants": [
        {"principal_type": "user", "principal_id": "*", "permission": "read"}]}), 403,
        "You do not have permission to share with the requested audience")
    # Exports need tools_export.
    expect_error(stack.get(f"{TOOLS}/export", alice["token"]), 401, "401 Unauthorized")


def test_functions(stack, admin, make_user):
    user = make_user()
    fid = f"upper_{uuid.uuid4().hex[:8]}"
    made = expect_ok(stack.post(f"{FUNCTIONS}/create", admin["token"], json={
        "id": fid, "name": "Upper", "content": FILTER_CODE, "meta": {"description": "noop filter"}}))
    assert list(made) == FUNCTION_RESPONSE and made["type"] == "filter"
    assert made["meta"] == {"description": "noop filter", "manifest": {"title": "Upper Filter"}, "toggle": True}
    assert made["is_active"] is False and made["is_global"] is False
    expect_error(stack.post(f"{FUNCTIONS}/create", admin["token"], json={
        "id": f"x{uuid.uuid4().hex[:6]}", "name": "Bad", "content": "def (:", "meta": {}}), 400,
        "[ERROR: Error creating function]")
    expect_error(stack.post(f"{FUNCTIONS}/create", user["token"], json={
        "id": "x", "name": "x", "content": FILTER_CODE, "meta": {}}), 401, PROHIBITED)

    # Every signed-in user lists them (no code); only admins read one.
    listed = [f for f in expect_ok(stack.get(f"{FUNCTIONS}/", user["token"])) if f["id"] == fid]
    assert len(listed) == 1 and list(listed[0]) == FUNCTION_RESPONSE
    expect_error(stack.get(f"{FUNCTIONS}/id/{fid}", user["token"]), 401, PROHIBITED)
    got = expect_ok(stack.get(f"{FUNCTIONS}/id/{fid}", admin["token"]))
    assert list(got) == FUNCTION_MODEL and got["content"] == FILTER_CODE
    admin_list = [f for f in expect_ok(stack.get(f"{FUNCTIONS}/list", admin["token"])) if f["id"] == fid][0]
    assert list(admin_list) == FUNCTION_RESPONSE + ["user"]
    expect_error(stack.get(f"{FUNCTIONS}/id/nope", admin["token"]), 401, NOT_FOUND)

    assert expect_ok(stack.post(f"{FUNCTIONS}/id/{fid}/toggle", admin["token"]))["is_active"] is True
    assert expect_ok(stack.post(f"{FUNCTIONS}/id/{fid}/toggle/global", admin["token"]))["is_global"] is True
    assert expect_ok(stack.post(f"{FUNCTIONS}/id/{fid}/valves/user/update", user["token"], json={"x": 1})) == {"x": 1}
    assert expect_ok(stack.get(f"{FUNCTIONS}/id/{fid}/valves/user", user["token"])) == {"x": 1}
    assert expect_ok(stack.get(f"{FUNCTIONS}/id/{fid}/valves/user", admin["token"])) == {}
    assert expect_ok(stack.post(f"{FUNCTIONS}/id/{fid}/valves/update", admin["token"], json={"p": 2})) == {"p": 2}
    with_valves = [f for f in expect_ok(stack.get(f"{FUNCTIONS}/export", admin["token"], params={
        "include_valves": "true"})) if f["id"] == fid][0]
    assert with_valves["valves"] == {"p": 2} and list(with_valves)[7] == "valves"

    pipe = FILTER_CODE.replace("class Filter:", "class Pipe:")
    updated = expect_ok(stack.post(f"{FUNCTIONS}/id/{fid}/update", admin["token"], json={
        "id": fid, "name": "Upper", "content": pipe, "meta": {"description": "now a pipe"}}))
    assert updated["type"] == "pipe" and updated["meta"]["toggle"] is False
    expect_error(stack.post(f"{FUNCTIONS}/id/nope/update", admin["token"], json={
        "id": "nope", "name": "x", "content": pipe, "meta": {}}), 400, "Function not found")
    entries = expect_ok(stack.get(f"{FUNCTIONS}/id/{fid}/history", admin["token"]))
    assert len(entries) == 2 and list(entries[0])[1] == "function_id"
    r = stack.post(f"{FUNCTIONS}/sync", admin["token"], json={"functions": []})
    assert r.status_code == 400 and "does not run" in r.json()["detail"]
    assert expect_ok(stack.delete(f"{FUNCTIONS}/id/{fid}/delete", admin["token"])) is True
    assert expect_ok(stack.delete(f"{FUNCTIONS}/id/{fid}/delete", admin["token"])) is True
    assert fid not in [f["id"] for f in expect_ok(stack.get(f"{FUNCTIONS}/", user["token"]))]


SKILLS = "/api/v1/skills"
SKILL_RESPONSE = ["version_id", "id", "user_id", "name", "description", "meta", "is_active", "access_grants",
                  "updated_at", "created_at"]
SKILL_MODEL = ["id", "user_id", "name", "description", "content", "data", "version_id", "meta", "is_active",
               "access_grants", "updated_at", "created_at"]


def test_skills(stack, admin, make_user):
    bob = make_user()
    word = uuid.uuid4().hex[:8]
    sid = f"Writer {word}"
    made = expect_ok(stack.post(f"{SKILLS}/create", admin["token"], json={
        "id": sid, "name": f"Writer {word}", "description": "writes", "content": "# Writer\nWrite well.",
        "meta": {"tags": ["w"], "dropped": 1}}))
    assert list(made) == SKILL_RESPONSE and made["id"] == f"writer-{word}"
    assert made["meta"] == {"i18n": None, "tags": ["w"]} and made["is_active"] is True
    sid = made["id"]
    expect_error(stack.post(f"{SKILLS}/create", admin["token"], json={"id": sid, "name": "other"}), 400, ID_TAKEN)
    expect_error(stack.post(f"{SKILLS}/create", admin["token"], json={"id": f"x-{word}", "name": made["name"]}), 409,
                 "A skill with this name already exists")
    expect_error(stack.post(f"{SKILLS}/create", admin["token"], json={"id": "bad/id", "name": "x"}), 400,
                 "[ERROR: Invalid skill ID]")
    expect_error(stack.post(f"{SKILLS}/create", admin["token"], json={
        "id": f"y-{word}", "name": f"y {word}", "files": [{"path": "../x", "content": "a"}]}), 400, "Invalid file path")
    expect_error(stack.post(f"{SKILLS}/create", bob["token"], json={"id": f"z-{word}", "name": "z"}), 401,
                 "401 Unauthorized")

    got = expect_ok(stack.get(f"{SKILLS}/id/{sid}", admin["token"]))
    assert list(got) == SKILL_RESPONSE + ["user", "write_access", "content"] and got["content"].startswith("# Writer")
    assert [s["id"] for s in expect_ok(stack.get(f"{SKILLS}/", admin["token"], params={"query": word}))] == [sid]
    page = expect_ok(stack.get(f"{SKILLS}/list", admin["token"], params={"query": "writes"}))
    assert sid in [s["id"] for s in page["items"]] and list(page["items"][0])[-2:] == ["user", "write_access"]
    expect_error(stack.get(f"{SKILLS}/id/{sid}", bob["token"]), 401, PROHIBITED)
    assert sid not in [s["id"] for s in expect_ok(stack.get(f"{SKILLS}/", bob["token"]))]

    # Files need the version the client saw; a stale one is a 409 with the current version.
    expect_error(stack.post(f"{SKILLS}/id/{sid}/update", admin["token"], json={
        "id": sid, "name": made["name"], "files": [{"path": "SKILL.md", "content": "x"}]}), 400,
        "expected_version_id is required for file updates")
    r = stack.post(f"{SKILLS}/id/{sid}/update", admin["token"], json={
        "id": sid, "name": made["name"], "expected_version_id": "old"})
    assert r.status_code == 409 and r.json()["detail"] == {"code": "version_conflict",
                                                           "current_version_id": made["version_id"]}
    updated = expect_ok(stack.post(f"{SKILLS}/id/{sid}/update", admin["token"], json={
        "id": sid, "name": made["name"], "expected_version_id": made["version_id"],
        "files": [{"path": "SKILL.md", "content": "# v2"}, {"path": "ref/a.txt", "content": "aGk=", "encoding": "base64"}]}))
    assert list(updated) == SKILL_MODEL and updated["content"] == "# v2" and updated["version_id"] != made["version_id"]
    assert [f["path"] for f in updated["data"]["files"]] == ["SKILL.md", "ref/a.txt"]
    listing = expect_ok(stack.get(f"{SKILLS}/id/{sid}/files", admin["token"]))
    assert listing == {"version_id": updated["version_id"], "files": [
        {"path": "SKILL.md", "size": 4, "encoding": None}, {"path": "ref/a.txt", "size": 2, "encoding": "base64"}]}
    raw = stack.get(f"{SKILLS}/id/{sid}/files/content", admin["token"], params={
        "path": "ref/a.txt", "version_id": updated["version_id"]})
    assert raw.status_code == 200 and raw.content == b"hi" and "attachment" in raw.headers["content-disposition"]
    old = expect_ok(stack.get(f"{SKILLS}/id/{sid}/files", admin["token"], params={"version_id": made["version_id"]}))
    assert [f["path"] for f in old["files"]] == ["SKILL.md"]

    entries = expect_ok(stack.get(f"{SKILLS}/id/{sid}/history", admin["token"]))
    assert [e["id"] for e in entries] == [updated["version_id"], made["version_id"]]
    entry = expect_ok(stack.get(f"{SKILLS}/id/{sid}/history/{made['version_id']}", admin["token"]))
    assert entry["snapshot"]["content"].startswith("# Writer")
    back = expect_ok(stack.post(f"{SKILLS}/id/{sid}/update/version", admin["token"], json={
        "version_id": made["version_id"], "expected_version_id": updated["version_id"]}))
    assert back["content"].startswith("# Writer") and back["version_id"] == made["version_id"]

    clone = expect_ok(stack.post(f"{SKILLS}/id/{sid}/clone", admin["token"], json={
        "id": f"copy-{word}", "name": f"Copy {word}", "version_id": updated["version_id"]}))
    assert list(clone) == SKILL_MODEL and clone["content"] == "# v2" and clone["access_grants"] == []
    exported = expect_ok(stack.get(f"{SKILLS}/export", admin["token"], params={"ids": sid}))
    assert list(exported) == ["id", "name", "description", "meta", "files", "is_active"] and exported["id"] == sid

    # Shared with bob for reading, then toggled and deleted.
    expect_ok(stack.post(f"{SKILLS}/id/{sid}/access/update", admin["token"], json={"access_grants": [
        {"principal_type": "user", "principal_id": bob["id"], "permission": "read"}]}))
    assert expect_ok(stack.get(f"{SKILLS}/id/{sid}", bob["token"]))["write_access"] is False
    expect_error(stack.post(f"{SKILLS}/id/{sid}/toggle", bob["token"]), 401, "401 Unauthorized")
    assert expect_ok(stack.post(f"{SKILLS}/id/{sid}/toggle", admin["token"]))["is_active"] is False
    assert expect_ok(stack.delete(f"{SKILLS}/id/{sid}/delete", admin["token"])) is True
    expect_error(stack.get(f"{SKILLS}/id/{sid}", admin["token"]), 404, NOT_FOUND)
    expect_422(stack.post(f"{SKILLS}/create", admin["token"], json={"name": "x"}), ["body", "id"], "missing")


def test_skill_archives_export_and_import(stack, admin, make_user):
    import io
    import json as _json
    import zipfile

    token = admin["token"]
    sid = "arch-" + uuid.uuid4().hex[:8]
    skill_md = f"---\nname: {sid}-pack\ndescription: Packs things\n---\n# Pack\n"
    expect_ok(stack.post(f"{SKILLS}/create", token, json={
        "id": sid, "name": "Archive " + sid, "files": [
            {"path": "SKILL.md", "content": skill_md}, {"path": "scripts/run.py", "content": "print('hi')\n"},
            {"path": "bin/blob.dat", "content": "AAEC/w==", "encoding": "base64"}]}))
    r = stack.get(f"{SKILLS}/export", token, params={"ids": sid, "format": "zip"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert r.headers["content-disposition"] == 'attachment; filename="skills.zip"'
    archive = zipfile.ZipFile(io.BytesIO(r.content))
    assert archive.testzip() is None
    assert sorted(archive.namelist()) == [f"{sid}-pack/SKILL.md", f"{sid}-pack/bin/blob.dat", f"{sid}-pack/scripts/run.py"]
    assert archive.read(f"{sid}-pack/bin/blob.dat") == b"\x00\x01\x02\xff"
    r = stack.get(f"{SKILLS}/export", token, params={"ids": sid, "format": "skill"})
    assert r.headers["content-disposition"] == f'attachment; filename="{sid}.skill"'
    expect_error(stack.get(f"{SKILLS}/export", token, params={"format": "skill"}), 400, "Select one skill to export as .skill")
    expect_error(stack.get(f"{SKILLS}/export", token, params={"format": "tar"}), 400, "Export format must be json, zip, or skill")

    # A zip made by Python (deflated), a Markdown file and a JSON package, previewed then imported.
    other = "imp-" + uuid.uuid4().hex[:8]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{other}/SKILL.md", f"---\nname: {other}\ndescription: From a zip\n---\nBody " * 50)
        z.writestr(f"{other}/notes/readme.txt", "grüße " * 100)
    md_id = "md-" + uuid.uuid4().hex[:8]
    uploads = [("files", ("pack.zip", buffer.getvalue(), "application/zip")),
               ("files", ("single.md", f"---\nname: {md_id}\n---\nhello", "text/markdown")),
               ("files", ("skills.json", _json.dumps({"id": sid, "name": "Archive " + sid, "content": "# new"}),
                          "application/json"))]
    preview = expect_ok(stack.post(f"{SKILLS}/import/preview", token, files=uploads))
    assert [p["id"] for p in preview] == [other, md_id, sid] and [p["index"] for p in preview] == [0, 1, 2]
    assert preview[0]["description"] == "From a zip" and preview[0]["id_taken"] is False
    assert {f["path"] for f in preview[0]["files"]} == {"SKILL.md", "notes/readme.txt"}
    assert preview[2]["id_taken"] is True and preview[2]["name_taken"] is False and preview[2]["can_replace"] is True
    current = preview[2]["expected_version_id"]
    assert current
    decisions = [{"action": "create"}, {"action": "skip"},
                 {"action": "replace", "expected_version_id": current}]
    results = expect_ok(stack.post(f"{SKILLS}/import", token, files=uploads, data={"decisions": _json.dumps(decisions)}))
    assert results == [{"status": "saved", "id": other}, {"status": "skipped", "id": md_id}, {"status": "saved", "id": sid}]
    got = expect_ok(stack.get(f"{SKILLS}/id/{other}", token))
    assert got["description"] == "From a zip"
    files = {f["path"]: f for f in expect_ok(stack.get(f"{SKILLS}/export", token, params={"ids": other}))["files"]}
    assert files["notes/readme.txt"]["content"] == "grüße " * 100
    assert expect_ok(stack.get(f"{SKILLS}/id/{sid}", token))["content"] == "# new"
    # The same again: the id is taken now, and a replace with an old version conflicts.
    again = expect_ok(stack.post(f"{SKILLS}/import", token, files=uploads[:1], data={"decisions": _json.dumps([{"action": "create"}])}))
    assert again[0]["status"] == "error" and again[0]["id"] == other
    stale = expect_ok(stack.post(f"{SKILLS}/import", token, files=uploads[2:],
                                 data={"decisions": _json.dumps([{"action": "replace", "expected_version_id": current}])}))
    assert stale[0]["status"] == "error"

    # Bad uploads get 400s, never 500s.
    expect_error(stack.post(f"{SKILLS}/import/preview", token, files=[("files", ("x.txt", b"hi", "text/plain"))]), 400,
                 "Use JSON, ZIP, .skill, or Markdown")
    r = stack.post(f"{SKILLS}/import/preview", token, files=[("files", ("x.zip", b"PK\x03\x04garbage", "application/zip"))])
    assert r.status_code == 400, r.text
    r = stack.post(f"{SKILLS}/import/preview", token, files=[("files", ("x.json", b"{nope", "application/json"))])
    assert r.status_code == 400, r.text
    empty = io.BytesIO()
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("readme.txt", "no skill here")
    expect_error(stack.post(f"{SKILLS}/import/preview", token, files=[("files", ("e.zip", empty.getvalue(), "application/zip"))]),
                 400, "Archive contains no SKILL.md")
    junk = io.BytesIO()
    with zipfile.ZipFile(junk, "w") as z:
        z.writestr("a/SKILL.md", "x")
        z.writestr("__MACOSX/._a", "x")
    expect_error(stack.post(f"{SKILLS}/import/preview", token, files=[("files", ("j.zip", junk.getvalue(), "application/zip"))]),
                 400, "Archive contains files outside skill directories")
    expect_error(stack.post(f"{SKILLS}/import", token, files=uploads[1:2], data={"decisions": "[]"}), 400,
                 "One decision is required per skill")
    assert stack.post(f"{SKILLS}/import/preview", token, data={"x": "1"}).status_code == 422
    user = make_user()
    expect_error(stack.post(f"{SKILLS}/import/preview", user["token"], files=uploads[1:2]), 403, "Import permission required")


def test_skill_file_operations_and_diffs(stack, admin):
    token = admin["token"]
    sid = "ops-" + uuid.uuid4().hex[:8]
    created = expect_ok(stack.post(f"{SKILLS}/create", token, json={
        "id": sid, "name": "Ops " + sid, "files": [
            {"path": "SKILL.md", "content": "# One\nline a\n"}, {"path": "docs/a.txt", "content": "A"},
            {"path": "docs/b.txt", "content": "B"}, {"path": "old.txt", "content": "gone soon"}]}))
    first = created["version_id"]

    def update(**body):
        return stack.post(f"{SKILLS}/id/{sid}/update", token, json={"id": sid, "name": "Ops " + sid, **body})

    ops = [{"op": "move", "path": "docs", "destination": "guides"}, {"op": "delete", "path": "old.txt"},
           {"op": "put", "path": "SKILL.md", "content": "# One\nline b\n"},
           {"op": "put", "path": "bin/x", "content": "AAE=", "encoding": "base64"}]
    expect_error(update(operations=ops), 400, "expected_version_id is required for file updates")
    saved = expect_ok(update(operations=ops, expected_version_id=first))
    assert [f["path"] for f in saved["data"]["files"]] == ["SKILL.md", "bin/x", "guides/a.txt", "guides/b.txt"]
    second = saved["version_id"]
    assert second != first
    # Failed operations change nothing and answer the original's masked 400.
    for bad in ([{"op": "delete", "path": "SKILL.md"}], [{"op": "delete", "path": "nope"}],
                [{"op": "move", "path": "guides", "destination": "guides/inner"}],
                [{"op": "move", "path": "guides/a.txt", "destination": "guides/b.txt"}], [{"op": "put", "path": "../x", "content": ""}],
                [{"op": "put", "path": "x"}]):
        expect_error(update(operations=bad, expected_version_id=second), 400, "[ERROR: Error updating skill]")
    expect_422(update(operations=[{"op": "rename", "path": "a"}], expected_version_id=second))
    expect_error(update(operations=[], expected_version_id=first), 409)
    assert expect_ok(stack.get(f"{SKILLS}/id/{sid}", token))["version_id"] == second

    diff = expect_ok(stack.get(f"{SKILLS}/id/{sid}/history/diff", token, params={"from_id": first, "to_id": ""}))
    assert diff["metadata"] == {}
    assert diff["files"] == [
        {"path": "SKILL.md", "status": "modified", "binary": False}, {"path": "bin/x", "status": "added", "binary": True},
        {"path": "docs/a.txt", "status": "deleted", "binary": False}, {"path": "docs/b.txt", "status": "deleted", "binary": False},
        {"path": "guides/a.txt", "status": "added", "binary": False}, {"path": "guides/b.txt", "status": "added", "binary": False},
        {"path": "old.txt", "status": "deleted", "binary": False}]
    one = expect_ok(stack.get(f"{SKILLS}/id/{sid}/history/diff/file", token,
                              params={"from_id": first, "to_id": second, "path": "SKILL.md"}))
    old, new = "# One\nline a\n", "# One\nline b\n"
    expected = "\n".join(difflib.unified_diff(old.splitlines(), new.splitlines(), fromfile=f"{first[:7]}/SKILL.md",
                                              tofile=f"{second[:7]}/SKILL.md", lineterm=""))
    assert one == {"binary": False, "diff": expected, "line_endings_only": False}
    assert expect_ok(stack.get(f"{SKILLS}/id/{sid}/history/diff/file", token,
                               params={"from_id": first, "to_id": second, "path": "bin/x"})) == {"binary": True}
    expect_error(stack.get(f"{SKILLS}/id/{sid}/history/diff/file", token,
                           params={"from_id": first, "to_id": second, "path": "none"}), 404, "File not found")
    expect_error(stack.get(f"{SKILLS}/id/{sid}/history/diff", token, params={"from_id": "nope", "to_id": ""}), 404,
                 "Skill version not found")
    expect_422(stack.get(f"{SKILLS}/id/{sid}/history/diff", token, params={"from_id": first}))
