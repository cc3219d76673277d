// /api/v1/memories: what each user asked the assistant to remember, with the real server's routes and shapes.
// Ranking: cosine similarity of embeddings when an embedding engine is configured, full-text rank otherwise.
import Foundation
import Hummingbird
import Logging
import PostgresNIO
import Shared

struct MemoriesController {
    let history: ChatHistory
    let policies: PolicyCache
    let embedder: Embedder?
    /// `RAG_RELEVANCE_THRESHOLD`: query results scoring below it are left out.
    let threshold: Double
    var logger: Logger { history.logger }

    var routes: RouteCollection<ServiceRequestContext> {
        let routes = RouteCollection(context: ServiceRequestContext.self)
        routes.get("/", use: list)
        routes.post("add", use: add)
        routes.post("update", use: batch)
        routes.post("query", use: query)
        routes.post("search", use: search)
        routes.post("reindex", use: reindex)
        routes.post("reset", use: reset)
        routes.delete("delete/user", use: deleteAll)
        routes.post(":id/update", use: update)
        routes.delete(":id", use: delete)
        return routes
    }

    /// `MemoryModel` of memory `m` (without `meta` where the original leaves it out).
    static func memoryJSON(meta: Bool = true) -> String {
        """
        json_build_object('id', m.id, 'user_id', m.user_id, 'type', m.type, 'path', m.path, 'content', m.content,\
        \(meta ? " 'meta', m.meta," : "") 'updated_at', m.updated_at, 'created_at', m.created_at)::text
        """
    }

    /// `check_memories_permission`: memories switched on (404 otherwise), and `features.memories` for users.
    func caller(_ context: ServiceRequestContext) async throws -> Identity {
        let user = try context.requireVerified()
        let policy = try await policies.policy(user.userID)
        guard policy.features["memories"] ?? true else { throw APIError.notFound }
        guard user.isAdmin || policy.allows("features.memories") else { throw APIError(.forbidden, ErrorText.accessProhibited) }
        return user
    }

    // MARK: Cleaning

    static func content(_ text: String) throws -> String {
        let cleaned = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !cleaned.isEmpty else { throw APIError(.badRequest, "Memory content cannot be empty") }
        return cleaned
    }

