// /api/v1/knowledge (knowledge bases and their files), /api/v1/retrieval (queries, text and file processing) and
// the internal route the chat service asks for a completion's sources.
import Foundation
import Hummingbird
import Logging
import PostgresNIO
import Shared

struct KnowledgeController {
    let store: KnowledgeStore
    let indexer: Indexer
    let auth: AuthLookup
    /// `BYPASS_ADMIN_ACCESS_CONTROL`.
    let adminBypass: Bool
    var chunks: ChunkStore { indexer.chunks }

    static let notFound400 = APIError(.badRequest, ErrorText.notFound)
    static let prohibited400 = APIError(.badRequest, ErrorText.accessProhibited)

    var routes: RouteCollection<ServiceRequestContext> {
        let routes = RouteCollection(context: ServiceRequestContext.self)
        routes.get("/", use: list)
        routes.get("search", use: list)
        routes.post("create", use: create)
        routes.get(":id", use: get)
        routes.post(":id/update", use: update)
        routes.post(":id/access/update", use: updateAccess)
        routes.get(":id/files", use: files)
        routes.post(":id/file/add", use: addFile)
        routes.post(":id/file/update", use: updateFile)
        routes.post(":id/files/batch/add", use: addFiles)
        routes.get(":id/files/pending", use: pendingFiles)
        routes.post(":id/file/remove", use: removeFile)
        routes.post(":id/reset", use: reset)
        routes.delete(":id/delete", use: delete)
        return routes
    }

    // MARK: Shapes

    func filesJSON(_ id: String) async throws -> String {
        OrderedJSON.array(try await store.files(of: id).map(\.0.metadataJSON))
    }

    /// `KnowledgeFilesResponse` with its files, `write_access` false (as the original answers after a change).
    func changedJSON(_ id: String) async throws -> String {
        guard let row = try await store.knowledge(id) else { throw APIError.notFound }
        return row.json([("files", try await filesJSON(id)), ("write_access", "false")])
    }

    // MARK: Routes

    @Sendable func list(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        var rows = try await store.rows("true", suffix: "ORDER BY k.updated_at DESC, k.id")
        if !(user.isAdmin && adminBypass) { rows = rows.filter { $0.userID == user.userID || $0.granted("read", to: user) } }
        switch request.queryValue("view_option") {
        case "created": rows = rows.filter { $0.userID == user.userID }
        case "shared": rows = rows.filter { $0.userID != user.userID }
        default: break
        }
        let owners = try await OwnerLookup(auth: auth).owners(Set(rows.map(\.userID)), caller: user)
        if let query = request.queryValue("query")?.lowercased(), !query.isEmpty {
            rows = rows.filter { row in
                row.name.lowercased().contains(query) || row.description.lowercased().contains(query)
                    || (owners[row.userID].map { $0.name.lowercased().contains(query) || $0.email.lowercased().contains(query) } ?? false)
            }
        }
        if let orderBy = request.queryValue("order_by"), ["name", "created_at", "updated_at"].contains(orderBy) {
            let ascending = request.queryValue("direction") == "asc"
            rows.sort { a, b in
                switch orderBy {
                case "name": return ascending ? a.name < b.name : a.name > b.name
                case "created_at": return ascending ? a.createdAt < b.createdAt : a.createdAt > b.createdAt
                default: return ascending ? a.updatedAt < b.updatedAt : a.updatedAt > b.updatedAt
                }
            }
        }
        let page = max(1, try JSONBody.queryInt(request.queryValue("page"), name: "page") ?? 1)
        let (skip, overflow) = (page - 1).multipliedReportingOverflow(by: 30)
        let shown = rows.dropFirst(overflow ? rows.count : min(skip, rows.count)).prefix(30)
        var items: [String] = []
        let counts = try await store.fileCounts(shown.map(\.id))
        for row in shown {
            let count = counts[row.id] ?? 0
            let write = (user.isAdmin && adminBypass) || row.userID == user.userID || row.granted("write", to: user)
            items.append(
                row.json([
                    ("user", owners[row.userID].map(\.jsonText) ?? "null"), ("file_count", String(count)),
                    ("write_access", write ? "true" : "false"),
                ]))
        }
        return JSONResponse.text("{\"items\":" + OrderedJSON.array(items) + ",\"total\":\(rows.count)}")
    }

