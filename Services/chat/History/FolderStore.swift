// Owns the SQL of folders. A folder belongs to one user; names are unique per parent, case-insensitively.
import Foundation
import Logging
import PostgresNIO
import Shared

struct FolderRow: Sendable {
    var id: String
    var parentID: String?
    var name: String
    var meta: JSONValue?
    var isExpanded: Bool
    var createdAt: Int
    var updatedAt: Int
}

struct FolderStore: Sendable {
    let postgres: PostgresClient
    let logger: Logger

    /// `FolderModel` as the real server sends it.
    static let folderJSON = """
        json_build_object('id', f.id, 'parent_id', f.parent_id, 'user_id', f.user_id, 'name', f.name,
            'items', f.items, 'meta', f.meta, 'data', f.data, 'is_expanded', f.is_expanded,
            'created_at', f.created_at, 'updated_at', f.updated_at)
        """

    /// The folder as JSON text, when the user owns it.
    func json(id: String, userID: String, on connection: PostgresConnection) async throws -> String? {
        let rows = try await connection.query(
            "SELECT \(unescaped: Self.folderJSON)::text FROM chat.folders f WHERE f.id = \(id) AND f.user_id = \(userID)",
            logger: logger)
        for try await text in rows.decode(String.self) { return text }
        return nil
    }

    func json(id: String, userID: String) async throws -> String? {
        try await postgres.withConnection { try await json(id: id, userID: userID, on: $0) }
    }

    func exists(id: String, userID: String, on connection: PostgresConnection) async throws -> Bool {
        let rows = try await connection.query(
            "SELECT 1 FROM chat.folders WHERE id = \(id) AND user_id = \(userID)", logger: logger)
        for try await _ in rows { return true }
        return false
    }

    /// Whether any other folder of the user under `parentID` has this name, ignoring case.
    func nameTaken(
        _ name: String, parentID: String?, userID: String, excluding: String? = nil, on connection: PostgresConnection
    ) async throws -> Bool {
        let rows = try await connection.query(
            """
            SELECT 1 FROM chat.folders WHERE user_id = \(userID) AND parent_id IS NOT DISTINCT FROM \(parentID)
            AND lower(name) = lower(\(name)) AND id IS DISTINCT FROM \(excluding) LIMIT 1
            """, logger: logger)
        for try await _ in rows { return true }
        return false
    }

    /// Serialises a user's folder changes, so concurrent creates cannot both pass the name check.
    func lockUser(_ userID: String, on connection: PostgresConnection) async throws {
        try await connection.query("SELECT pg_advisory_xact_lock(hashtext('chat.folders:' || \(userID)))", logger: logger)
    }

    func insert(
        id: String, userID: String, name: String, parentID: String?, meta: JSONValue?, data: JSONValue?, now: Int,
        on connection: PostgresConnection
    ) async throws {
        try await connection.query(
            """
            INSERT INTO chat.folders (id, parent_id, user_id, name, meta, data, is_expanded, created_at, updated_at)
            VALUES (\(id), \(parentID), \(userID), \(name), \(meta?.jsonText)::jsonb, \(data?.jsonText)::jsonb, false,
                \(now), \(now))
            """, logger: logger)
    }

    /// All folders of a user, or the one with id `only`.
    func rows(userID: String, only: String? = nil, on connection: PostgresConnection) async throws -> [FolderRow] {
        let rows = try await connection.query(
            """
            SELECT id, parent_id, name, meta::text, is_expanded, created_at, updated_at FROM chat.folders
            WHERE user_id = \(userID) AND (\(only)::text IS NULL OR id = \(only)) ORDER BY created_at, id
            """, logger: logger)
        var result: [FolderRow] = []
        for try await (id, parent, name, meta, expanded, created, updated) in rows.decode(
            (String, String?, String, String?, Bool, Int, Int).self)
        {
            result.append(
                FolderRow(
                    id: id, parentID: parent, name: name, meta: meta.flatMap(JSONValue.parse), isExpanded: expanded,
                    createdAt: created, updatedAt: updated))
        }
        return result
    }