    /// `clean_memory_path`: trimmed, no leading or trailing or repeated slashes; nil when empty.
    static func path(_ raw: String?) throws -> String? {
        let trimmed = (raw ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        let segments = trimmed.split(separator: "/", omittingEmptySubsequences: true)
        guard !segments.isEmpty else { return nil }
        if segments.contains(where: { $0 == "." || $0 == ".." }) || trimmed.unicodeScalars.contains(where: { $0.value < 0x20 }) {
            throw APIError(.badRequest, "Invalid memory path")
        }
        return segments.joined(separator: "/")
    }

    static func type(_ raw: String?) -> String { raw == "user" ? "user" : "context" }

    /// The text embedded for a memory: its path, a newline, its content.
    static func embeddedText(path: String?, content: String) -> String {
        path.map { $0 + "\n" + content } ?? content
    }

    func embedding(path: String?, content: String) async throws -> [Double]? {
        guard let embedder else { return nil }
        return try await embedder.embed([Self.embeddedText(path: path, content: content)]).first
    }

    // MARK: Routes

    @Sendable func list(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try await caller(context)
        return JSONResponse.text(try await memories(of: user.userID))
    }

    func memories(of userID: String, meta: Bool = true) async throws -> String {
        let rows = try await history.postgres.query(
            """
            SELECT coalesce(json_agg(m.j ORDER BY m.seq), '[]')::text FROM
                (SELECT \(unescaped: Self.memoryJSON(meta: meta))::json AS j, m.seq FROM chat.memories m
                 WHERE m.user_id = \(userID)) m
            """, logger: logger)
        for try await json in rows.decode(String.self) { return json }
        return "[]"
    }

    func one(_ id: String, meta: Bool = true, on connection: PostgresConnection) async throws -> String {
        let rows = try await connection.query(
            "SELECT \(unescaped: Self.memoryJSON(meta: meta)) FROM chat.memories m WHERE m.id = \(id)", logger: logger)
        for try await json in rows.decode(String.self) { return json }
        throw APIError.notFound
    }

    struct AddForm: Decodable {
        var content: String
        var type: MemoryType?
        var path: String?
    }

    enum MemoryType: String, Decodable {
        case user, context
    }

    @Sendable func add(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try await caller(context)
        let form = try JSONBody.decode(AddForm.self, from: try await history.body(request))
        let content = try Self.content(form.content)
        let path = try Self.path(form.path)
        let vector = try await embedding(path: path, content: content)
        let id = UUID().uuidString.lowercased()
        let now = Int(Date().timeIntervalSince1970)
        let json = try await history.postgres.withConnection { connection -> String in
            try await connection.query(
                """
                INSERT INTO chat.memories (id, user_id, type, path, content, meta, embedding, created_at, updated_at)
                VALUES (\(id), \(user.userID), \((form.type ?? .context).rawValue), \(path), \(content),
                    '{"created_by":"manual"}', \(vector), \(now), \(now))
                """, logger: logger)
            return try await one(id, on: connection)
        }
        return JSONResponse.text(json)
    }

    struct UpdateForm: Decodable {
        var content: String?
        var type: MemoryType?
        var path: String?
    }

    @Sendable func update(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try await caller(context)
        let id = try context.parameters.require("id")
        let form = try JSONBody.decode(UpdateForm.self, from: try await history.body(request))
        let content = try form.content.map(Self.content)
        let path = try Self.path(form.path)
        guard content != nil || form.type != nil || form.path != nil else {
            throw APIError(.badRequest, "No memory update provided")
        }
        let json = try await history.transaction { connection -> String in
            let rows = try await connection.query(
                "SELECT content, path FROM chat.memories WHERE id = \(id) AND user_id = \(user.userID) FOR UPDATE",
                logger: logger)
            var current: (String, String?)?
            for try await row in rows.decode((String, String?).self) { current = row }
            guard let current else { throw APIError.notFound }
            let newContent = content ?? current.0
            let newPath = form.path != nil ? path : current.1
            let vector = content != nil || form.path != nil ? try await embedding(path: newPath, content: newContent) : nil
            try await connection.query(
                """
                UPDATE chat.memories SET content = \(newContent), path = \(newPath),
                    type = coalesce(\(form.type?.rawValue), type),
                    meta = (coalesce(meta::jsonb, '{}'::jsonb) || '{"created_by":"manual"}'::jsonb)::json,
                    embedding = coalesce(\(vector), embedding), updated_at = \(Int(Date().timeIntervalSince1970))
                WHERE id = \(id)
                """, logger: logger)
            return try await one(id, on: connection)
        }
        return JSONResponse.text(json)
    }

    @Sendable func delete(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try await caller(context)
        let id = try context.parameters.require("id")
        let rows = try await history.postgres.query(
            "DELETE FROM chat.memories WHERE id = \(id) AND user_id = \(user.userID) RETURNING 1", logger: logger)
        var deleted = false
        for try await _ in rows { deleted = true }
        return JSONResponse.text("\(deleted)")
    }

    @Sendable func deleteAll(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try await caller(context)
        try await history.postgres.query("DELETE FROM chat.memories WHERE user_id = \(user.userID)", logger: logger)
        return JSONResponse.text("true")
    }

    /// Embeds again every memory of the given users (all users when nil); returns how many.
    func reembed(userID: String?) async throws -> Int {
        guard embedder != nil else { return try await count(userID) }
        let rows = try await history.postgres.query(
            "SELECT id, path, content FROM chat.memories WHERE \(userID)::text IS NULL OR user_id = \(userID)", logger: logger)
        var items: [(String, String?, String)] = []
        for try await row in rows.decode((String, String?, String).self) { items.append(row) }
        for item in items {
            let vector = try await embedding(path: item.1, content: item.2)
            try await history.postgres.query(
                "UPDATE chat.memories SET embedding = \(vector) WHERE id = \(item.0)", logger: logger)
        }
        return items.count
    }

    func count(_ userID: String?) async throws -> Int {
        let rows = try await history.postgres.query(
            "SELECT count(*)::bigint FROM chat.memories WHERE \(userID)::text IS NULL OR user_id = \(userID)", logger: logger)
        for try await count in rows.decode(Int.self) { return count }
        return 0
    }

    /// Re-indexes the caller's memories (deletes nothing, as the original's reset).
    @Sendable func reset(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try await caller(context)
        _ = try await reembed(userID: user.userID)
        return JSONResponse.text("true")
    }

    @Sendable func reindex(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        let total = try await reembed(userID: nil)
        let users = try await history.postgres.query(
            "SELECT count(DISTINCT user_id)::bigint FROM chat.memories", logger: logger)
        var userCount = 0
        for try await count in users.decode(Int.self) { userCount = count }
        return JSONResponse.text(
            OrderedJSON.object([("status", .bool(true)), ("total_users", .int(userCount)), ("total_memories", .int(total))]))
    }

    struct QueryForm: Decodable {
        var content: String
        var k: Int?

        enum CodingKeys: String, CodingKey { case content, k }

        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            content = try c.decode(String.self, forKey: .content)
            k = c.contains(.k) ? try c.decodeIfPresent(Int.self, forKey: .k) : 1
        }
    }

