// /api/v1/files: uploads streamed to UPLOAD_DIR with their SHA-256 computed on the way, and the real server's
// routes over them (list, search, get, raw content, extracted text, process status as JSON or SSE, rename,
// delete). Text extraction is the retrieval service's: it answers `file.uploaded` with `file.processed`.
import AsyncHTTPClient
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Shared

struct FilesController {
    let store: FileStore
    /// Asks retrieval whether a knowledge base gives a user access to a file they do not own.
    let access: KnowledgeAccess
    /// `RAG_FILE_MAX_SIZE` (MB): larger uploads get 413.
    let maxSize: Int?
    /// `RAG_ALLOWED_FILE_EXTENSIONS`: when set, files to be processed must have one of these extensions.
    let allowedExtensions: [String]
    /// `BYPASS_ADMIN_ACCESS_CONTROL`: admins list everyone's files.
    let adminBypass: Bool
    var logger: Logger { store.logger }

    static let emptyContent = APIError(
        .badRequest, "The content provided is empty. Please ensure that there is text or data present before proceeding.")

    var routes: RouteCollection<ServiceRequestContext> {
        let routes = RouteCollection(context: ServiceRequestContext.self)
        routes.post("/", use: upload)
        routes.get("/", use: list)
        routes.get("search", use: search)
        routes.get("count", use: count)
        routes.get("user/search", use: userSearch)
        routes.get("user/count", use: userCount)
        routes.delete("all", use: deleteAll)
        routes.get(":id", use: get)
        routes.get(":id/process/status", use: status)
        routes.get(":id/data/content", use: dataContent)
        routes.post(":id/data/content/update", use: updateDataContent)
        routes.get(":id/content", use: content)
        routes.get(":id/content/html", use: htmlContent)
        routes.get(":id/content/:name", use: namedContent)
        routes.post(":id/rename", use: rename)
        routes.delete(":id", use: delete)
        return routes
    }

    static func tooLarge(_ megabytes: Int) -> APIError {
        APIError(
            .contentTooLarge,
            "Oops! The file you're trying to upload is too large. Please upload a file that is less than \(megabytes) MB.")
    }

    // MARK: Upload