    /// Unread chats of every folder the user owns, each counting its subfolders.
    func unreadTotals(userID: String, on connection: PostgresConnection) async throws -> [String: Int] {
        let folders = try await rows(userID: userID, on: connection)
        let direct = try await unreadCounts(userID: userID, on: connection)
        return FolderTree.subtreeTotals(parents: FolderTree.parents(folders), direct: direct)
    }

    /// Unread chats directly in each folder (not archived, changed since the user last read them).
    func unreadCounts(userID: String, on connection: PostgresConnection) async throws -> [String: Int] {
        let rows = try await connection.query(
            """
            SELECT folder_id, count(*)::bigint FROM chat.chats WHERE user_id = \(userID) AND folder_id IS NOT NULL
            AND NOT archived AND updated_at > coalesce(last_read_at, 0) GROUP BY folder_id
            """, logger: logger)
        var result: [String: Int] = [:]
        for try await (id, count) in rows.decode((String, Int).self) { result[id] = count }
        return result
    }

    func setParent(ids: [String], parentID: String?, userID: String, now: Int, on connection: PostgresConnection) async throws {
        try await connection.query(
            """
            UPDATE chat.folders SET parent_id = \(parentID), updated_at = \(now)
            WHERE user_id = \(userID) AND id = ANY(\(ids))
            """, logger: logger)
    }

    func update(
        id: String, userID: String, name: String?, meta: JSONValue?, data: JSONValue?, now: Int,
        on connection: PostgresConnection
    ) async throws {
        try await connection.query(
            """
            UPDATE chat.folders SET name = coalesce(\(name), name),
                meta = CASE WHEN \(meta?.jsonText)::jsonb IS NULL THEN meta ELSE coalesce(meta, '{}') || \(meta?.jsonText)::jsonb END,
                data = CASE WHEN \(data?.jsonText)::jsonb IS NULL THEN data ELSE coalesce(data, '{}') || \(data?.jsonText)::jsonb END,
                updated_at = \(now)
            WHERE id = \(id) AND user_id = \(userID)
            """, logger: logger)
    }

    func setExpanded(id: String, userID: String, expanded: Bool, now: Int, on connection: PostgresConnection) async throws {
        try await connection.query(
            """
            UPDATE chat.folders SET is_expanded = \(expanded), updated_at = \(now) WHERE id = \(id) AND user_id = \(userID)
            """, logger: logger)
    }

    /// The folder and every folder below it (the user's tree), the folder first.
    func subtree(of id: String, userID: String, on connection: PostgresConnection) async throws -> [String] {
        let rows = try await connection.query(
            """
            WITH RECURSIVE tree(id) AS (
                SELECT id FROM chat.folders WHERE id = \(id) AND user_id = \(userID)
                UNION
                SELECT f.id FROM chat.folders f JOIN tree t ON f.parent_id = t.id WHERE f.user_id = \(userID)
            ) SELECT id FROM tree
            """, logger: logger)
        var result: [String] = []
        for try await id in rows.decode(String.self) { result.append(id) }
        return result
    }

    func delete(ids: [String], userID: String, on connection: PostgresConnection) async throws {
        try await connection.query(
            "DELETE FROM chat.folders WHERE user_id = \(userID) AND id = ANY(\(ids))", logger: logger)
    }
}

enum FolderTree {
    /// The folder and every folder below it, from the parent links of the user's folders.
    static func subtree(of root: String, parents: [String: String?]) -> Set<String> {
        var result: Set<String> = [root]
        var grew = true
        while grew {
            grew = false
            for (id, parent) in parents where !result.contains(id) {
                if let parent, result.contains(parent) {
                    result.insert(id)
                    grew = true
                }
            }
        }
        return result
    }

    static func parents(_ folders: [FolderRow]) -> [String: String?] {
        Dictionary(uniqueKeysWithValues: folders.map { ($0.id, $0.parentID) })
    }

    /// Each folder's count plus the counts of every folder below it; every folder appears, zeros included.
    static func subtreeTotals(parents: [String: String?], direct: [String: Int]) -> [String: Int] {
        var totals = parents.mapValues { _ in 0 }
        for (id, count) in direct where parents[id] != nil {
            var current: String? = id
            var seen: Set<String> = []
            while let folder = current, !seen.contains(folder), let parent = parents[folder] {
                seen.insert(folder)
                totals[folder, default: 0] += count
                current = parent
            }
        }
        return totals
    }
}