    struct CreateForm: Decodable {
        var name: String
        var description: String
        var accessGrants: [JSONValue]?
        enum CodingKeys: String, CodingKey {
            case name, description
            case accessGrants = "access_grants"
        }
    }

    /// What the user may share of `grants` (admins everything; users need `sharing.knowledge`, and
    /// `sharing.public_knowledge` for everyone).
    func allowed(_ grants: [JSONValue], user: Identity) async throws -> [JSONValue] {
        guard !user.isAdmin, !grants.isEmpty else { return grants }
        let policy = try await auth.userPolicy(userID: user.userID)
        guard policy.allows("sharing.knowledge") else { return [] }
        return grants.filter { grant in
            if grant["principal_id"]?.stringValue == "*" { return policy.allows("sharing.public_knowledge") }
            return policy.allows(grant["principal_type"]?.stringValue == "group" ? "access_grants.allow_groups" : "access_grants.allow_users")
        }
    }

    @Sendable func create(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        if !user.isAdmin, try await !auth.userPolicy(userID: user.userID).allows("workspace.knowledge") {
            throw APIError.unauthorized
        }
        let form = try await JSONBody.decode(CreateForm.self, from: request)
        let id = UUID().uuidString.lowercased()
        let now = Int(Date().timeIntervalSince1970)
        try await store.postgres.query(
            """
            INSERT INTO retrieval.knowledge (id, user_id, name, description, created_at, updated_at)
            VALUES (\(id), \(user.userID), \(form.name), \(form.description), \(now), \(now))
            """, logger: store.logger)
        try await store.replaceGrants(try await allowed(form.accessGrants ?? [], user: user), knowledgeID: id)
        guard let row = try await store.knowledge(id) else { throw APIError.notFound }
        return JSONResponse.text(row.json([("files", "null")]))
    }

    func row(_ context: ServiceRequestContext) async throws -> (Identity, KnowledgeRow?) {
        let user = try context.requireVerified()
        return (user, try await store.knowledge(try context.parameters.require("id")))
    }

    /// The knowledge base the caller may change; 400 as the original answers otherwise.
    func writable(_ context: ServiceRequestContext) async throws -> (Identity, KnowledgeRow) {
        let (user, row) = try await row(context)
        guard let row else { throw Self.notFound400 }
        guard row.writable(by: user) else { throw Self.prohibited400 }
        return (user, row)
    }

    @Sendable func get(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (user, row) = try await row(context)
        guard let row else { throw APIError.notFound }
        guard row.readable(by: user) else { throw APIError.accessProhibited }
        let write = (user.isAdmin && adminBypass) || row.userID == user.userID || row.granted("write", to: user)
        return JSONResponse.text(row.json([("files", "null"), ("write_access", write ? "true" : "false")]))
    }

    @Sendable func update(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (_, row) = try await writable(context)
        let form = try await JSONBody.decode(CreateForm.self, from: request)
        let now = Int(Date().timeIntervalSince1970)
        try await store.postgres.query(
            """
            UPDATE retrieval.knowledge SET name = \(form.name), description = \(form.description), updated_at = \(now)
            WHERE id = \(row.id)
            """, logger: store.logger)
        return JSONResponse.text(try await changedJSON(row.id))
    }

    struct AccessForm: Decodable {
        var accessGrants: [JSONValue]
        enum CodingKeys: String, CodingKey { case accessGrants = "access_grants" }
    }

    @Sendable func updateAccess(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (user, row) = try await writable(context)
        let form = try await JSONBody.decode(AccessForm.self, from: request)
        let chosen = try await allowed(form.accessGrants, user: user)
        guard chosen.count == form.accessGrants.count else {
            throw APIError(.forbidden, "You do not have permission to share with the requested audience")
        }
        try await store.replaceGrants(chosen, knowledgeID: row.id)
        return JSONResponse.text(try await changedJSON(row.id))
    }

