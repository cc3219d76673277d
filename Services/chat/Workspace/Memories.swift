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
        routes.post("paths", use: paths)
        routes.post("path", use: pathView)
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
        try await policies.require("memories", of: user, disabled: .notFound, denied: .forbidden)
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

    /// The text embedded for a memory: its path, a newline, its content.
    static func embeddedText(path: String?, content: String) -> String {
        path.map { $0 + "\n" + content } ?? content
    }

    /// Embeddings of memories (`(path, content)` each), in one call to the engine; nils without one.
    func embeddings(_ memories: [(path: String?, content: String)]) async throws -> [[Double]?] {
        guard let embedder, !memories.isEmpty else { return memories.map { _ in nil } }
        return try await embedder.embed(memories.map { Self.embeddedText(path: $0.path, content: $0.content) })
    }

    // MARK: Routes

    @Sendable func list(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try await caller(context)
        let rows = try await history.postgres.query(
            """
            SELECT coalesce(json_agg(m.j ORDER BY m.seq), '[]')::text FROM
                (SELECT \(unescaped: Self.memoryJSON())::json AS j, m.seq FROM chat.memories m WHERE m.user_id = \(user.userID)) m
            """, logger: logger)
        for try await json in rows.decode(String.self) { return JSONResponse.text(json) }
        return JSONResponse.text("[]")
    }

    enum MemoryType: String, Decodable {
        case user, context
    }

    struct AddForm: Decodable {
        var content: String
        var type: MemoryType?
        var path: String?
    }

    @Sendable func add(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try await caller(context)
        let form = try await JSONBody.decode(AddForm.self, from: request)
        let content = try Self.content(form.content)
        let path = try Self.path(form.path)
        let vector = try await embeddings([(path, content)])[0]
        let now = Int(Date().timeIntervalSince1970)
        let rows = try await history.postgres.query(
            """
            INSERT INTO chat.memories AS m (id, user_id, type, path, content, meta, embedding, created_at, updated_at)
            VALUES (\(UUID().uuidString.lowercased()), \(user.userID), \((form.type ?? .context).rawValue), \(path),
                \(content), '{"created_by":"manual"}', \(vector), \(now), \(now))
            RETURNING \(unescaped: Self.memoryJSON())
            """, logger: logger)
        for try await json in rows.decode(String.self) { return JSONResponse.text(json) }
        throw ChatHistory.failed
    }

    struct UpdateForm: Decodable {
        var content: String?
        var type: MemoryType?
        var path: String?
    }

    /// Changes a memory of the caller's. Its new embedding is made outside any transaction, and the write only
    /// lands if the memory's text is still the one embedded (otherwise it is tried again).
    @Sendable func update(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try await caller(context)
        let id = try context.parameters.require("id")
        let form = try await JSONBody.decode(UpdateForm.self, from: request)
        let content = try form.content.map(Self.content)
        let path = try Self.path(form.path)
        guard content != nil || form.type != nil || form.path != nil else {
            throw APIError(.badRequest, "No memory update provided")
        }
        for _ in 0..<3 {
            let rows = try await history.postgres.query(
                "SELECT content, path FROM chat.memories WHERE id = \(id) AND user_id = \(user.userID)", logger: logger)
            var current: (content: String, path: String?)?
            for try await row in rows.decode((String, String?).self) { current = row }
            guard let current else { throw APIError.notFound }
            let newContent = content ?? current.content
            let newPath = form.path != nil ? path : current.path
            let reembed = content != nil || form.path != nil
            let vector = reembed ? try await embeddings([(newPath, newContent)])[0] : nil
            let updated = try await history.postgres.query(
                """
                UPDATE chat.memories m SET content = \(newContent), path = \(newPath),
                    type = coalesce(\(form.type?.rawValue), type),
                    meta = (coalesce(meta::jsonb, '{}'::jsonb) || '{"created_by":"manual"}'::jsonb)::json,
                    embedding = CASE WHEN \(reembed) THEN \(vector) ELSE embedding END,
                    updated_at = \(Int(Date().timeIntervalSince1970))
                WHERE id = \(id) AND user_id = \(user.userID) AND content = \(current.content)
                    AND path IS NOT DISTINCT FROM \(current.path)
                RETURNING \(unescaped: Self.memoryJSON())
                """, logger: logger)
            for try await json in updated.decode(String.self) { return JSONResponse.text(json) }
        }
        throw ChatHistory.failed
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

    /// Embeds again the memories of one user (all users when nil), a batch at a time; a memory changed meanwhile
    /// keeps the embedding its change gave it.
    func reembed(userID: String?) async throws {
        guard embedder != nil else { return }
        var after = ""
        while true {
            let rows = try await history.postgres.query(
                """
                SELECT id, path, content FROM chat.memories
                WHERE (\(userID)::text IS NULL OR user_id = \(userID)) AND id > \(after) ORDER BY id LIMIT 100
                """, logger: logger)
            var batch: [(id: String, path: String?, content: String)] = []
            for try await row in rows.decode((String, String?, String).self) { batch.append(row) }
            guard let last = batch.last else { return }
            let vectors = try await embeddings(batch.map { ($0.path, $0.content) })
            for (memory, vector) in zip(batch, vectors) {
                try await history.postgres.query(
                    """
                    UPDATE chat.memories SET embedding = \(vector) WHERE id = \(memory.id) AND content = \(memory.content)
                        AND path IS NOT DISTINCT FROM \(memory.path)
                    """, logger: logger)
            }
            after = last.id
        }
    }

    /// Re-indexes the caller's memories (deletes nothing, as the original's reset).
    @Sendable func reset(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try await caller(context)
        try await reembed(userID: user.userID)
        return JSONResponse.text("true")
    }

    @Sendable func reindex(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        try await reembed(userID: nil)
        let rows = try await history.postgres.query(
            "SELECT count(DISTINCT user_id)::bigint, count(*)::bigint FROM chat.memories", logger: logger)
        var (users, memories) = (0, 0)
        for try await row in rows.decode((Int, Int).self) { (users, memories) = row }
        return JSONResponse.text(
            OrderedJSON.object([("status", .bool(true)), ("total_users", .int(users)), ("total_memories", .int(memories))]))
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

    /// The vector store's metadata of a memory: times, type and path (left out when empty).
    static let metadataJSON = """
        json_strip_nulls(json_build_object('created_at', created_at, 'updated_at', updated_at, 'type', type, 'path', path))::text
        """

    /// The `k` closest memories in the original's search-result shape (`{ids, documents, metadatas, distances}`,
    /// one inner list each, scores 0...1 with higher closer). Postgres scores and picks them.
    @Sendable func query(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try await caller(context)
        let form = try await JSONBody.decode(QueryForm.self, from: request)
        guard let k = form.k else { return JSONResponse.text("null") }
        let any = try await history.postgres.query(
            "SELECT EXISTS (SELECT 1 FROM chat.memories WHERE user_id = \(user.userID))", logger: logger)
        for try await exists in any.decode(Bool.self) where !exists {
            throw APIError(.notFound, "No memories found for user")
        }
        let text = form.content.trimmingCharacters(in: .whitespacesAndNewlines)
        var sql = SQLBuilder("SELECT id, path, content, " + Self.metadataJSON + ", ")
        if let embedder, !text.isEmpty {
            // Cosine similarity as the original reports it: (1 + cos) / 2.
            let target = sql.placeholder(for: try await embedder.embed([text]).first ?? [])
            sql.append(
                """
                CASE WHEN embedding IS NULL THEN 0 ELSE (1 + coalesce((SELECT sum(a * b) / nullif(sqrt(sum(a * a)) * sqrt(sum(b * b)), 0)
                    FROM unnest(embedding, \(target)::float8[]) AS x(a, b)), 0)) / 2 END
                """)
        } else {
            // Full-text rank of any of the words (as prefixes), folded into 0...1 like the vector scores.
            let words = text.lowercased().split { !$0.isLetter && !$0.isNumber }.prefix(64).map { "'\($0)':*" }
            if words.isEmpty {
                sql.append("0::float8")
            } else {
                let query = sql.placeholder(for: words.joined(separator: " | "))
                sql.append(
                    """
                    (SELECT r / (r + 0.1) FROM (SELECT ts_rank(to_tsvector('simple', coalesce(path, '') || ' ' || content),
                        to_tsquery('simple', \(query)))::float8 AS r) x)
                    """)
            }
        }
        sql.append(" AS score FROM chat.memories WHERE user_id = ")
        sql.bind(user.userID)
        sql.append(" ORDER BY score DESC, id LIMIT \(max(0, k))")
        var ids: [JSONValue] = [], documents: [JSONValue] = [], metadatas: [String] = [], scores: [JSONValue] = []
        for try await (id, path, content, meta, score) in try await history.postgres.query(sql.query, logger: logger)
            .decode((String, String?, String, String, Double).self) where score >= threshold
        {
            ids.append(.string(id))
            documents.append(.string(Self.embeddedText(path: path, content: content)))
            metadatas.append(meta)
            scores.append(.double(score))
        }
        return JSONResponse.text(
            OrderedJSON.appending(
                OrderedJSON.object([("ids", .array([.array(ids)])), ("documents", .array([.array(documents)]))]),
                raw: [
                    ("metadatas", "[" + OrderedJSON.array(metadatas) + "]"),
                    ("distances", JSONValue.array([.array(scores)]).jsonText),
                ]))
    }

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
        let form = try await JSONBody.decode(SearchForm.self, from: request)
        let type = try Self.checkedType(form.type)
        let limit = min(100, max(1, form.limit ?? 20))
        let path = try Self.path(form.path)
        let query = form.query.flatMap { $0.isEmpty ? nil : "%" + $0.likeEscaped + "%" }
        let rows = try await history.postgres.query(
            """
            SELECT coalesce(json_agg(m.j ORDER BY m.r, m.updated_at DESC, m.id), '[]')::text FROM (
                SELECT \(unescaped: Self.memoryJSON())::json AS j, m.updated_at, m.id,
                    CASE WHEN \(path)::text IS NULL THEN 9 WHEN m.path = \(path) THEN 0
                        WHEN starts_with(m.path, \(path) || '/') THEN 1 WHEN starts_with(\(path), m.path || '/') THEN 2
                        ELSE 5 END AS r
                FROM chat.memories m WHERE m.user_id = \(user.userID)
                AND (\(form.memoryID)::text IS NULL OR m.id = \(form.memoryID))
                AND (\(type)::text IS NULL OR m.type = \(type))
                AND (\(path)::text IS NULL OR m.path = \(path) OR starts_with(m.path, \(path) || '/')
                    OR starts_with(\(path), m.path || '/')
                    OR strpos(lower(coalesce(m.path, '') || E'\\n' || m.content), lower(\(path))) > 0)
                AND (\(query)::text IS NULL OR m.content ILIKE \(query) OR m.path ILIKE \(query))
                ORDER BY r, m.updated_at DESC, m.id LIMIT \(limit)) m
            """, logger: logger)
        for try await json in rows.decode(String.self) { return JSONResponse.text(json) }
        return JSONResponse.text("[]")
    }

    // MARK: Paths

    static func checkedType(_ type: String?) throws -> String? {
        guard let type else { return nil }
        guard ["user", "context", "all"].contains(type) else {
            throw APIError.validation([
                ValidationIssue(
                    type: "literal_error", loc: [.string("body"), .string("type")],
                    msg: "Input should be 'user', 'context' or 'all'", input: .string(type))
            ])
        }
        return type == "all" ? nil : type
    }

    /// The caller's memories (of one type, or all) as (id, type, path, updated_at, JSON without `meta`).
    func memoryRows(_ user: Identity, type: String?) async throws -> [(id: String, type: String, path: String?, updated: Int, content: String, json: String)] {
        let rows = try await history.postgres.query(
            """
            SELECT m.id, m.type, m.path, m.updated_at, m.content, \(unescaped: Self.memoryJSON(meta: false))
            FROM chat.memories m WHERE m.user_id = \(user.userID) AND (\(type)::text IS NULL OR m.type = \(type))
            """, logger: logger)
        var result: [(id: String, type: String, path: String?, updated: Int, content: String, json: String)] = []
        for try await row in rows.decode((String, String, String?, Int, String, String).self) {
            result.append((row.0, row.1, row.2, row.3, row.4, row.5))
        }
        return result
    }

    struct PathsForm: Decodable {
        var query: String?
        var type: String?
        var limit: Int?
    }

    /// The caller's memory paths: one group per (path, type) with its count, latest change and child paths.
    @Sendable func paths(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try await caller(context)
        let form = try await JSONBody.decode(PathsForm.self, from: request)
        var rows = try await memoryRows(user, type: try Self.checkedType(form.type))
        if let query = form.query?.lowercased(), !query.isEmpty {
            rows = rows.filter { $0.content.lowercased().contains(query) || ($0.path?.lowercased().contains(query) ?? false) }
        }
        let allPaths = Set(rows.compactMap(\.path))
        struct Group { var path: String?; var type: String; var count = 0; var updated = 0 }
        var groups: [String: Group] = [:]
        for row in rows {
            let key = (row.path ?? "\u{0}") + "\u{1}" + row.type
            var group = groups[key] ?? Group(path: row.path, type: row.type)
            group.count += 1
            group.updated = max(group.updated, row.updated)
            groups[key] = group
        }
        let sorted = groups.values.sorted { ($0.updated, $0.path ?? "") > ($1.updated, $1.path ?? "") }
        let limit = min(500, max(1, form.limit ?? 100))
        let items = sorted.prefix(limit).map { group -> String in
            let children = group.path.map { parent in
                Self.children(of: parent, in: allPaths).prefix(20).map(JSONValue.string)
            } ?? []
            return OrderedJSON.object([
                ("path", group.path.map(JSONValue.string) ?? .null), ("type", .string(group.type)), ("count", .int(group.count)),
                ("updated_at", .int(group.updated)), ("children", .array(Array(children))),
            ])
        }
        return JSONResponse.text("{\"paths\":" + OrderedJSON.array(items) + ",\"count\":\(sorted.count)}")
    }

    /// Immediate child paths of `parent` among `paths` (a deeper path counts as its child's), sorted.
    static func children(of parent: String, in paths: Set<String>) -> [String] {
        var result: Set<String> = []
        for path in paths where path.hasPrefix(parent + "/") {
            let rest = path.dropFirst(parent.count + 1)
            guard let first = rest.split(separator: "/").first else { continue }
            result.insert(parent + "/" + first)
        }
        return result.sorted()
    }

    struct PathForm: Decodable {
        var path: String
        var type: String?
        var includeChildren: Bool?
        var limit: Int?

        enum CodingKeys: String, CodingKey {
            case path, type, limit
            case includeChildren = "include_children"
        }
    }

    /// One path: its existing parents, its children, and the memories at it, below it and at its parents.
    @Sendable func pathView(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try await caller(context)
        let form = try await JSONBody.decode(PathForm.self, from: request)
        guard let path = try Self.path(form.path) else { throw APIError(.badRequest, "Memory path is required") }
        let rows = try await memoryRows(user, type: try Self.checkedType(form.type))
        let existing = Set(rows.compactMap(\.path))
        let segments = path.split(separator: "/")
        let parents = (1..<max(1, segments.count)).map { segments.prefix($0).joined(separator: "/") }.filter(existing.contains)
        let children = Array(Self.children(of: path, in: existing).prefix(50))
        let depth = segments.count
        let includeChildren = form.includeChildren ?? true
        let ranked = rows.compactMap { row -> (Int, Int, Int, String, String)? in
            guard let rowPath = row.path else { return nil }
            let rowDepth = rowPath.split(separator: "/").count
            if rowPath == path { return (0, 0, -row.updated, row.id, row.json) }
            if includeChildren, rowPath.hasPrefix(path + "/") { return (1, rowDepth - depth, -row.updated, row.id, row.json) }
            if parents.contains(rowPath) { return (2, depth - rowDepth, -row.updated, row.id, row.json) }
            return nil
        }.sorted { ($0.0, $0.1, $0.2, $0.3) < ($1.0, $1.1, $1.2, $1.3) }
        let limit = min(100, max(1, form.limit ?? 50))
        return JSONResponse.text(
            OrderedJSON.appending(
                OrderedJSON.object([
                    ("path", .string(path)), ("parents", .array(parents.map(JSONValue.string))),
                    ("children", .array(children.map(JSONValue.string))),
                ]), raw: [("memories", OrderedJSON.array(ranked.prefix(limit).map(\.4)))]))
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

    /// One validated operation, with the text to embed for the ones that write text.
    enum Step {
        case add(content: String, path: String?, type: String)
        case replace(id: String, content: String, path: String?, type: String?)
        case move(id: String, path: String?, type: String?)
        case remove(id: String)
    }

    static func steps(_ operations: [BatchForm.Operation]) throws -> [Step] {
        try operations.map { operation in
            func id(_ action: String) throws -> String {
                guard let id = operation.id else { throw APIError(.badRequest, "Memory id is required for \(action)") }
                return id
            }
            switch operation.action {
            case .add:
                return .add(
                    content: try content(operation.content ?? ""), path: try path(operation.path),
                    type: (operation.type ?? .context).rawValue)
            case .replace:
                return .replace(
                    id: try id("replace"), content: try content(operation.content ?? ""), path: try path(operation.path),
                    type: operation.type?.rawValue)
            case .move:
                return .move(id: try id("move"), path: try path(operation.path), type: operation.type?.rawValue)
            case .remove:
                return .remove(id: try id("remove"))
            }
        }
    }

    /// Adds, replaces, moves and removes memories in one transaction; results in operation order. Everything is
    /// validated and embedded (in one call to the engine) before the transaction starts.
    @Sendable func batch(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try await caller(context)
        let form = try await JSONBody.decode(BatchForm.self, from: request)
        guard !form.operations.isEmpty else { throw APIError(.badRequest, "No memory operations provided") }
        let steps = try Self.steps(form.operations)
        // What each step will embed: its own text, or a moved memory's content under its new path.
        let moved = steps.compactMap { step -> String? in if case .move(let id, _, _) = step { id } else { nil } }
        var movedContent: [String: String] = [:]
        if embedder != nil, !moved.isEmpty {
            let rows = try await history.postgres.query(
                "SELECT id, content FROM chat.memories WHERE user_id = \(user.userID) AND id = ANY(\(moved))", logger: logger)
            for try await (id, content) in rows.decode((String, String).self) { movedContent[id] = content }
        }
        let texts = steps.map { step -> (path: String?, content: String)? in
            switch step {
            case .add(let content, let path, _), .replace(_, let content, let path, _): (path, content)
            case .move(let id, let path, _): movedContent[id].map { (path, $0) }
            case .remove: nil
            }
        }
        var vectors = try await embeddings(texts.compactMap { $0 }).makeIterator()
        let stepVectors = texts.map { $0 == nil ? nil : vectors.next() ?? nil }
        let meta = OrderedJSON.object([
            ("created_by", .string(form.source ?? "tool")), ("chat_id", .null), ("message_id", .null), ("model", .null),
        ])
        let now = Int(Date().timeIntervalSince1970)
        let results = try await history.transaction { connection -> [String] in
            var results: [String] = []
            for (step, vector) in zip(steps, stepVectors) {
                results.append(try await apply(step, vector: vector, user: user, meta: meta, now: now, on: connection))
            }
            return results
        }
        return JSONResponse.text(OrderedJSON.array(results))
    }

    /// Replace and move: the memory's (content,) path and type, with the batch's meta merged into its own.
    func rewrite(
        _ action: String, id: String, content: String?, path: String?, type: String?, vector: [Double]?, user: Identity,
        meta: String, now: Int, on connection: PostgresConnection
    ) async throws -> String {
        let updated = try await connection.query(
            """
            UPDATE chat.memories m SET content = coalesce(\(content), content), path = \(path),
                type = coalesce(\(type), type), meta = (coalesce(meta::jsonb, '{}'::jsonb) || \(meta)::jsonb)::json,
                embedding = coalesce(\(vector), embedding), updated_at = \(now)
            WHERE id = \(id) AND user_id = \(user.userID)
            RETURNING \(unescaped: Self.memoryJSON(meta: false))
            """, logger: logger)
        for try await json in updated.decode(String.self) { return Self.result(action, "updated", memory: json) }
        throw APIError(.notFound, "Memory not found: \(id)")
    }

    static func result(_ action: String, _ status: String, memory: String) -> String {
        OrderedJSON.appending(
            OrderedJSON.object([("action", .string(action)), ("status", .string(status))]), raw: [("memory", memory)])
    }

    func apply(
        _ step: Step, vector: [Double]?, user: Identity, meta: String, now: Int, on connection: PostgresConnection
    ) async throws -> String {
        let memory = Self.memoryJSON(meta: false)
        switch step {
        case .add(let content, let path, let type):
            let existing = try await connection.query(
                """
                SELECT \(unescaped: memory) FROM chat.memories m WHERE m.user_id = \(user.userID) AND m.content = \(content)
                AND m.type = \(type) AND m.path IS NOT DISTINCT FROM \(path) LIMIT 1
                """, logger: logger)
            for try await duplicate in existing.decode(String.self) {
                return OrderedJSON.appending(Self.result("add", "skipped", memory: duplicate), raw: [("reason", "\"duplicate\"")])
            }
            let inserted = try await connection.query(
                """
                INSERT INTO chat.memories AS m (id, user_id, type, path, content, meta, embedding, created_at, updated_at)
                VALUES (\(UUID().uuidString.lowercased()), \(user.userID), \(type), \(path), \(content), \(meta)::json,
                    \(vector), \(now), \(now))
                RETURNING \(unescaped: memory)
                """, logger: logger)
            for try await json in inserted.decode(String.self) { return Self.result("add", "created", memory: json) }
            throw ChatHistory.failed
        case .replace(let id, let content, let path, let type):
            return try await rewrite(
                "replace", id: id, content: content, path: path, type: type, vector: vector, user: user, meta: meta,
                now: now, on: connection)
        case .move(let id, let path, let type):
            return try await rewrite(
                "move", id: id, content: nil, path: path, type: type, vector: vector, user: user, meta: meta, now: now,
                on: connection)
        case .remove(let id):
            let removed = try await connection.query(
                "DELETE FROM chat.memories WHERE id = \(id) AND user_id = \(user.userID) RETURNING 1", logger: logger)
            for try await _ in removed {
                return OrderedJSON.object([("action", .string("remove")), ("status", .string("deleted")), ("id", .string(id))])
            }
            throw APIError(.notFound, "Memory not found: \(id)")
        }
    }
}
