// Owns the SQL of groups and their members.
import Foundation
import Logging
import PostgresNIO
import Shared

/// A group as the real server's `GroupResponse` sends it.
struct GroupRecord: Codable, Sendable {
    var parentGroupID: String?
    var id: String
    var userID: String
    var name: String
    var description: String
    var data: JSONValue?
    var meta: JSONValue?
    var permissions: JSONValue?
    var createdAt: Int
    var updatedAt: Int
    var memberCount: Int?

    enum CodingKeys: String, CodingKey {
        case id, name, description, data, meta, permissions
        case parentGroupID = "parent_group_id"
        case userID = "user_id"
        case createdAt = "created_at"
        case updatedAt = "updated_at"
        case memberCount = "member_count"
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(parentGroupID, forKey: .parentGroupID)
        try c.encode(id, forKey: .id)
        try c.encode(userID, forKey: .userID)
        try c.encode(name, forKey: .name)
        try c.encode(description, forKey: .description)
        try c.encode(data ?? .null, forKey: .data)
        try c.encode(meta ?? .null, forKey: .meta)
        try c.encode(permissions ?? .null, forKey: .permissions)
        try c.encode(createdAt, forKey: .createdAt)
        try c.encode(updatedAt, forKey: .updatedAt)
        try c.encodeIfPresent(memberCount, forKey: .memberCount)
    }
}

struct GroupStore: Sendable {
    let postgres: PostgresClient
    let logger: Logger

    private static let select = """
        SELECT (to_jsonb(g) || jsonb_build_object('member_count',
            (SELECT count(*) FROM auth.group_members m WHERE m.group_id = g.id)))::text FROM auth.groups g
        """

    func all() async throws -> [GroupRecord] {
        try await records(postgres.query("\(unescaped: Self.select) ORDER BY g.updated_at DESC, g.id", logger: logger))
    }

    /// Groups the user belongs to.
    func groups(ofUser userID: String) async throws -> [GroupRecord] {
        try await records(
            postgres.query(
                """
                \(unescaped: Self.select) WHERE g.id IN (SELECT group_id FROM auth.group_members WHERE user_id = \(userID))
                ORDER BY g.updated_at DESC, g.id
                """, logger: logger))
    }

    /// The group, read on the caller's transaction when given one.
    func find(id: String, on connection: PostgresConnection? = nil) async throws -> GroupRecord? {
        let query: PostgresQuery = "\(unescaped: Self.select) WHERE g.id = \(id)"
        if let connection { return try await records(connection.query(query, logger: logger)).first }
        return try await records(postgres.query(query, logger: logger)).first
    }

    /// Whether `groupID` is `parentID` or one of its ancestors, so that making `parentID` its parent would close
    /// a loop. `UNION` (not `UNION ALL`) ends the walk even on a loop already stored.
    func isSelfOrAncestor(_ groupID: String, of parentID: String, on connection: PostgresConnection) async throws -> Bool {
        let rows = try await connection.query(
            """
            WITH RECURSIVE chain(id) AS (
                SELECT \(parentID)::text
                UNION
                SELECT g.parent_group_id FROM auth.groups g JOIN chain c ON g.id = c.id WHERE g.parent_group_id IS NOT NULL)
            SELECT EXISTS (SELECT 1 FROM chain WHERE id = \(groupID))
            """, logger: logger)
        for try await found in rows.decode(Bool.self) { return found }
        return false
    }

    /// Group ids of each user, for the user list's `group_ids`.
    func groupIDs(ofUsers userIDs: [String]) async throws -> [String: [String]] {
        let rows = try await postgres.query(
            """
            SELECT m.user_id, m.group_id FROM auth.group_members m JOIN auth.groups g ON g.id = m.group_id
            WHERE m.user_id = ANY(\(userIDs)) ORDER BY g.updated_at DESC, g.id
            """, logger: logger)
        var result: [String: [String]] = [:]
        for try await (user, group) in rows.decode((String, String).self) { result[user, default: []].append(group) }
        return result
    }