    @Sendable func files(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (user, row) = try await row(context)
        guard let row else { throw Self.notFound400 }
        guard row.readable(by: user) else { throw Self.prohibited400 }
        var files = try await store.files(of: row.id)
        if let query = request.queryValue("query")?.lowercased(), !query.isEmpty {
            files = files.filter { $0.0.filename.lowercased().contains(query) }
        }
        let page = max(1, try JSONBody.queryInt(request.queryValue("page"), name: "page") ?? 1)
        let (skip, overflow) = (page - 1).multipliedReportingOverflow(by: 30)
        let shown = files.dropFirst(overflow ? files.count : min(skip, files.count)).prefix(30)
        let adders = try await OwnerLookup(auth: auth).owners(Set(shown.map(\.addedBy)), caller: user)
        let items = shown.map { file, adder -> String in
            OrderedJSON.appending(
                "{}",
                raw: [
                    ("id", JSONValue.string(file.id).jsonText), ("user_id", JSONValue.string(file.userID).jsonText),
                    ("hash", (file.hash.map(JSONValue.string) ?? .null).jsonText), ("filename", JSONValue.string(file.filename).jsonText),
                    ("data", "null"), ("meta", file.meta), ("created_at", String(file.createdAt)),
                    ("updated_at", String(file.updatedAt)), ("directory_id", "null"), ("directory_path", "\"\""),
                    ("has_original", "true"), ("user", adders[adder].map(\.jsonText) ?? "null"),
                ])
        }
        return JSONResponse.text(
            "{\"items\":" + OrderedJSON.array(items) + ",\"directories\":[],\"breadcrumbs\":[],\"total\":\(files.count)}")
    }

    struct FileForm: Decodable {
        var fileID: String
        enum CodingKeys: String, CodingKey { case fileID = "file_id" }
    }

    @Sendable func addFile(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (user, row) = try await writable(context)
        let form = try await JSONBody.decode(FileForm.self, from: request)
        guard let file = try await store.file(form.fileID) else { throw Self.notFound400 }
        guard file.content != nil || file.status != "pending" else {
            throw APIError(
                .badRequest,
                "Extracted content is not available for this file. Please ensure that the file is processed before proceeding.")
        }
        guard file.userID == user.userID || user.isAdmin else { throw APIError.forbidden }
        do {
            try await indexer.addToKnowledge(fileID: file.id, knowledgeID: row.id, userID: user.userID)
        } catch let error as APIError {
            throw APIError(.badRequest, error.detail.stringValue ?? "\(error.detail)")
        }
        return JSONResponse.text(try await changedJSON(row.id))
    }

    /// Indexes a file of the knowledge base again from its current text.
    @Sendable func updateFile(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (user, row) = try await writable(context)
        let form = try await JSONBody.decode(FileForm.self, from: request)
        guard try await store.file(form.fileID) != nil, try await store.collections(containing: form.fileID).contains(row.id) else {
            throw Self.notFound400
        }
        do {
            try await indexer.addToKnowledge(fileID: form.fileID, knowledgeID: row.id, userID: user.userID)
        } catch let error as APIError {
            throw APIError(.badRequest, error.detail.stringValue ?? "\(error.detail)")
        }
        return JSONResponse.text(try await changedJSON(row.id))
    }

    /// Several files at once; files already in the knowledge base are left as they are.
    @Sendable func addFiles(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (user, row) = try await writable(context)
        let forms = try await JSONBody.decode([FileForm].self, from: request)
        let linked = Set(try await store.files(of: row.id).map(\.0.id))
        for form in forms where !linked.contains(form.fileID) {
            guard let file = try await store.file(form.fileID) else { throw APIError(.badRequest, "File \(form.fileID) not found") }
            guard file.userID == user.userID || user.isAdmin else { throw APIError.forbidden }
            do {
                try await indexer.addToKnowledge(fileID: file.id, knowledgeID: row.id, userID: user.userID)
            } catch let error as APIError {
                throw APIError(.badRequest, error.detail.stringValue ?? "\(error.detail)")
            }
        }
        return JSONResponse.text(try await changedJSON(row.id))
    }