    /// The closest memories in the original's search-result shape (`{ids, documents, metadatas, distances}`, one
    /// inner list each, scores 0...1 with higher closer).
    @Sendable func query(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try await caller(context)
        let form = try JSONBody.decode(QueryForm.self, from: try await history.body(request))
        guard let k = form.k else { return JSONResponse.text("null") }
        guard try await count(user.userID) > 0 else { throw APIError(.notFound, "No memories found for user") }
        var ranked: [(id: String, text: String, meta: String, score: Double)] = []
        if let embedder {
            let target = try await embedder.embed([form.content]).first ?? []
            let rows = try await history.postgres.query(
                """
                SELECT id, path, content, embedding, \(unescaped: Self.metadataJSON) FROM chat.memories
                WHERE user_id = \(user.userID)
                """, logger: logger)
            for try await (id, path, content, vector, meta) in rows.decode((String, String?, String, [Double]?, String).self) {
                let score = vector.map { Embedder.score(target, $0) } ?? 0
                ranked.append((id, Self.embeddedText(path: path, content: content), meta, score))
            }
        } else {
            let words = form.content.lowercased().split { !$0.isLetter && !$0.isNumber }.map { "'\($0)':*" }
            let tsquery = words.isEmpty ? "" : words.joined(separator: " | ")
            let rows = try await history.postgres.query(
                """
                SELECT id, path, content, CASE WHEN \(tsquery) = '' THEN 0::float8 ELSE
                    ts_rank(to_tsvector('simple', coalesce(path, '') || ' ' || content), to_tsquery('simple', \(tsquery)))::float8 END,
                    \(unescaped: Self.metadataJSON)
                FROM chat.memories WHERE user_id = \(user.userID)
                """, logger: logger)
            for try await (id, path, content, rank, meta) in rows.decode((String, String?, String, Double, String).self) {
                // ts_rank grows without bound in principle; fold it into 0...1 like the vector scores.
                ranked.append((id, Self.embeddedText(path: path, content: content), meta, rank / (rank + 0.1)))
            }
        }
        ranked.sort { ($0.score, $1.id) > ($1.score, $0.id) }
        var top = Array(ranked.prefix(max(0, k)))
        if threshold > 0 { top.removeAll { $0.score < threshold } }
        let body = OrderedJSON.appending(
            "{}",
            raw: [
                ("ids", "[" + JSONValue.array(top.map { .string($0.id) }).jsonText + "]"),
                ("documents", "[" + JSONValue.array(top.map { .string($0.text) }).jsonText + "]"),
                ("metadatas", "[" + OrderedJSON.array(top.map(\.meta)) + "]"),
                ("distances", "[" + JSONValue.array(top.map { .double($0.score) }).jsonText + "]"),
            ])
        return JSONResponse.text(body)
    }

