// Knowledge bases, their files and their access grants (schema `retrieval`), and the files retrieval knows of.
import Foundation
import Logging
import PostgresNIO
import Shared

struct KnownFile: Sendable {
    var id: String
    var userID: String
    var filename: String
    var meta: String
    var hash: String?
    var status: String
    var content: String?
    var createdAt: Int
    var updatedAt: Int

    /// `FileMetadataResponse`: `{id, hash, meta, created_at, updated_at}`.
    var metadataJSON: String {
        "{\"id\":" + JSONValue.string(id).jsonText + ",\"hash\":" + (hash.map(JSONValue.string) ?? .null).jsonText + ",\"meta\":"
            + meta + ",\"created_at\":\(createdAt),\"updated_at\":\(updatedAt)}"
    }
}

struct KnowledgeRow: Sendable {
    var id: String
    var userID: String
    var name: String
    var description: String
    var meta: String?
    var createdAt: Int
    var updatedAt: Int
    var grants: [JSONValue]

    func readable(by user: Identity) -> Bool { user.isAdmin || userID == user.userID || granted("read", to: user) }
    func writable(by user: Identity) -> Bool { user.isAdmin || userID == user.userID || granted("write", to: user) }

    func granted(_ permission: String, to user: Identity) -> Bool { user.isGranted(permission, by: grants) }

    /// `KnowledgeModel`'s keys, then `extra` (already JSON text).
    func json(_ extra: [(String, String)] = []) -> String {
        let pairs: [(String, String)] = [
            ("id", JSONValue.string(id).jsonText), ("user_id", JSONValue.string(userID).jsonText),
            ("name", JSONValue.string(name).jsonText), ("description", JSONValue.string(description).jsonText),
            ("meta", meta ?? "null"), ("access_grants", JSONValue.array(grants).jsonText), ("created_at", String(createdAt)),
            ("updated_at", String(updatedAt)),
        ]
        return "{" + (pairs + extra).map { JSONValue.string($0.0).jsonText + ":" + $0.1 }.joined(separator: ",") + "}"
    }
}

struct KnowledgeStore: Sendable {
    let postgres: PostgresClient
    let logger: Logger

    /// Removes knowledge bases (by id, or all of an owner's) with their chunks and access grants, in one
    /// transaction. Their file links go with them (foreign key).
    func delete(ids: [String] = [], ownerID: String? = nil) async throws {
        try await postgres.withTransaction(logger: logger) { connection in
            let rows = try await connection.query(
                "DELETE FROM retrieval.knowledge WHERE id = ANY(\(ids)) OR user_id = \(ownerID) RETURNING id", logger: logger)
            var removed: [String] = []
            for try await id in rows.decode(String.self) { removed.append(id) }
            guard !removed.isEmpty else { return }
            try await connection.query("DELETE FROM retrieval.chunks WHERE collection = ANY(\(removed))", logger: logger)
            try await connection.query(
                "DELETE FROM retrieval.access_grants WHERE resource_type = 'knowledge' AND resource_id = ANY(\(removed))",
                logger: logger)
        }
    }

    static let grantsJSON = """
        (SELECT coalesce(json_agg(json_build_object('id', g.id, 'resource_type', g.resource_type, 'resource_id', g.resource_id,
            'principal_type', g.principal_type, 'principal_id', g.principal_id, 'permission', g.permission,
            'created_at', g.created_at) ORDER BY g.created_at, g.id), '[]'::json)
         FROM retrieval.access_grants g WHERE g.resource_type = 'knowledge' AND g.resource_id = k.id)::text
        """

    func rows(_ whereSQL: String, _ binds: PostgresBindings = PostgresBindings(), suffix: String = "") async throws -> [KnowledgeRow] {
        let sql = """
            SELECT k.id, k.user_id, k.name, k.description, k.meta::text, k.created_at, k.updated_at, \(Self.grantsJSON)
            FROM retrieval.knowledge k WHERE \(whereSQL) \(suffix)
            """
        var result: [KnowledgeRow] = []
        for try await (id, user, name, description, meta, created, updated, grants) in try await postgres.query(
            PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger
        ).decode((String, String, String, String, String?, Int, Int, String).self) {
            result.append(
                KnowledgeRow(
                    id: id, userID: user, name: name, description: description, meta: meta, createdAt: created,
                    updatedAt: updated, grants: JSONValue.parse(grants)?.arrayValue ?? []))
        }
        return result
    }