    /// Files uploaded for the knowledge base that are still being processed (not in it yet).
    @Sendable func pendingFiles(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (user, row) = try await row(context)
        guard let row else { throw APIError.notFound }
        guard row.readable(by: user) else { throw Self.prohibited400 }
        let rows = try await store.postgres.query(
            """
            SELECT f.id, f.user_id, f.filename, f.meta, f.status, f.created_at, f.updated_at FROM retrieval.files f
            WHERE f.status IN ('pending', 'processing') AND (f.meta::jsonb -> 'data' ->> 'knowledge_id') = \(row.id)
            AND NOT EXISTS (SELECT 1 FROM retrieval.knowledge_files kf WHERE kf.knowledge_id = \(row.id) AND kf.file_id = f.id)
            ORDER BY f.created_at, f.id
            """, logger: store.logger)
        var items: [String] = []
        for try await (id, owner, name, meta, status, created, updated) in rows.decode((String, String, String, String, String, Int, Int).self) {
            items.append(
                OrderedJSON.appending(
                    "{}",
                    raw: [
                        ("id", JSONValue.string(id).jsonText), ("user_id", JSONValue.string(owner).jsonText), ("hash", "null"),
                        ("filename", JSONValue.string(name).jsonText), ("data", OrderedJSON.object(["status": .string(status)])),
                        ("meta", meta), ("created_at", String(created)), ("updated_at", String(updated)),
                    ]))
        }
        return JSONResponse.text(OrderedJSON.array(items))
    }

    @Sendable func removeFile(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (_, row) = try await writable(context)
        let form = try await JSONBody.decode(FileForm.self, from: request)
        guard try await store.collections(containing: form.fileID).contains(row.id) else { throw Self.notFound400 }
        try await store.postgres.query(
            "DELETE FROM retrieval.knowledge_files WHERE knowledge_id = \(row.id) AND file_id = \(form.fileID)", logger: store.logger)
        try await chunks.delete(collection: row.id, fileID: form.fileID)
        return JSONResponse.text(try await changedJSON(row.id))
    }

    @Sendable func reset(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (_, row) = try await writable(context)
        try await chunks.delete(collection: row.id)
        try await store.postgres.query("DELETE FROM retrieval.knowledge_files WHERE knowledge_id = \(row.id)", logger: store.logger)
        try await store.postgres.query(
            "UPDATE retrieval.knowledge SET updated_at = \(Int(Date().timeIntervalSince1970)) WHERE id = \(row.id)", logger: store.logger)
        guard let updated = try await store.knowledge(row.id) else { throw APIError.notFound }
        return JSONResponse.text(updated.json([("files", "null")]))
    }

    @Sendable func delete(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (_, row) = try await writable(context)
        try await store.delete(ids: [row.id])
        return JSONResponse.text("true")
    }
}

struct RetrievalController {
    let knowledge: KnowledgeStore
    let chunks: ChunkStore
    let indexer: Indexer

    var routes: RouteCollection<ServiceRequestContext> {
        let routes = RouteCollection(context: ServiceRequestContext.self)
        routes.post("query/doc", use: queryDoc)
        routes.post("query/collection", use: queryCollection)
        routes.post("process/text", use: processText)
        routes.post("process/file", use: processFile)
        return routes
    }

    var internalRoutes: RouteCollection<ServiceRequestContext> {
        let routes = RouteCollection(context: ServiceRequestContext.self)
        routes.post("sources", use: sources)
        routes.get("files/:id/access", use: fileAccess)
        return routes
    }

    /// Whether the user may search a collection: a file's (`file-<id>`: its owner, or through a readable knowledge
    /// base), a knowledge base's (readable); admins all.
    func mayRead(_ collection: String, user: Identity) async throws -> Bool {
        guard collection.range(of: "^[A-Za-z0-9_-]+$", options: .regularExpression) != nil else { return false }
        if user.isAdmin { return true }
        if collection.hasPrefix("file-") {
            let id = String(collection.dropFirst(5))
            guard let file = try await knowledge.file(id) else { return false }
            if file.userID == user.userID { return true }
            for knowledgeID in try await knowledge.collections(containing: id) {
                if try await knowledge.knowledge(knowledgeID)?.readable(by: user) == true { return true }
            }
            return false
        }
        return try await knowledge.knowledge(collection)?.readable(by: user) ?? false
    }