    /// The vector store's metadata of a memory: times, type and path (left out when empty).
    static let metadataJSON = """
        json_strip_nulls(json_build_object('created_at', created_at, 'updated_at', updated_at, 'type', type, 'path', path))::text
        """

    struct SearchForm: Decodable {
        var query: String?
        var type: String?
        var path: String?
        var memoryID: String?
        var limit: Int?

        enum CodingKeys: String, CodingKey {
            case query, type, path, limit
            case memoryID = "memory_id"
        }
    }

    /// Filters the caller's memories by id, type, path (the path, its parents and children) and text, newest first.
    @Sendable func search(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try await caller(context)
        let form = try JSONBody.decode(SearchForm.self, from: try await history.body(request))
        if let type = form.type, !["user", "context", "all"].contains(type) {
            throw APIError.validation([
                ValidationIssue(
                    type: "literal_error", loc: [.string("body"), .string("type")],
                    msg: "Input should be 'user', 'context' or 'all'", input: .string(type))
            ])
        }
        let limit = min(100, max(1, form.limit ?? 20))
        let path = try Self.path(form.path)
        let type = form.type == "all" ? nil : form.type
        let query = form.query.flatMap { $0.isEmpty ? nil : "%" + $0 + "%" }
        let rows = try await history.postgres.query(
            """
            SELECT coalesce(json_agg(m.j ORDER BY m.r, m.updated_at DESC, m.id), '[]')::text FROM (
                SELECT \(unescaped: Self.memoryJSON())::json AS j, m.updated_at, m.id,
                    CASE WHEN \(path)::text IS NULL THEN 9 WHEN m.path = \(path) THEN 0
                        WHEN m.path LIKE \(path) || '/%' THEN 1 WHEN \(path) LIKE m.path || '/%' THEN 2 ELSE 5 END AS r
                FROM chat.memories m WHERE m.user_id = \(user.userID)
                AND (\(form.memoryID)::text IS NULL OR m.id = \(form.memoryID))
                AND (\(type)::text IS NULL OR m.type = \(type))
                AND (\(path)::text IS NULL OR m.path = \(path) OR m.path LIKE \(path) || '/%' OR \(path) LIKE m.path || '/%'
                    OR strpos(lower(coalesce(m.path, '') || E'\\n' || m.content), lower(\(path))) > 0)
                AND (\(query)::text IS NULL OR m.content ILIKE \(query) OR m.path ILIKE \(query))
                ORDER BY r, m.updated_at DESC, m.id LIMIT \(limit)) m
            """, logger: logger)
        for try await json in rows.decode(String.self) { return JSONResponse.text(json) }
        return JSONResponse.text("[]")
    }

    // MARK: Batch operations

    struct BatchForm: Decodable {
        var operations: [Operation]
        var source: String?

        struct Operation: Decodable {
            var action: Action
            var id: String?
            var content: String?
            var type: MemoryType?
            var path: String?
        }

        enum Action: String, Decodable { case add, replace, remove, move }
    }