    /// Permission grants of the user's groups.
    func permissionGrants(ofUser userID: String) async throws -> [JSONValue] {
        let rows = try await postgres.query(
            """
            SELECT g.permissions::text FROM auth.groups g JOIN auth.group_members m ON m.group_id = g.id
            WHERE m.user_id = \(userID) AND g.permissions IS NOT NULL ORDER BY g.updated_at DESC, g.id
            """, logger: logger)
        var grants: [JSONValue] = []
        for try await text in rows.decode(String.self) { if let value = JSONValue.parse(text) { grants.append(value) } }
        return grants
    }

    func insert(_ group: GroupRecord, on connection: PostgresConnection) async throws {
        try await connection.query(
            """
            INSERT INTO auth.groups (id, user_id, name, description, parent_group_id, data, meta, permissions, created_at, updated_at)
            VALUES (\(group.id), \(group.userID), \(group.name), \(group.description), \(group.parentGroupID),
                    \(group.data?.jsonText)::jsonb, \(group.meta?.jsonText)::jsonb, \(group.permissions?.jsonText)::jsonb,
                    \(group.createdAt), \(group.updatedAt))
            """, logger: logger)
    }

    func update(_ group: GroupRecord, on connection: PostgresConnection) async throws {
        try await connection.query(
            """
            UPDATE auth.groups SET name = \(group.name), description = \(group.description),
                parent_group_id = \(group.parentGroupID), data = \(group.data?.jsonText)::jsonb,
                permissions = \(group.permissions?.jsonText)::jsonb, updated_at = \(group.updatedAt)
            WHERE id = \(group.id)
            """, logger: logger)
    }

    /// Adds the existing users among `userIDs`; unknown ids are skipped.
    func addMembers(_ userIDs: [String], groupID: String, on connection: PostgresConnection) async throws {
        let now = Int(Date().timeIntervalSince1970)
        try await connection.query(
            """
            INSERT INTO auth.group_members (group_id, user_id, created_at)
            SELECT \(groupID), u.id, \(now) FROM auth.users u WHERE u.id = ANY(\(userIDs))
            ON CONFLICT DO NOTHING
            """, logger: logger)
        try await touch(groupID, on: connection)
    }

    func removeMembers(_ userIDs: [String], groupID: String, on connection: PostgresConnection) async throws {
        try await connection.query(
            "DELETE FROM auth.group_members WHERE group_id = \(groupID) AND user_id = ANY(\(userIDs))", logger: logger)
        try await touch(groupID, on: connection)
    }

    private func touch(_ groupID: String, on connection: PostgresConnection) async throws {
        let now = Int(Date().timeIntervalSince1970)
        try await connection.query("UPDATE auth.groups SET updated_at = \(now) WHERE id = \(groupID)", logger: logger)
    }

    /// Deletes the group; its children move up to its parent.
    func delete(_ group: GroupRecord, on connection: PostgresConnection) async throws {
        try await connection.query(
            "UPDATE auth.groups SET parent_group_id = \(group.parentGroupID) WHERE parent_group_id = \(group.id)",
            logger: logger)
        try await connection.query("DELETE FROM auth.groups WHERE id = \(group.id)", logger: logger)
    }

    /// Direct members as users.
    func members(groupID: String, users: UserStore) async throws -> [UserRecord] {
        let rows = try await postgres.query(
            """
            SELECT row_to_json(u)::text FROM auth.users u JOIN auth.group_members m ON m.user_id = u.id
            WHERE m.group_id = \(groupID) ORDER BY u.name, u.id
            """, logger: logger)
        var result: [UserRecord] = []
        for try await json in rows.decode(String.self) { result.append(try users.decode(json)) }
        return result
    }

    private func records(_ rows: PostgresRowSequence) async throws -> [GroupRecord] {
        var result: [GroupRecord] = []
        for try await json in rows.decode(String.self) {
            result.append(try JSONDecoder().decode(GroupRecord.self, from: Data(json.utf8)))
        }
        return result
    }
}