    @Sendable func upload(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let process = try JSONBody.queryBool(request.queryValue("process"), name: "process", default: true)
        let background = try JSONBody.queryBool(
            request.queryValue("process_in_background"), name: "process_in_background", default: true)
        let missingFile = APIError.validation([
            ValidationIssue(type: "missing", loc: [.string("body"), .string("file")], msg: "Field required", input: .null)
        ])
        guard let boundary = Multipart.boundary(from: request.headers[.contentType]) else { throw missingFile }
        let id = UUID().uuidString.lowercased()
        let partial = store.uploadDirectory.appendingPathComponent(".partial-" + id)
        var stream = MultipartStream(boundary: boundary)
        var current = ""
        var name: String?
        var contentType: String?
        var metadataBytes: [UInt8] = []
        var hasher = SHA256()
        var size = 0
        var handle: FileHandle?
        defer {
            try? handle?.close()
            try? FileManager.default.removeItem(at: partial)
        }
        let limit = maxSize.map { $0 * 1024 * 1024 }
        do {
            for try await chunk in request.body {
                for event in try stream.feed(chunk.readableBytesView) {
                    switch event {
                    case .part(let field, let filename, let type):
                        current = field
                        if field == "file", let filename, name == nil {
                            name = (filename as NSString).lastPathComponent.replacingOccurrences(of: "/", with: "_")
                            contentType = type
                            FileManager.default.createFile(atPath: partial.path, contents: nil)
                            handle = try FileHandle(forWritingTo: partial)
                        }
                    case .data(let bytes):
                        if current == "file", name != nil, let handle {
                            size += bytes.count
                            if let limit, size > limit { throw Self.tooLarge(maxSize!) }
                            hasher.update(data: bytes)
                            try handle.write(contentsOf: bytes)
                        } else if current == "metadata" {
                            metadataBytes += bytes
                            if metadataBytes.count > 1 << 20 { throw APIError(.badRequest, "[ERROR: Invalid metadata format]") }
                        }
                    case .partEnd:
                        if current == "file", handle != nil {
                            try handle?.close()
                            handle = nil
                        }
                        current = ""
                    }
                }
            }
        } catch is MultipartStream.Malformed {
            throw missingFile
        }
        // A body cut off before its closing boundary is not a file.
        guard stream.finished, let name, !name.isEmpty, name != "/", name != ".", name != ".." else { throw missingFile }
        guard size > 0 else { throw Self.emptyContent }
        var metadata: JSONValue = .object([:])
        if !metadataBytes.isEmpty, let text = String(validating: metadataBytes, as: UTF8.self),
            !text.trimmingCharacters(in: .whitespaces).isEmpty, text != "null"
        {
            guard let parsed = JSONValue.parse(text), parsed.objectValue != nil else {
                throw APIError(.badRequest, "[ERROR: Invalid metadata format]")
            }
            metadata = parsed
        }
        let ext = name.contains(".") ? String(name.split(separator: ".").last ?? "").lowercased() : ""
        if process, !allowedExtensions.isEmpty, !allowedExtensions.contains(ext) {
            throw APIError(.badRequest, "[ERROR: File type \(ext) is not allowed]")
        }
        var storageName = id + "_" + name
        if storageName.utf8.count > 250 { storageName = ext.isEmpty || ext.utf8.count > 32 ? id : id + "." + ext }
        let stored = store.uploadDirectory.appendingPathComponent(storageName)
        try FileManager.default.moveItem(at: partial, to: stored)
        let fileHash = metadata["file_hash"]?.stringValue ?? hasher.finalize().map { String(format: "%02x", $0) }.joined()
        let meta = OrderedJSON.object([
            ("name", .string(name)), ("content_type", contentType.map(JSONValue.string) ?? .null), ("size", .int(size)),
            ("file_hash", .string(fileHash)), ("data", metadata),
        ])
        let now = Int(Date().timeIntervalSince1970)
        let row = FileRow(
            id: id, userID: user.userID, hash: nil, filename: name, storageName: storageName,
            data: process ? ["status": .string("pending")] : [:], metaText: meta, createdAt: now, updatedAt: now)
        let event = process
            ? Event(
                type: "file.uploaded", actorID: user.userID,
                data: .object([
                    "file_id": .string(id), "user_id": .string(user.userID), "filename": .string(name),
                    "content_type": contentType.map(JSONValue.string) ?? .null, "storage_name": .string(storageName),
                    "metadata": metadata, "meta": .string(meta), "created_at": .int(now), "user_role": .string(user.role),
                    "group_ids": .array(user.groupIDs.map(JSONValue.string)),
                ])) : nil
        do {
            try await store.insert(row, event: event)
        } catch {
            // No row, no bytes: an upload the database refused leaves nothing behind.
            try? FileManager.default.removeItem(at: stored)
            throw error
        }
        guard process else { return JSONResponse.text(row.responseJSON()) }
        if !background { await waitForProcessing(id) }
        return JSONResponse.text(row.responseJSON(extra: [("status", "true"), ("path", JSONValue.string(storageName).jsonText)]))
    }

    /// Waits (up to ten minutes) until retrieval has processed the file.
    func waitForProcessing(_ id: String) async {
        for _ in 0..<3000 {
            if let row = try? await store.file(id), let status = row.data["status"]?.stringValue, status == "completed" || status == "failed" {
                return
            }
            // A client that went away (or a stopping service) ends the wait.
            do { try await Task.sleep(for: .milliseconds(200)) } catch { return }
        }
    }

    // MARK: Lists

    func visibleToAll(_ user: Identity) -> Bool { user.isAdmin && adminBypass }

    @Sendable func list(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let page = try JSONBody.queryInt(request.queryValue("page"), name: "page") ?? 1
        guard page >= 1 else {
            throw APIError.validation([
                ValidationIssue(
                    type: "greater_than_equal", loc: [.string("query"), .string("page")], msg: "Input should be greater than or equal to 1",
                    input: .string(request.queryValue("page") ?? ""), ctx: .object(["ge": .int(1)]))
            ])
        }
        let withContent = try JSONBody.queryBool(request.queryValue("content"), name: "content", default: true)
        let all = visibleToAll(user)
        let offset = min(page - 1, 1 << 40) * 50
        let rows = try await store.rows(
            """
            SELECT \(unescaped: FileStore.columns(withContent: withContent)) FROM files.files WHERE (\(all) OR user_id = \(user.userID))
            ORDER BY updated_at DESC, id DESC LIMIT 50 OFFSET \(offset)
            """)
        var total = 0
        for try await count in try await store.postgres.query(
            "SELECT count(*)::bigint FROM files.files WHERE (\(all) OR user_id = \(user.userID))", logger: logger
        ).decode(Int.self) { total = count }
        let items = rows.map { $0.responseJSON(withContent: withContent) }
        return JSONResponse.text("{\"items\":" + OrderedJSON.array(items) + ",\"total\":\(total)}")
    }