    /// Whether the user may add to a named collection: their own file's, a knowledge base they may write; admins all.
    func mayWrite(_ collection: String, user: Identity) async throws -> Bool {
        guard collection.range(of: "^[A-Za-z0-9_-]+$", options: .regularExpression) != nil else { return false }
        if user.isAdmin { return true }
        if collection.hasPrefix("file-") {
            return try await knowledge.file(String(collection.dropFirst(5)))?.userID == user.userID
        }
        return try await knowledge.knowledge(collection)?.writable(by: user) ?? false
    }

    struct QueryForm: Decodable {
        var collectionName: String?
        var collectionNames: [String]?
        var query: String
        var k: Int?
        enum CodingKeys: String, CodingKey {
            case query, k
            case collectionName = "collection_name"
            case collectionNames = "collection_names"
        }
    }

    func hits(_ collections: [String], query: String, k: Int?, user: Identity) async throws -> [Hit] {
        guard collections.count <= 100 else { throw APIError(.badRequest, "Query at most 100 collections at a time") }
        for collection in collections where try await !mayRead(collection, user: user) { throw APIError.forbidden }
        return try await search(query, collections: collections, k: k)
    }

    /// The best chunks, `TOP_K` unless `k` is given, none scoring under `RELEVANCE_THRESHOLD` (when it is set).
    func search(_ query: String, collections: [String], k: Int?) async throws -> [Hit] {
        let settings = try await chunks.settings.current().settings
        let found = try await chunks.search(query, collections: collections, k: k ?? settings.topK)
        return settings.relevanceThreshold > 0 ? found.filter { $0.score >= settings.relevanceThreshold } : found
    }

    @Sendable func queryDoc(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let form = try await JSONBody.decode(QueryForm.self, from: request)
        guard let collection = form.collectionName else {
            throw APIError.validation([
                ValidationIssue(type: "missing", loc: [.string("body"), .string("collection_name")], msg: "Field required", input: .null)
            ])
        }
        let found = try await hits([collection], query: form.query, k: form.k, user: user)
        return JSONResponse.text(
            OrderedJSON.appending(
                "{}",
                raw: [
                    ("ids", JSONValue.array([.array(found.map { .string($0.id) })]).jsonText),
                    ("documents", JSONValue.array([.array(found.map { .string($0.text) })]).jsonText),
                    ("metadatas", "[[" + found.map(\.metadataText).joined(separator: ",") + "]]"),
                    ("distances", JSONValue.array([.array(found.map { .double($0.score) })]).jsonText),
                ]))
    }

    @Sendable func queryCollection(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let form = try await JSONBody.decode(QueryForm.self, from: request)
        guard let collections = form.collectionNames else {
            throw APIError.validation([
                ValidationIssue(type: "missing", loc: [.string("body"), .string("collection_names")], msg: "Field required", input: .null)
            ])
        }
        let found = try await hits(collections, query: form.query, k: form.k, user: user)
        return JSONResponse.text(
            OrderedJSON.appending(
                "{}",
                raw: [
                    ("distances", JSONValue.array([.array(found.map { .double($0.score) })]).jsonText),
                    ("documents", JSONValue.array([.array(found.map { .string($0.text) })]).jsonText),
                    ("metadatas", "[[" + found.map(\.metadataText).joined(separator: ",") + "]]"),
                ]))
    }

    struct TextForm: Decodable {
        var name: String
        var content: String
        var collectionName: String?
        enum CodingKeys: String, CodingKey {
            case name, content
            case collectionName = "collection_name"
        }
    }

    @Sendable func processText(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let form = try await JSONBody.decode(TextForm.self, from: request, limit: 64 << 20)
        let collection = form.collectionName ?? Indexer.sha256(form.content)
        if form.collectionName != nil, try await !mayWrite(collection, user: user) { throw APIError.forbidden }
        if try await !chunks.exists(collection: collection) {
            let settings = try await chunks.settings.current().settings
            let pieces = Chunker.chunks(of: form.content, size: settings.chunkSize, overlap: settings.chunkOverlap).map {
                Chunk(text: $0.text, metadata: ["name": .string(form.name), "created_by": .string(user.userID), "start_index": .int($0.start)])
            }
            guard !pieces.isEmpty else {
                throw APIError(.badRequest, "The content provided is empty. Please ensure that there is text or data present before proceeding.")
            }
            try await chunks.add(pieces, collection: collection, fileID: nil)
        }
        return JSONResponse.text(
            OrderedJSON.object([("status", .bool(true)), ("collection_name", .string(collection)), ("content", .string(form.content))]))
    }

