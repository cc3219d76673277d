// The `files.files` table and the bytes under UPLOAD_DIR.
import Foundation
import Logging
import PostgresNIO
import Shared

struct FileRow: Sendable {
    var id: String
    var userID: String
    var hash: String?
    var filename: String
    var storageName: String
    var data: [String: JSONValue]
    var metaText: String
    var createdAt: Int
    var updatedAt: Int

    var meta: [String: JSONValue] { JSONValue.parse(metaText)?.objectValue ?? [:] }
    var displayName: String { meta["name"]?.stringValue ?? filename }
    var contentType: String? { meta["content_type"]?.stringValue }

    /// `data` with `status`, `content`, `error` first; without `content` when `withContent` is false.
    func dataText(withContent: Bool = true) -> String {
        var data = self.data
        if !withContent { data["content"] = nil }
        return OrderedObject(data, first: ["status", "content", "error"]).text
    }

    /// `FileModelResponse`: no path; `extra` keys at the end.
    func responseJSON(withContent: Bool = true, extra: [(String, String)] = []) -> String {
        let pairs: [(String, String)] = [
            ("id", JSONValue.string(id).jsonText), ("user_id", JSONValue.string(userID).jsonText),
            ("hash", (hash.map(JSONValue.string) ?? .null).jsonText), ("filename", JSONValue.string(filename).jsonText),
            ("data", dataText(withContent: withContent)), ("meta", metaText), ("created_at", String(createdAt)),
            ("updated_at", String(updatedAt)),
        ]
        return "{" + (pairs + extra).map { JSONValue.string($0.0).jsonText + ":" + $0.1 }.joined(separator: ",") + "}"
    }

    /// `FileModel` (`GET /{id}`): with `path`, which Skiff fills with the stored file's name, never a server path.
    var modelJSON: String {
        let pairs: [(String, String)] = [
            ("id", JSONValue.string(id).jsonText), ("user_id", JSONValue.string(userID).jsonText),
            ("hash", (hash.map(JSONValue.string) ?? .null).jsonText), ("filename", JSONValue.string(filename).jsonText),
            ("path", JSONValue.string(storageName).jsonText), ("data", dataText()), ("meta", metaText),
            ("created_at", String(createdAt)), ("updated_at", String(updatedAt)),
        ]
        return "{" + pairs.map { JSONValue.string($0.0).jsonText + ":" + $0.1 }.joined(separator: ",") + "}"
    }
}

struct FileStore: Sendable {
    let postgres: PostgresClient
    let logger: Logger
    let uploadDirectory: URL
    let outbox = Outbox(schema: "files", stream: EventStream.files)

    static let columns = "id, user_id, hash, filename, storage_name, data::text, content, meta, created_at, updated_at"

    /// The columns, without the extracted text when the caller leaves it out. The text has its own column (not a
    /// key of `data`), so a list that leaves it out never reads it: reading it out of `data` (de-TOASTed and
    /// decompressed for every row before the sort) made file lists Postgres's largest cost during ingestion.
    static func columns(withContent: Bool) -> String {
        withContent ? columns : "id, user_id, hash, filename, storage_name, data::text, NULL::text, meta, created_at, updated_at"
    }

    func rows(_ query: PostgresQuery) async throws -> [FileRow] {
        var result: [FileRow] = []
        for try await (id, user, hash, filename, storage, data, content, meta, created, updated) in try await postgres.query(
            query, logger: logger
        ).decode((String, String, String?, String, String, String, String?, String, Int, Int).self) {
            var data = JSONValue.parse(data)?.objectValue ?? [:]
            if let content { data["content"] = .string(content) }
            result.append(
                FileRow(
                    id: id, userID: user, hash: hash, filename: filename, storageName: storage,
                    data: data, metaText: meta, createdAt: created, updatedAt: updated))
        }
        return result
    }

    func file(_ id: String) async throws -> FileRow? {
        try await rows("SELECT \(unescaped: Self.columns) FROM files.files WHERE id = \(id)").first
    }

    func url(of row: FileRow) -> URL { uploadDirectory.appendingPathComponent(row.storageName) }

    func insert(_ row: FileRow, event: Event?) async throws {
        try await postgres.withTransaction(logger: logger) { connection in
            try await connection.query(
                """
                INSERT INTO files.files (id, user_id, hash, filename, storage_name, data, meta, created_at, updated_at)
                VALUES (\(row.id), \(row.userID), \(row.hash), \(row.filename), \(row.storageName),
                    \(JSONValue.object(row.data).jsonText)::jsonb, \(row.metaText), \(row.createdAt), \(row.updatedAt))
                """, logger: logger)
            if let event { try await outbox.enqueue(event, on: connection, logger: logger) }
        }
    }

    /// Merges `changes` into the file's `data` (and sets `hash` when given); a `content` string goes to its own
    /// column.
    func updateData(_ id: String, _ changes: [String: JSONValue], hash: String?? = nil) async throws {
        try await postgres.withConnection { connection in
            try await Self.updateData(id, changes, hash: hash, on: connection, logger: logger)
        }
    }

    static func updateData(
        _ id: String, _ changes: [String: JSONValue], hash: String?? = nil, on connection: PostgresConnection, logger: Logger
    ) async throws {
        var changes = changes
        let content = changes.removeValue(forKey: "content")?.stringValue
        let now = Int(Date().timeIntervalSince1970)
        try await connection.query(
            """
            UPDATE files.files SET data = data || \(JSONValue.object(changes).jsonText)::jsonb,
                content = coalesce(\(content), content), hash = CASE WHEN \(hash != nil) THEN \(hash ?? nil) ELSE hash END,
                updated_at = \(now) WHERE id = \(id)
            """, logger: logger)
    }

    /// Deletes rows and their bytes; one `file.deleted` event each.
    func delete(_ files: [FileRow], actor: String?) async throws {
        guard !files.isEmpty else { return }
        try await postgres.withTransaction(logger: logger) { connection in
            try await connection.query("DELETE FROM files.files WHERE id = ANY(\(files.map(\.id)))", logger: logger)
            try await outbox.enqueue(
                files.map {
                    Event(type: "file.deleted", actorID: actor, data: .object(["file_id": .string($0.id), "user_id": .string($0.userID)]))
                }, on: connection, logger: logger)
        }
        for file in files { try? FileManager.default.removeItem(at: url(of: file)) }
    }
}
