// Files into chunks: on `file.uploaded` the stored bytes are read, their text extracted, split and embedded into
// the file's collection (`file-<id>`) and, when the upload named a knowledge base the owner may write, into that
// one too; `file.processed` then tells the files service the outcome. Deleted files lose their chunks.
import Crypto
import Foundation
import Logging
import PostgresNIO
import Shared

struct Indexer: Sendable {
    let postgres: PostgresClient
    let chunks: ChunkStore
    let knowledge: KnowledgeStore
    let logger: Logger
    let uploads: URL
    let outbox = Outbox(schema: "retrieval", stream: EventStream.retrieval)

    static let duplicate = "Duplicate content detected. Please provide unique content to proceed."

    static func sha256(_ text: String) -> String {
        SHA256.hash(data: Data(text.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    func handle(_ event: Event) async throws {
        switch event.type {
        case "file.uploaded": try await uploaded(event)
        case "file.content_updated": try await contentUpdated(event)
        case "file.renamed":
            guard let id = event.data["file_id"]?.stringValue, let name = event.data["filename"]?.stringValue else { return }
            let meta = event.data["meta"]?.stringValue ?? "{}"
            try await postgres.query(
                "UPDATE retrieval.files SET filename = \(name), meta = \(meta) WHERE id = \(id)", logger: logger)
            try await postgres.query(
                """
                UPDATE retrieval.chunks SET metadata = metadata || jsonb_build_object('name', \(name)::text, 'source', \(name)::text)
                WHERE file_id = \(id)
                """, logger: logger)
        case "file.deleted":
            guard let id = event.data["file_id"]?.stringValue else { return }
            try await chunks.deleteFile(id)
            try await postgres.query("DELETE FROM retrieval.knowledge_files WHERE file_id = \(id)", logger: logger)
            try await postgres.query("DELETE FROM retrieval.files WHERE id = \(id)", logger: logger)
        default: return
        }
    }

    func uploaded(_ event: Event) async throws {
        guard let id = event.data["file_id"]?.stringValue, let owner = event.data["user_id"]?.stringValue,
            let storage = event.data["storage_name"]?.stringValue
        else { return }
        let name = event.data["filename"]?.stringValue ?? storage
        let meta = event.data["meta"]?.stringValue ?? "{}"
        let now = Int(Date().timeIntervalSince1970)
        try await postgres.query(
            """
            INSERT INTO retrieval.files (id, user_id, filename, meta, status, created_at, updated_at)
            VALUES (\(id), \(owner), \(name), \(meta), 'processing', \(event.data["created_at"]?.intValue ?? now), \(now))
            ON CONFLICT (id) DO UPDATE SET status = 'processing', updated_at = EXCLUDED.updated_at
            """, logger: logger)
        let text: String
        do {
            let file = uploads.appendingPathComponent(storage)
            let type = event.data["content_type"]?.stringValue
            text = try await TextExtractor.offPool { try TextExtractor.text(of: file, name: name, contentType: type) }
        } catch let error as TextExtractor.Unsupported {
            try await finish(id, status: "failed", content: nil, hash: nil, error: error.reason)
            return
        }
        do {
            try await index(fileID: id, text: text)
            // The uploader as the upload saw them: admins and write grants (their own, their groups') count.
            let uploader = Identity(
                userID: owner, role: event.data["user_role"]?.stringValue ?? "user", method: .jwt,
                groupIDs: event.data["group_ids"]?.arrayValue?.compactMap(\.stringValue) ?? [])
            if let knowledgeID = event.data["metadata"]?["knowledge_id"]?.stringValue,
                try await knowledge.knowledge(knowledgeID)?.writable(by: uploader) == true
            {
                try await addToKnowledge(fileID: id, knowledgeID: knowledgeID, userID: owner)
            }
            // `index` stored the text already: the event carries it, the row keeps the stored copy.
            try await finish(id, status: "completed", content: text, hash: Self.sha256(text), error: nil, stored: true)
        } catch let error as APIError {
            try await finish(id, status: "failed", content: text, hash: nil, error: error.detail.stringValue ?? "\(error.detail)")
        }
    }

    func contentUpdated(_ event: Event) async throws {
        guard let id = event.data["file_id"]?.stringValue, let content = event.data["content"]?.stringValue else { return }
        do {
            try await reindex(id, content: content)
        } catch let error as APIError {
            // A refusal (empty text, a duplicate in a knowledge base) is the file's outcome, not a retry.
            try await finish(id, status: "failed", content: content, hash: nil, error: error.detail.stringValue ?? "\(error.detail)")
        }
    }

    func reindex(_ id: String, content: String) async throws {
        try await index(fileID: id, text: content)
        for knowledgeID in try await knowledge.collections(containing: id) {
            try await chunks.delete(collection: knowledgeID, fileID: id)
            try await copy(fileID: id, into: knowledgeID)
        }
        // After any earlier outcome of the same file (its events are handled in order), so the new text stands.
        try await finish(id, status: "completed", content: content, hash: Self.sha256(content), error: nil, stored: true)
    }

    /// The file's chunks with the original's metadata keys.
    func chunked(fileID: String, text: String) async throws -> [Chunk] {
        guard let file = try await knowledge.file(fileID) else { return [] }
        return try await chunked(file, text: text)
    }

    func chunked(_ file: KnownFile, text: String) async throws -> [Chunk] {
        let fileID = file.id
        let meta = JSONValue.parse(file.meta)?.objectValue ?? [:]
        let hash = Self.sha256(text)
        var base: [String: JSONValue] = [
            "name": .string(file.filename), "file_id": .string(fileID), "source": .string(file.filename),
            "created_by": .string(file.userID), "hash": .string(hash),
        ]
        for key in ["content_type", "size", "file_hash"] { base[key] = meta[key] }
        let (settings, embedder) = try await chunks.settings.current()
        if let embedder {
            base["embedding_config"] = .string("{'engine': '\(embedder.engine.rawValue)', 'model': '\(embedder.model)'}")
        }
        return Chunker.chunks(of: text, size: settings.chunkSize, overlap: settings.chunkOverlap).map { piece in
            var metadata = base
            metadata["start_index"] = .int(piece.start)
            return Chunk(text: piece.text, metadata: metadata.filter { $0.value != .null })
        }
    }

    /// Replaces the file's own collection with the text's chunks.
    func index(fileID: String, text: String) async throws {
        guard !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw APIError(.badRequest, "The content provided is empty. Please ensure that there is text or data present before proceeding.")
        }
        try await postgres.query(
            "UPDATE retrieval.files SET content = \(text), hash = \(Self.sha256(text)) WHERE id = \(fileID)", logger: logger)
        let pieces = try await chunked(fileID: fileID, text: text)
        try await chunks.delete(collection: "file-" + fileID)
        try await chunks.add(pieces, collection: "file-" + fileID, fileID: fileID)
    }

    /// The file's chunks copied into a knowledge base (refused when another file there has the same text).
    func copy(fileID: String, into knowledgeID: String) async throws {
        guard let file = try await knowledge.file(fileID), let content = file.content else {
            throw APIError(
                .badRequest,
                "Extracted content is not available for this file. Please ensure that the file is processed before proceeding.")
        }
        if try await chunks.duplicate(hash: Self.sha256(content), collection: knowledgeID, fileID: fileID) {
            throw APIError(.badRequest, "400: " + Self.duplicate)
        }
        // The file's own chunks, when they were cut from this text and embedded as the engine embeds now, are the
        // same rows: copied, not cut and embedded again.
        let pieces = try await chunked(file, text: content)
        if try await chunks.copy(from: "file-" + fileID, into: knowledgeID, matching: pieces) { return }
        try await chunks.add(pieces, collection: knowledgeID, fileID: fileID)
    }

    func addToKnowledge(fileID: String, knowledgeID: String, userID: String) async throws {
        // Again after a redelivery: the file's chunks there are replaced, not doubled.
        try await chunks.delete(collection: knowledgeID, fileID: fileID)
        try await copy(fileID: fileID, into: knowledgeID)
        try await knowledge.link(fileID: fileID, knowledgeID: knowledgeID, userID: userID)
    }

    /// Records the outcome and sends `file.processed`. `stored`: the row has `content` already, so it is not
    /// written (and compressed) a second time.
    func finish(_ id: String, status: String, content: String?, hash: String?, error: String?, stored: Bool = false) async throws {
        let newContent = stored ? nil : content
        let now = Int(Date().timeIntervalSince1970)
        var data: [String: JSONValue] = ["file_id": .string(id), "status": .string(status), "error": error.map(JSONValue.string) ?? .null]
        if let content { data["content"] = .string(content) }
        data["hash"] = hash.map(JSONValue.string) ?? .null
        try await postgres.withTransaction(logger: logger) { connection in
            try await connection.query(
                """
                UPDATE retrieval.files SET status = \(status), content = coalesce(\(newContent), content), hash = \(hash),
                    updated_at = \(now) WHERE id = \(id)
                """, logger: logger)
            try await outbox.enqueue(Event(type: "file.processed", actorID: nil, data: .object(data)), on: connection, logger: logger)
        }
    }
}