    struct FileForm: Decodable {
        var fileID: String
        var content: String?
        var collectionName: String?
        enum CodingKeys: String, CodingKey {
            case content
            case fileID = "file_id"
            case collectionName = "collection_name"
        }
    }

    /// Indexes a file again: from new `content`, into another collection (a knowledge base), or from its text.
    @Sendable func processFile(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let form = try await JSONBody.decode(FileForm.self, from: request, limit: 64 << 20)
        guard let file = try await knowledge.file(form.fileID), file.userID == user.userID || user.isAdmin else {
            throw APIError.notFound
        }
        let collection: String
        do {
            if let name = form.collectionName {
                guard let row = try await knowledge.knowledge(name), row.writable(by: user) else { throw APIError.forbidden }
                try await indexer.addToKnowledge(fileID: file.id, knowledgeID: name, userID: user.userID)
                collection = name
            } else {
                guard let text = form.content ?? file.content else {
                    throw APIError(
                        .badRequest,
                        "The content provided is empty. Please ensure that there is text or data present before proceeding.")
                }
                try await indexer.index(fileID: file.id, text: text)
                try await indexer.finish(file.id, status: "completed", content: text, hash: Indexer.sha256(text), error: nil, stored: true)
                collection = "file-" + file.id
            }
        } catch let error as APIError where error.status != .forbidden {
            throw APIError(.badRequest, error.detail.stringValue ?? "\(error.detail)")
        }
        let content = try await knowledge.file(file.id)?.content ?? ""
        return JSONResponse.text(OrderedJSON.object([
            ("status", .bool(true)), ("collection_name", .string(collection)), ("filename", .string(file.filename)),
            ("content", .string(content)),
        ]))
    }

    /// `GET /internal/retrieval/files/{id}/access?permission=read|write` (the files service, for a user who does
    /// not own the file): `{"allowed": true}` when a knowledge base holding the file lets the user read it (write:
    /// write it, and its owner owns the file), as the original's `has_access_to_file`.
    @Sendable func fileAccess(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireUser()
        let id = try context.parameters.require("id")
        let write = request.queryValue("permission") == "write"
        var allowed = false
        if let file = try await knowledge.file(id) {
            for knowledgeID in try await knowledge.collections(containing: id) {
                guard let row = try await knowledge.knowledge(knowledgeID) else { continue }
                if write ? (row.writable(by: user) && row.userID == file.userID) : row.readable(by: user) {
                    allowed = true
                    break
                }
            }
        }
        return JSONResponse.text(allowed ? "{\"allowed\":true}" : "{\"allowed\":false}")
    }

    /// `POST /internal/retrieval/sources` (chat, for a completion's `files`): one source per readable item,
    /// `{source, document, metadata, distances}`; items the user may not read are left out, as the original does.
    @Sendable func sources(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireUser()
        let body = try await JSONBody.decode(JSONValue.self, from: request, limit: 16 << 20)
        let query = body["query"]?.stringValue ?? ""
        var results: [String] = []
        for item in body["items"]?.arrayValue ?? [] {
            guard let id = item["id"]?.stringValue else { continue }
            let collection: String
            switch item["type"]?.stringValue {
            case "file": collection = "file-" + id
            case "collection": collection = id
            default: continue
            }
            guard try await mayRead(collection, user: user) else { continue }
            let found = try await search(query, collections: [collection], k: nil)
            guard !found.isEmpty else { continue }
            var source = item.objectValue ?? [:]
            source["data"] = nil
            results.append(
                OrderedJSON.appending(
                    "{}",
                    raw: [
                        ("source", OrderedObject(source, first: ["type", "id", "name"]).text),
                        ("document", JSONValue.array(found.map { .string($0.text) }).jsonText),
                        ("metadata", "[" + found.map(\.metadataText).joined(separator: ",") + "]"),
                        ("distances", JSONValue.array(found.map { .double($0.score) }).jsonText),
                    ]))
        }
        return JSONResponse.text(OrderedJSON.array(results))
    }
}