    /// A glob (`*`, `?`) as a case-insensitive LIKE pattern over the whole name.
    static func likePattern(_ glob: String) -> String {
        glob.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "%", with: "\\%")
            .replacingOccurrences(of: "_", with: "\\_").replacingOccurrences(of: "*", with: "%")
            .replacingOccurrences(of: "?", with: "_")
    }

    @Sendable func search(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let glob = try requiredFilename(request)
        let withContent = try JSONBody.queryBool(request.queryValue("content"), name: "content", default: true)
        let skip = max(0, try JSONBody.queryInt(request.queryValue("skip"), name: "skip") ?? 0)
        let limit = min(1000, max(1, try JSONBody.queryInt(request.queryValue("limit"), name: "limit") ?? 100))
        let all = visibleToAll(user)
        let rows = try await store.rows(
            """
            SELECT \(unescaped: FileStore.columns(withContent: withContent)) FROM files.files WHERE (\(all) OR user_id = \(user.userID))
            AND filename ILIKE \(Self.likePattern(glob)) ESCAPE '\\' ORDER BY created_at DESC, id DESC
            LIMIT \(limit) OFFSET \(min(skip, 1 << 40))
            """)
        guard !rows.isEmpty else { throw APIError(.notFound, "No files found matching the pattern.") }
        return JSONResponse.text(OrderedJSON.array(rows.map { $0.responseJSON(withContent: withContent) }))
    }

    /// The caller's own files matching a glob (`*` by default); an empty list when none match.
    @Sendable func userSearch(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let glob = request.queryValue("filename") ?? "*"
        let withContent = try JSONBody.queryBool(request.queryValue("content"), name: "content", default: false)
        let skip = max(0, try JSONBody.queryInt(request.queryValue("skip"), name: "skip") ?? 0)
        let limit = min(1000, max(1, try JSONBody.queryInt(request.queryValue("limit"), name: "limit") ?? 50))
        let rows = try await store.rows(
            """
            SELECT \(unescaped: FileStore.columns(withContent: withContent)) FROM files.files WHERE user_id = \(user.userID)
            AND filename ILIKE \(Self.likePattern(glob)) ESCAPE '\\' ORDER BY created_at DESC, id DESC
            LIMIT \(limit) OFFSET \(min(skip, 1 << 40))
            """)
        return JSONResponse.text(OrderedJSON.array(rows.map { $0.responseJSON(withContent: withContent) }))
    }

    @Sendable func userCount(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        for try await count in try await store.postgres.query(
            "SELECT count(*)::bigint FROM files.files WHERE user_id = \(user.userID)", logger: logger
        ).decode(Int.self) { return JSONResponse.text(String(count)) }
        return JSONResponse.text("0")
    }

    func requiredFilename(_ request: Request) throws -> String {
        guard let value = request.queryValue("filename") else {
            throw APIError.validation([
                ValidationIssue(type: "missing", loc: [.string("query"), .string("filename")], msg: "Field required", input: .null)
            ])
        }
        return value
    }

    @Sendable func count(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let all = visibleToAll(user)
        for try await count in try await store.postgres.query(
            "SELECT count(*)::bigint FROM files.files WHERE (\(all) OR user_id = \(user.userID))", logger: logger
        ).decode(Int.self) { return JSONResponse.text(String(count)) }
        return JSONResponse.text("0")
    }

    @Sendable func deleteAll(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireAdmin()
        let rows = try await store.rows("SELECT \(unescaped: FileStore.columns(withContent: false)) FROM files.files")
        for start in stride(from: 0, to: rows.count, by: 500) {
            try await store.delete(Array(rows[start..<min(rows.count, start + 500)]), actor: user.userID)
        }
        return JSONResponse.text(OrderedJSON.object(["message": .string("All files deleted successfully")]))
    }

    // MARK: One file

    /// The file when the caller may `permission` it (its owner, an admin, or through a knowledge base); 404
    /// otherwise, as the original answers.
    func file(_ context: ServiceRequestContext, _ permission: String = "read") async throws -> (Identity, FileRow) {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        guard let row = try await store.file(id) else { throw APIError.notFound }
        if row.userID != user.userID, !user.isAdmin {
            guard try await access.allows(user, file: id, permission: permission) else { throw APIError.notFound }
        }
        return (user, row)
    }

    @Sendable func get(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (_, row) = try await file(context)
        return JSONResponse.text(row.modelJSON)
    }

    static func statusEvent(_ row: FileRow?) -> String {
        guard let row else { return "{\"status\":\"not_found\"}" }
        var pairs: [(String, JSONValue)] = [("status", row.data["status"] ?? .string("pending"))]
        if row.data["status"]?.stringValue == "failed" { pairs.append(("error", row.data["error"] ?? .null)) }
        return OrderedJSON.object(pairs)
    }

    /// The processing state, once as JSON or (`stream=true`) as SSE each second until it ends.
    @Sendable func status(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (_, row) = try await file(context)
        let streamed = try JSONBody.queryBool(request.queryValue("stream"), name: "stream", default: false)
        guard streamed else {
            return JSONResponse.text(OrderedJSON.object(["status": row.data["status"] ?? .string("pending")]))
        }
        let store = self.store
        let id = row.id
        return Response(
            status: .ok, headers: [.contentType: "text/event-stream; charset=utf-8", .cacheControl: "no-cache"],
            body: ResponseBody { writer in
                var current: FileRow? = row
                for _ in 0..<7200 {
                    guard let file = current else {
                        try await writer.write(ByteBuffer(string: "data: " + Self.statusEvent(nil) + "\n\n"))
                        break
                    }
                    guard let status = file.data["status"]?.stringValue else { break }
                    try await writer.write(ByteBuffer(string: "data: " + Self.statusEvent(file) + "\n\n"))
                    if status == "completed" || status == "failed" { break }
                    try await Task.sleep(for: .seconds(1))
                    current = try await store.file(id)
                }
                try await writer.finish(nil)
            })
    }

    @Sendable func dataContent(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (_, row) = try await file(context)
        return JSONResponse.text(OrderedJSON.object(["content": .string(row.data["content"]?.stringValue ?? "")]))
    }

    struct ContentForm: Decodable { var content: String }

    @Sendable func updateDataContent(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (user, row) = try await file(context, "write")
        let form = try await JSONBody.decode(ContentForm.self, from: request, limit: 64 << 20)
        guard !form.content.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { throw Self.emptyContent }
        if let maxSize, form.content.utf8.count > maxSize * 1024 * 1024 { throw Self.tooLarge(maxSize) }
        let hash = SHA256.hash(data: Data(form.content.utf8)).map { String(format: "%02x", $0) }.joined()
        try await store.postgres.withTransaction(logger: logger) { connection in
            try await FileStore.updateData(
                row.id, ["content": .string(form.content), "status": .string("completed"), "error": .null], hash: .some(hash),
                on: connection, logger: logger)
            try await store.outbox.enqueue(
                Event(
                    type: "file.content_updated", actorID: user.userID,
                    data: .object(["file_id": .string(row.id), "user_id": .string(row.userID), "content": .string(form.content)])),
                on: connection, logger: logger)
        }
        return JSONResponse.text(OrderedJSON.object(["content": .string(form.content)]))
    }

    // MARK: Bytes

    /// `filename*=UTF-8''<percent-encoded name>` as Python's `quote` writes it.
    static func dispositionName(_ name: String) -> String {
        let safe = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~/")
        return "filename*=UTF-8''" + (name.addingPercentEncoding(withAllowedCharacters: safe) ?? name)
    }

    /// The stored bytes, streamed from disk in chunks.
    func bytes(_ row: FileRow, contentType: String, disposition: String?, context: ServiceRequestContext) async throws -> Response {
        let body: ResponseBody
        do {
            body = try await FileIO().loadFile(path: store.url(of: row).path, context: context)
        } catch {
            throw APIError.notFound
        }
        var headers: HTTPFields = [.contentType: contentType]
        if let disposition { headers[.contentDisposition] = disposition }
        return Response(status: .ok, headers: headers, body: body)
    }

    static func withCharset(_ type: String) -> String {
        type.hasPrefix("text/") && !type.contains("charset") ? type + "; charset=utf-8" : type
    }

    static func guessedType(_ name: String) -> String {
        switch (name as NSString).pathExtension.lowercased() {
        case "html", "htm": return "text/html"
        case "md": return "text/markdown"
        case "json": return "application/json"
        case "csv": return "text/csv"
        case "pdf": return "application/pdf"
        case "png": return "image/png"
        case "jpg", "jpeg": return "image/jpeg"
        case "gif": return "image/gif"
        case "webp": return "image/webp"
        default: return "text/plain"
        }
    }

    @Sendable func content(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (_, row) = try await file(context)
        let attachment = try JSONBody.queryBool(request.queryValue("attachment"), name: "attachment", default: false)
        let name = row.displayName
        var type = row.contentType ?? Self.guessedType(row.storageName)
        let disposition: String?
        if attachment {
            disposition = "attachment; " + Self.dispositionName(name)
        } else if type == "application/pdf" || name.lowercased().hasSuffix(".pdf") {
            type = "application/pdf"
            disposition = "inline; " + Self.dispositionName(name)
        } else if type != "text/plain" {
            disposition = "attachment; " + Self.dispositionName(name)
        } else {
            disposition = nil
        }
        return try await bytes(row, contentType: Self.withCharset(type), disposition: disposition, context: context)
    }

    /// An HTML file shown as a page, only when an admin uploaded it (anyone else's page could run as the reader).
    @Sendable func htmlContent(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (user, row) = try await file(context)
        let ownerIsAdmin = row.userID == user.userID ? user.isAdmin : try await access.isAdmin(row.userID)
        guard ownerIsAdmin else { throw APIError.notFound }
        return try await bytes(row, contentType: Self.withCharset(Self.guessedType(row.storageName)), disposition: nil, context: context)
    }

    @Sendable func namedContent(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (_, row) = try await file(context)
        return try await bytes(
            row, contentType: Self.withCharset(Self.guessedType(row.storageName)),
            disposition: "attachment; " + Self.dispositionName(row.displayName), context: context)
    }

    struct RenameForm: Decodable { var filename: String }

    @Sendable func rename(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (_, row) = try await file(context, "write")
        let form = try await JSONBody.decode(RenameForm.self, from: request)
        var meta = OrderedObject(row.meta, first: ["name", "content_type", "size", "file_hash", "data"])
        meta["name"] = .string(form.filename)
        let now = Int(Date().timeIntervalSince1970)
        try await store.postgres.withTransaction(logger: logger) { connection in
            try await connection.query(
                "UPDATE files.files SET filename = \(form.filename), meta = \(meta.text), updated_at = \(now) WHERE id = \(row.id)",
                logger: logger)
            try await store.outbox.enqueue(
                Event(
                    type: "file.renamed", actorID: row.userID,
                    data: .object(["file_id": .string(row.id), "filename": .string(form.filename), "meta": .string(meta.text)])),
                on: connection, logger: logger)
        }
        guard let updated = try await store.file(row.id) else { throw APIError.notFound }
        return JSONResponse.text(updated.modelJSON)
    }

    @Sendable func delete(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (user, row) = try await file(context, "write")
        try await store.delete([row], actor: user.userID)
        return JSONResponse.text(OrderedJSON.object(["message": .string("File deleted successfully")]))
    }
}

/// Retrieval's answer on files reached through knowledge bases, and auth's on users' roles.
struct KnowledgeAccess: Sendable {
    let client: HTTPClient
    let baseURL: String
    let internalSecret: String
    let auth: AuthLookup

    func isAdmin(_ userID: String) async throws -> Bool {
        try await auth.users(ids: [userID]).first?.role == "admin"
    }

    func allows(_ user: Identity, file id: String, permission: String) async throws -> Bool {
        guard let escaped = id.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(["-", "_"])) else { return false }
        var request = HTTPClientRequest(url: baseURL + "/internal/retrieval/files/\(escaped)/access?permission=\(permission)")
        InternalHeader.add(user, secret: internalSecret, to: &request.headers)
        do {
            let response = try await client.execute(request, timeout: .seconds(10))
            let body = try await response.body.collect(upTo: 1 << 16)
            return response.status == .ok && (try? JSONDecoder().decode(JSONValue.self, from: body))?["allowed"]?.boolValue == true
        } catch {
            throw APIError.unavailable
        }
    }
}