    /// Adds, replaces, moves and removes memories in one transaction; results in operation order.
    @Sendable func batch(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try await caller(context)
        let form = try JSONBody.decode(BatchForm.self, from: try await history.body(request))
        guard !form.operations.isEmpty else { throw APIError(.badRequest, "No memory operations provided") }
        // Validate everything first, embed what will be written, then apply all or nothing.
        var prepared: [(BatchForm.Operation, String?, String?, [Double]?)] = []
        for operation in form.operations {
            switch operation.action {
            case .add:
                let content = try Self.content(operation.content ?? "")
                let path = try Self.path(operation.path)
                prepared.append((operation, content, path, try await embedding(path: path, content: content)))
            case .replace:
                guard operation.id != nil else { throw APIError(.badRequest, "Memory id is required for replace") }
                let content = try Self.content(operation.content ?? "")
                let path = try Self.path(operation.path)
                prepared.append((operation, content, path, try await embedding(path: path, content: content)))
            case .move:
                guard operation.id != nil else { throw APIError(.badRequest, "Memory id is required for move") }
                prepared.append((operation, nil, try Self.path(operation.path), nil))
            case .remove:
                guard operation.id != nil else { throw APIError(.badRequest, "Memory id is required for remove") }
                prepared.append((operation, nil, nil, nil))
            }
        }
        let meta = OrderedJSON.object([
            ("created_by", .string(form.source ?? "tool")), ("chat_id", .null), ("message_id", .null), ("model", .null),
        ])
        let now = Int(Date().timeIntervalSince1970)
        let results = try await history.transaction { connection -> [String] in
            var results: [String] = []
            for (operation, content, path, vector) in prepared {
                let action = JSONValue.string(operation.action.rawValue)
                switch operation.action {
                case .add:
                    let type = Self.type(operation.type?.rawValue)
                    let existing = try await connection.query(
                        """
                        SELECT id FROM chat.memories WHERE user_id = \(user.userID) AND content = \(content!)
                        AND type = \(type) AND path IS NOT DISTINCT FROM \(path) LIMIT 1
                        """, logger: logger)
                    var duplicate: String?
                    for try await id in existing.decode(String.self) { duplicate = id }
                    if let duplicate {
                        results.append(
                            OrderedJSON.appending(
                                OrderedJSON.object([("action", action), ("status", .string("skipped"))]),
                                raw: [
                                    ("memory", try await one(duplicate, meta: false, on: connection)),
                                    ("reason", "\"duplicate\""),
                                ]))
                        continue
                    }
                    let id = UUID().uuidString.lowercased()
                    try await connection.query(
                        """
                        INSERT INTO chat.memories (id, user_id, type, path, content, meta, embedding, created_at, updated_at)
                        VALUES (\(id), \(user.userID), \(type), \(path), \(content!), \(meta)::json, \(vector), \(now), \(now))
                        """, logger: logger)
                    results.append(
                        OrderedJSON.appending(
                            OrderedJSON.object([("action", action), ("status", .string("created"))]),
                            raw: [("memory", try await one(id, meta: false, on: connection))]))
                case .replace, .move:
                    let id = operation.id!
                    let changed = try await connection.query(
                        """
                        UPDATE chat.memories SET content = coalesce(\(content), content), path = \(path),
                            type = coalesce(\(operation.type?.rawValue), type),
                            meta = (coalesce(meta::jsonb, '{}'::jsonb) || \(meta)::jsonb)::json,
                            embedding = coalesce(\(vector), embedding), updated_at = \(now)
                        WHERE id = \(id) AND user_id = \(user.userID) RETURNING 1
                        """, logger: logger)
                    var found = false
                    for try await _ in changed { found = true }
                    guard found else { throw APIError(.notFound, "Memory not found: \(id)") }
                    if operation.action == .move, embedder != nil {
                        let rows = try await connection.query(
                            "SELECT path, content FROM chat.memories WHERE id = \(id)", logger: logger)
                        for try await (path, content) in rows.decode((String?, String).self) {
                            let moved = try await embedding(path: path, content: content)
                            try await connection.query(
                                "UPDATE chat.memories SET embedding = \(moved) WHERE id = \(id)", logger: logger)
                        }
                    }
                    results.append(
                        OrderedJSON.appending(
                            OrderedJSON.object([("action", action), ("status", .string("updated"))]),
                            raw: [("memory", try await one(id, meta: false, on: connection))]))
                case .remove:
                    let id = operation.id!
                    let removed = try await connection.query(
                        "DELETE FROM chat.memories WHERE id = \(id) AND user_id = \(user.userID) RETURNING 1", logger: logger)
                    var found = false
                    for try await _ in removed { found = true }
                    guard found else { throw APIError(.notFound, "Memory not found: \(id)") }
                    results.append(
                        OrderedJSON.object([("action", action), ("status", .string("deleted")), ("id", .string(id))]))
                }
            }
            return results
        }
        return JSONResponse.text(OrderedJSON.array(results))
    }
}
