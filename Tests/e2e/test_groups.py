"""Groups: create, list, get, update, members, delete; who may do what; unknown ids."""

from __future__ import annotations

import uuid

from stacklib import ACCESS_PROHIBITED, GROUP_NOT_FOUND, NOT_FOUND, expect_error, expect_ok

GROUP_KEYS = {"id", "user_id", "name", "description", "data", "meta", "permissions", "created_at", "updated_at",
              "member_count"}


def create_group(stack, admin, name=None, description="a test group"):
    name = name or "Team " + uuid.uuid4().hex[:8]
    body = expect_ok(stack.post("/api/v1/groups/create", admin["token"], json={"name": name, "description": description}))
    return body


def test_group_crud(stack, admin):
    name = "Team " + uuid.uuid4().hex[:8]
    group = create_group(stack, admin, name=name, description="first group")
    assert GROUP_KEYS <= group.keys(), group.keys()
    assert group["name"] == name
    assert group["description"] == "first group"
    assert group["user_id"] == admin["id"]
    assert group["member_count"] == 0
    assert isinstance(group["created_at"], int) and isinstance(group["updated_at"], int)
    gid = group["id"]

    listed = expect_ok(stack.get("/api/v1/groups/", admin["token"]))
    assert isinstance(listed, list)
    assert gid in [g["id"] for g in listed]

    got = expect_ok(stack.get(f"/api/v1/groups/id/{gid}", admin["token"]))
    assert got["id"] == gid and got["name"] == name and got["member_count"] == 0

    updated = expect_ok(
        stack.post(f"/api/v1/groups/id/{gid}/update", admin["token"], json={"name": name + " B", "description": "changed"})
    )
    assert updated["id"] == gid
    assert updated["name"] == name + " B"
    assert updated["description"] == "changed"
    got = expect_ok(stack.get(f"/api/v1/groups/id/{gid}", admin["token"]))
    assert got["name"] == name + " B" and got["description"] == "changed"

    assert expect_ok(stack.delete(f"/api/v1/groups/id/{gid}/delete", admin["token"])) is True
    expect_error(stack.get(f"/api/v1/groups/id/{gid}", admin["token"]), 404, NOT_FOUND)
    assert gid not in [g["id"] for g in expect_ok(stack.get("/api/v1/groups/", admin["token"]))]


def test_group_members(stack, admin, make_user):
    alice, bob = make_user(), make_user()
    group = create_group(stack, admin)
    gid = group["id"]

    # A plain user lists only the groups they belong to.
    assert gid not in [g["id"] for g in expect_ok(stack.get("/api/v1/groups/", alice["token"]))]

    body = expect_ok(
        stack.post(f"/api/v1/groups/id/{gid}/users/add", admin["token"], json={"user_ids": [alice["id"], bob["id"]]})
    )
    assert body["id"] == gid
    assert body["member_count"] == 2
    # Adding again, or adding ids of nobody, changes nothing.
    body = expect_ok(
        stack.post(f"/api/v1/groups/id/{gid}/users/add", admin["token"], json={"user_ids": [alice["id"], "no-such-user"]})
    )
    assert body["member_count"] == 2
    assert expect_ok(stack.get(f"/api/v1/groups/id/{gid}", admin["token"]))["member_count"] == 2

    assert gid in [g["id"] for g in expect_ok(stack.get("/api/v1/groups/", alice["token"]))]
    user = expect_ok(stack.get(f"/api/v1/users/{alice['id']}", admin["token"]))
    assert {"id": gid, "name": group["name"]} in user["groups"]
    rows = expect_ok(stack.get("/api/v1/users/", admin["token"], params={"query": alice["email"]}))["users"]
    assert gid in next(u for u in rows if u["id"] == alice["id"])["group_ids"]

    body = expect_ok(stack.post(f"/api/v1/groups/id/{gid}/users/remove", admin["token"], json={"user_ids": [alice["id"]]}))
    assert body["member_count"] == 1
    assert gid not in [g["id"] for g in expect_ok(stack.get("/api/v1/groups/", alice["token"]))]
    assert gid in [g["id"] for g in expect_ok(stack.get("/api/v1/groups/", bob["token"]))]

    assert expect_ok(stack.delete(f"/api/v1/groups/id/{gid}/delete", admin["token"])) is True
    assert gid not in [g["id"] for g in expect_ok(stack.get("/api/v1/groups/", bob["token"]))]
    assert expect_ok(stack.get(f"/api/v1/users/{bob['id']}", admin["token"]))["groups"] == []


def test_deleted_user_leaves_groups(stack, admin, make_user):
    carol = make_user()
    gid = create_group(stack, admin)["id"]
    assert expect_ok(
        stack.post(f"/api/v1/groups/id/{gid}/users/add", admin["token"], json={"user_ids": [carol["id"]]})
    )["member_count"] == 1
    assert expect_ok(stack.delete(f"/api/v1/users/{carol['id']}", admin["token"])) is True
    assert expect_ok(stack.get(f"/api/v1/groups/id/{gid}", admin["token"]))["member_count"] == 0


def test_non_admins_may_not_manage_groups(stack, admin, make_user):
    user = make_user()
    pending = make_user(role="pending")
    gid = create_group(stack, admin)["id"]
    for who in (user, pending):
        t = who["token"]
        expect_error(stack.post("/api/v1/groups/create", t, json={"name": "x", "description": "y"}), 401, ACCESS_PROHIBITED)
        expect_error(stack.get(f"/api/v1/groups/id/{gid}", t), 401, ACCESS_PROHIBITED)
        expect_error(
            stack.post(f"/api/v1/groups/id/{gid}/update", t, json={"name": "x", "description": "y"}), 401, ACCESS_PROHIBITED
        )
        expect_error(
            stack.post(f"/api/v1/groups/id/{gid}/users/add", t, json={"user_ids": [who["id"]]}), 401, ACCESS_PROHIBITED
        )
        expect_error(
            stack.post(f"/api/v1/groups/id/{gid}/users/remove", t, json={"user_ids": [who["id"]]}), 401, ACCESS_PROHIBITED
        )
        expect_error(stack.delete(f"/api/v1/groups/id/{gid}/delete", t), 401, ACCESS_PROHIBITED)
    expect_error(stack.get("/api/v1/groups/", pending["token"]), 401, ACCESS_PROHIBITED)
    assert expect_ok(stack.get("/api/v1/groups/", user["token"])) == []
    expect_error(stack.get("/api/v1/groups/"), 401, "Not authenticated")
    # Nothing changed.
    assert expect_ok(stack.get(f"/api/v1/groups/id/{gid}", admin["token"]))["member_count"] == 0


def test_unknown_group_id(stack, admin):
    t = admin["token"]
    gid = str(uuid.uuid4())
    expect_error(stack.get(f"/api/v1/groups/id/{gid}", t), 404, NOT_FOUND)
    expect_error(stack.post(f"/api/v1/groups/id/{gid}/update", t, json={"name": "x", "description": "y"}), 404, GROUP_NOT_FOUND)
    expect_error(stack.post(f"/api/v1/groups/id/{gid}/users/add", t, json={"user_ids": [admin["id"]]}), 404, GROUP_NOT_FOUND)
    expect_error(stack.post(f"/api/v1/groups/id/{gid}/users/remove", t, json={"user_ids": [admin["id"]]}), 404, GROUP_NOT_FOUND)
    expect_error(stack.delete(f"/api/v1/groups/id/{gid}/delete", t), 404, GROUP_NOT_FOUND)