    func knowledge(_ id: String) async throws -> KnowledgeRow? {
        var binds = PostgresBindings()
        binds.append(id)
        return try await rows("k.id = $1", binds).first
    }

    func file(_ id: String) async throws -> KnownFile? {
        let rows = try await postgres.query(
            """
            SELECT id, user_id, filename, meta, hash, status, content, created_at, updated_at FROM retrieval.files WHERE id = \(id)
            """, logger: logger)
        for try await (id, user, name, meta, hash, status, content, created, updated) in rows.decode(
            (String, String, String, String, String?, String, String?, Int, Int).self)
        {
            return KnownFile(
                id: id, userID: user, filename: name, meta: meta, hash: hash, status: status, content: content, createdAt: created,
                updatedAt: updated)
        }
        return nil
    }

    /// Files of a knowledge base, newest first.
    func files(of knowledgeID: String) async throws -> [(KnownFile, addedBy: String)] {
        let rows = try await postgres.query(
            """
            SELECT f.id, f.user_id, f.filename, f.meta, f.hash, f.status, NULL::text, f.created_at, f.updated_at, kf.user_id
            FROM retrieval.knowledge_files kf JOIN retrieval.files f ON f.id = kf.file_id
            WHERE kf.knowledge_id = \(knowledgeID) ORDER BY f.updated_at DESC, f.id
            """, logger: logger)
        var result: [(KnownFile, String)] = []
        for try await (id, user, name, meta, hash, status, content, created, updated, adder) in rows.decode(
            (String, String, String, String, String?, String, String?, Int, Int, String).self)
        {
            result.append(
                (KnownFile(
                    id: id, userID: user, filename: name, meta: meta, hash: hash, status: status, content: content,
                    createdAt: created, updatedAt: updated), adder))
        }
        return result
    }

    func collections(containing fileID: String) async throws -> [String] {
        var ids: [String] = []
        for try await id in try await postgres.query(
            "SELECT knowledge_id FROM retrieval.knowledge_files WHERE file_id = \(fileID)", logger: logger
        ).decode(String.self) { ids.append(id) }
        return ids
    }

    /// How many files each of the knowledge bases holds.
    func fileCounts(_ ids: [String]) async throws -> [String: Int] {
        var counts: [String: Int] = [:]
        for try await (id, count) in try await postgres.query(
            """
            SELECT knowledge_id, count(*)::bigint FROM retrieval.knowledge_files WHERE knowledge_id = ANY(\(ids))
            GROUP BY knowledge_id
            """, logger: logger
        ).decode((String, Int).self) { counts[id] = count }
        return counts
    }

    func link(fileID: String, knowledgeID: String, userID: String) async throws {
        let now = Int(Date().timeIntervalSince1970)
        try await postgres.query(
            """
            INSERT INTO retrieval.knowledge_files (knowledge_id, file_id, user_id, created_at, updated_at)
            VALUES (\(knowledgeID), \(fileID), \(userID), \(now), \(now)) ON CONFLICT DO NOTHING
            """, logger: logger)
        try await postgres.query("UPDATE retrieval.knowledge SET updated_at = \(now) WHERE id = \(knowledgeID)", logger: logger)
    }

    func replaceGrants(_ grants: [JSONValue], knowledgeID: String) async throws {
        let now = Int(Date().timeIntervalSince1970)
        try await postgres.withTransaction(logger: logger) { connection in
            try await connection.query(
                "DELETE FROM retrieval.access_grants WHERE resource_type = 'knowledge' AND resource_id = \(knowledgeID)", logger: logger)
            for grant in grants {
                guard let type = grant["principal_type"]?.stringValue, ["user", "group"].contains(type),
                    let principal = grant["principal_id"]?.stringValue, !principal.isEmpty,
                    let permission = grant["permission"]?.stringValue, ["read", "write"].contains(permission)
                else { continue }
                try await connection.query(
                    """
                    INSERT INTO retrieval.access_grants (id, resource_type, resource_id, principal_type, principal_id, permission, created_at)
                    VALUES (\(UUID().uuidString.lowercased()), 'knowledge', \(knowledgeID), \(type), \(principal), \(permission), \(now))
                    ON CONFLICT DO NOTHING
                    """, logger: logger)
            }
        }
    }
}
