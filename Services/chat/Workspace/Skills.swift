// /api/v1/skills: named instruction packages (a SKILL.md and other files) with access grants, a version per
// change, clone and JSON export, as the real server's routes and shapes.
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import PostgresNIO
import Shared

struct SkillsController {
    let store: PluginStore
    let policies: PolicyCache
    let adminBypass: Bool
    var history: ChatHistory { store.history }
    var logger: Logger { store.logger }
    static let kind = "skill"
    static let pageSize = 30
    static let missing = APIError(.notFound, "Skill not found")
    static let denied = APIError(.forbidden, "Access denied")

    var routes: RouteCollection<ServiceRequestContext> {
        let routes = RouteCollection(context: ServiceRequestContext.self)
        routes.get("/", use: list)
        routes.get("list", use: page)
        routes.get("export", use: export)
        routes.post("create", use: create)
        routes.get("id/:id", use: get)
        routes.post("id/:id/update", use: update)
        routes.post("id/:id/access/update", use: updateAccess)
        routes.post("id/:id/toggle", use: toggle)
        routes.delete("id/:id/delete", use: delete)
        routes.get("id/:id/files", use: files)
        routes.get("id/:id/files/content", use: fileContent)
        routes.get("id/:id/history", use: historyList)
        routes.get("id/:id/history/diff", use: diff)
        routes.get("id/:id/history/diff/file", use: fileDiff)
        routes.get("id/:id/history/:entry", use: historyEntry)
        routes.delete("id/:id/history/:entry", use: deleteHistoryEntry)
        routes.post("id/:id/update/version", use: setVersion)
        routes.post("id/:id/clone", use: clone)
        routes.post("load/url", use: notHere)
        routes.post("import/preview", use: importPreview)
        routes.post("import", use: importSkills)
        return routes
    }

    // MARK: Shapes

    static let grantsJSON = GrantStore.listJSON(type: "skill", idSQL: "t.id")
    /// `SkillResponse`.
    static let responseJSON = """
        json_build_object('version_id', t.version_id, 'id', t.id, 'user_id', t.user_id, 'name', t.name,
            'description', t.description, 'meta', t.meta, 'is_active', t.is_active, 'access_grants', \(grantsJSON),
            'updated_at', t.updated_at, 'created_at', t.created_at)
        """
    /// `SkillModel`.
    static let modelJSON = """
        json_build_object('id', t.id, 'user_id', t.user_id, 'name', t.name, 'description', t.description,
            'content', t.content, 'data', t.data, 'version_id', t.version_id, 'meta', t.meta, 'is_active', t.is_active,
            'access_grants', \(grantsJSON), 'updated_at', t.updated_at, 'created_at', t.created_at)
        """

    /// `SkillMeta`: `i18n` and `tags` only (other keys are dropped, as the original's model ignores them).
    static func meta(_ form: JSONValue?) -> JSONValue {
        .object(["i18n": form?["i18n"] ?? .null, "tags": form?["tags"] ?? .array([])])
    }

    static func metaText(_ meta: JSONValue) -> String {
        OrderedJSON.object([("i18n", meta["i18n"] ?? .null), ("tags", meta["tags"] ?? .array([]))])
    }

    /// The snapshot a version keeps: name, description, meta, the SKILL.md text and the files.
    static func snapshot(name: String, description: String?, meta: JSONValue, content: String, files: [SkillFile]) -> String {
        OrderedJSON.appending(
            OrderedJSON.object([("name", .string(name)), ("description", JSONValue(description))]),
            raw: [("meta", metaText(meta)), ("content", JSONValue.string(content).jsonText), ("data", filesData(files))])
    }

    static func filesData(_ files: [SkillFile]) -> String {
        "{\"files\":" + OrderedJSON.array(files.map(\.jsonText)) + "}"
    }

    // MARK: Files

    struct SkillFile: Codable, Equatable {
        var path: String
        var content: String
        var encoding: String?

        var jsonText: String {
            var pairs: [(String, JSONValue)] = [("path", .string(path)), ("content", .string(content))]
            if let encoding { pairs.append(("encoding", .string(encoding))) }
            return OrderedJSON.object(pairs)
        }

        var bytes: Data {
            encoding == "base64" ? (Data(base64Encoded: content) ?? Data()) : Data(content.utf8)
        }
    }

    /// The original's `validate_files` (counts, paths, sizes, a UTF-8 SKILL.md at the root), sorted by path.
    static func validate(_ files: [SkillFile]) throws -> [SkillFile] {
        func fail(_ text: String) -> APIError { APIError(.badRequest, text) }
        guard files.count <= 1000 else { throw fail("A skill may contain at most 1000 files") }
        var seen = Set<String>()
        var total = 0
        for file in files {
            let path = file.path
            if path.utf8.count > 4096 { throw fail("File paths must be at most 4096 bytes") }
            if path.isEmpty || path.hasPrefix("/") || path.contains("\\") || path.contains("\0") || path.contains(":") {
                throw fail("File paths must be relative POSIX paths")
            }
            if path.split(separator: "/", omittingEmptySubsequences: false).contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) {
                throw fail("Invalid file path")
            }
            guard seen.insert(path).inserted else { throw fail("Duplicate file: \(path)") }
            if let encoding = file.encoding {
                guard encoding == "base64", Data(base64Encoded: file.content) != nil else {
                    throw fail("File is not valid base64: \(path)")
                }
            }
            let size = file.bytes.count
            if size > 10 << 20 { throw fail("File exceeds 10 MiB: \(path)") }
            total += size
        }
        if total > 50 << 20 { throw fail("Skill exceeds 50 MiB") }
        for path in seen where seen.contains(where: { $0.hasPrefix(path + "/") }) {
            throw fail("A file is also used as a directory: \(path)")
        }
        guard files.contains(where: { $0.path == "SKILL.md" && $0.encoding == nil }) else {
            throw fail("A skill requires a UTF-8 SKILL.md at its root")
        }
        return files.sorted { $0.path < $1.path }
    }

    static func files(of data: JSONValue?) -> [SkillFile] {
        guard case .array(let items)? = data?["files"] else { return [] }
        return items.compactMap { item in
            guard let path = item["path"]?.stringValue, let content = item["content"]?.stringValue else { return nil }
            return SkillFile(path: path, content: content, encoding: item["encoding"]?.stringValue)
        }
    }

    // MARK: Access

    /// The skill after a check: its owner, a `permission` grant, or an admin with the bypass (the original's
    /// `authorized_skill`); `missing` for an unknown skill, `denied` otherwise.
    func checked(
        _ id: String, _ user: Identity, _ permission: String, missing: APIError = Self.missing,
        denied: APIError = Self.denied, full: Bool = false, lock: Bool = false, on connection: PostgresConnection
    ) async throws -> PluginStore.Row {
        try await store.checked(
            Self.kind, id, user, permission, admin: adminBypass, missing: missing, denied: denied, full: full, lock: lock,
            on: connection)
    }

    // MARK: Lists

    @Sendable func list(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        var sql = SQLBuilder("SELECT " + Self.responseJSON + "::text, t.user_id FROM chat.plugins t WHERE t.kind = 'skill' AND ")
        GrantStore.visible(&sql, type: Self.kind, alias: "t", user: user, bypass: adminBypass)
        if let query = request.queryValue("query"), !query.isEmpty {
            sql.append(" AND strpos(lower(t.name), lower(\(sql.placeholder(for: query)))) > 0")
        }
        sql.append(" ORDER BY t.updated_at DESC, t.seq DESC")
        return JSONResponse.text(try await store.list(sql, caller: user) { [("user", $0?.jsonText ?? "null")] })
    }

    /// `query` (name, description, id, meta, or the owner's name or email), `view_option`, `order_by`,
    /// `direction`, 30 a page, with `write_access`.
    @Sendable func page(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let page = max(1, try JSONBody.queryInt(request.queryValue("page"), name: "page") ?? 1)
        let offset = try ChatHistory.offset(page: page, size: Self.pageSize)
        var sql = SQLBuilder("WITH found AS (SELECT t.* FROM chat.plugins t WHERE t.kind = 'skill' AND ")
        GrantStore.visible(&sql, type: Self.kind, alias: "t", user: user, bypass: adminBypass)
        if let query = request.queryValue("query"), !query.isEmpty {
            let pattern = sql.placeholder(for: "%" + query + "%")
            let owners = sql.placeholder(for: try await store.auth.users(matching: query).map(\.id))
            sql.append(
                " AND (t.name ILIKE \(pattern) OR t.description ILIKE \(pattern) OR t.id ILIKE \(pattern)"
                    + " OR t.meta::text ILIKE \(pattern) OR t.user_id = ANY(\(owners)))")
        }
        WorkspaceList.viewOption(&sql, request, user: user, alias: "t")
        let (column, direction) = WorkspaceList.order(request)
        let writer = GrantStore.writeAccessSQL(&sql, type: Self.kind, alias: "t", user: user, bypass: adminBypass)
        sql.append(
            """
            ), page AS (SELECT t.*, row_number() OVER (ORDER BY t.\(column) \(direction), t.seq \(direction)) AS k
                FROM found t ORDER BY k LIMIT \(Self.pageSize) OFFSET \(offset))
            SELECT (SELECT count(*)::bigint FROM found),
                coalesce(array_agg(\(Self.responseJSON)::text ORDER BY t.k), '{}'), coalesce(array_agg(t.user_id ORDER BY t.k), '{}'),
                coalesce(array_agg(\(writer) ORDER BY t.k), '{}') FROM page t
            """)
        var (total, items, owners, writable) = (0, [String](), [String](), [Bool]())
        let rows = try await history.postgres.query(sql.query, logger: logger).decode((Int, [String], [String], [Bool]).self)
        for try await row in rows { (total, items, owners, writable) = row }
        let users = try await OwnerLookup(auth: store.auth).owners(Set(owners), caller: user)
        let listed = items.indices.map {
            OrderedJSON.appending(
                items[$0], raw: [("user", users[owners[$0]]?.jsonText ?? "null"), ("write_access", "\(writable[$0])")])
        }
        return JSONResponse.text("{\"items\":" + OrderedJSON.array(listed) + ",\"total\":\(total)}")
    }

    /// JSON export (`format=json`): packages `{id, name, description, meta, files, is_active}`, one object when one
    /// id was asked for. Archives (`zip`, `skill`) are not made by Skiff.
    @Sendable func export(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        if !user.isAdmin {
            guard try await policies.policy(user.userID).allows("workspace.skills_export") else {
                throw APIError(.forbidden, "Export permission required")
            }
        }
        let format = request.queryValue("format") ?? "json"
        guard ["json", "zip", "skill"].contains(format) else {
            throw APIError(.badRequest, "Export format must be json, zip, or skill")
        }
        var ids: [String] = []
        for id in request.uri.queryParameters.getAll("ids").map({ String($0) }) where !ids.contains(id) { ids.append(id) }
        if format == "skill", ids.count != 1 { throw APIError(.badRequest, "Select one skill to export as .skill") }
        guard ids.count <= 1000 else { throw APIError(.badRequest, "Export at most 1000 skills at a time") }
        var sql = SQLBuilder(
            """
            SELECT t.id, json_build_object('id', t.id, 'name', t.name, 'description', t.description, 'meta', t.meta,
                'files', coalesce(t.data -> 'files', '[]'), 'is_active', t.is_active)::text,
            """)
        GrantStore.visible(&sql, type: Self.kind, alias: "t", user: user, bypass: adminBypass)
        sql.append(" FROM chat.plugins t WHERE t.kind = 'skill'")
        if !ids.isEmpty {
            sql.append(" AND t.id = ANY(\(sql.placeholder(for: ids)))")
        }
        sql.append(" ORDER BY t.updated_at DESC, t.seq DESC")
        var found: [String: (json: String, readable: Bool)] = [:]
        var listed: [String] = []
        for try await (id, json, readable) in try await history.postgres.query(sql.query, logger: logger).decode(
            (String, String, Bool).self)
        {
            found[id] = (json, readable)
            if readable { listed.append(json) }
        }
        guard !ids.isEmpty else {
            if format != "json" { return try Self.archive(listed, format: format, ids: ids) }
            return JSONResponse.text(OrderedJSON.array(listed))
        }
        // Asked by id: each must exist and be readable, in the order asked.
        let packages = try ids.map { id -> String in
            guard let package = found[id] else { throw Self.missing }
            guard package.readable else { throw Self.denied }
            return package.json
        }
        if format != "json" { return try Self.archive(packages, format: format, ids: ids) }
        let body: String = ids.count == 1 ? packages[0] : OrderedJSON.array(packages)
        return JSONResponse.text(body)
    }

    @Sendable func notHere(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireVerified()
        throw APIError(
            .badRequest,
            "Skiff does not fetch skills from URLs; download the file and upload it to /api/v1/skills/import instead.")
    }

    // MARK: One skill

    struct SkillForm: Decodable {
        var id: String
        var name: String
        var description: String?
        var content: String?
        var files: [SkillFile]?
        var data: SkillData?
        var expectedVersionID: String?
        var commitMessage: String?
        var meta: JSONValue?
        var isActive: Bool?
        var accessGrants: [JSONValue]?
        var operations: [FileOperation]?
        var sent: Set<String> = []

        struct SkillData: Decodable {
            var files: [SkillFile]
        }

        enum CodingKeys: String, CodingKey {
            case id, name, description, content, files, data, meta, operations
            case expectedVersionID = "expected_version_id"
            case commitMessage = "commit_message"
            case isActive = "is_active"
            case accessGrants = "access_grants"
        }

        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            id = try c.decode(String.self, forKey: .id)
            name = try c.decode(String.self, forKey: .name)
            description = try c.decodeIfPresent(String.self, forKey: .description)
            content = try c.decodeIfPresent(String.self, forKey: .content)
            files = try c.decodeIfPresent([SkillFile].self, forKey: .files)
            data = try c.decodeIfPresent(SkillData.self, forKey: .data)
            expectedVersionID = try c.decodeIfPresent(String.self, forKey: .expectedVersionID)
            commitMessage = try c.decodeIfPresent(String.self, forKey: .commitMessage)
            if let meta = try c.decodeIfPresent(JSONValue.self, forKey: .meta), meta != .null {
                guard meta.objectValue != nil else {
                    throw APIError.validation([
                        ValidationIssue(
                            type: "model_type", loc: [.string("body"), .string("meta")],
                            msg: "Input should be a valid dictionary or instance of SkillMeta", input: meta)
                    ])
                }
                self.meta = meta
            }
            isActive = try c.decodeIfPresent(Bool.self, forKey: .isActive)
            accessGrants = try c.decodeIfPresent([JSONValue].self, forKey: .accessGrants)
            operations = try c.decodeIfPresent([FileOperation].self, forKey: .operations)
            sent = Set(c.allKeys.map(\.stringValue))
        }

        init(id: String, name: String, description: String?, meta: JSONValue?, files: [SkillFile]) {
            (self.id, self.name, self.description, self.meta, self.files) = (id, name, description, meta, files)
        }

        /// The files of a new skill: `data.files`, `files`, or a SKILL.md of `content`.
        func newFiles() throws -> [SkillFile] {
            if data != nil && files != nil { throw APIError(.badRequest, "[ERROR: Error creating skill]") }
            return data?.files ?? files ?? [SkillFile(path: "SKILL.md", content: content ?? "")]
        }
    }

    @Sendable func create(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let form = try JSONBody.decode(SkillForm.self, from: try await history.body(request))
        let policy = try await mayCreate(user)
        let json = try await history.transaction { connection in
            try await insert(
                form, user: user, policy: policy, grants: form.accessGrants, active: form.isActive ?? true, on: connection)
            return try await store.json(Self.kind, form.normalizedID, Self.responseJSON, on: connection)
        }
        return JSONResponse.text(json)
    }

    /// The caller's policy when they may create skills (admins, `workspace.skills` or `skills_import`).
    func mayCreate(_ user: Identity) async throws -> UserPolicy {
        let policy = try await policies.policy(user.userID)
        guard user.isAdmin || policy.allows("workspace.skills") || policy.allows("workspace.skills_import") else {
            throw APIError.unauthorized
        }
        return policy
    }

    static let nameTaken = APIError(.conflict, "A skill with this name already exists")

    /// Create's checks and insert (also clone's).
    func insert(
        _ form: SkillForm, user: Identity, policy: UserPolicy, grants requested: [JSONValue]?, active: Bool,
        on connection: PostgresConnection
    ) async throws {
        let id = form.normalizedID
        guard !id.isEmpty, id.allSatisfy({ ($0.isASCII && ($0.isLowercase || $0.isNumber)) || $0 == "_" || $0 == "-" }) else {
            throw APIError(.badRequest, "[ERROR: Invalid skill ID]")
        }
        let taken = try await connection.query(
            "SELECT id = \(id) FROM chat.plugins WHERE kind = 'skill' AND (id = \(id) OR name = \(form.name))", logger: logger)
        var nameTaken = false
        for try await sameID in taken.decode(Bool.self) {
            if sameID { throw PluginStore.idTaken }
            nameTaken = true
        }
        if nameTaken { throw Self.nameTaken }
        let chosen = SharingPolicy.skill.allowed(AccessGrant.normalize(requested), user: user, policy: policy)
        let files = try Self.validate(try form.newFiles())
        let content = files.first { $0.path == "SKILL.md" }?.content ?? ""
        let meta = Self.meta(form.meta)
        let now = Int(Date().timeIntervalSince1970)
        var insert = SQLBuilder(
            "INSERT INTO chat.plugins (kind, id, user_id, name, description, content, data, meta, is_active, created_at, updated_at) VALUES ('skill', ")
        insert.append(
            [
                insert.placeholder(for: id), insert.placeholder(for: user.userID), insert.placeholder(for: form.name),
                insert.placeholder(for: form.description), insert.placeholder(for: content),
                insert.placeholder(for: Self.filesData(files)) + "::json", insert.placeholder(for: Self.metaText(meta)) + "::json",
                insert.placeholder(for: active), "\(now)", "\(now))",
            ].joined(separator: ", "))
        do {
            try await store.insert(insert, on: connection)
        } catch where error.isUniqueViolation {
            throw Self.nameTaken  // another create took the name first
        }
        try await store.grants.replace(chosen, type: Self.kind, id: id, now: now, on: connection)
        try await store.addVersion(
            Self.kind, id,
            snapshot: Self.snapshot(name: form.name, description: form.description, meta: meta, content: content, files: files),
            parent: nil, user: user.userID, message: form.commitMessage, now: now, on: connection)
    }

    @Sendable func get(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let json = try await history.postgres.withConnection { connection -> String in
            let row = try await checked(id, user, "read", missing: .notFound, denied: .accessProhibited, on: connection)
            let writable = try await store.grants.permits(
                "write", type: Self.kind, id: id, owner: row.owner, user: user, admin: adminBypass, on: connection)
            return OrderedJSON.appending(
                try await store.json(Self.kind, id, Self.responseJSON, on: connection),
                rawObject: try await store.json(
                    Self.kind, id, "json_build_object('user', NULL, 'write_access', \(writable), 'content', t.content)",
                    on: connection))
        }
        return JSONResponse.text(json)
    }

    static func versionConflict(_ current: String?) -> APIError {
        APIError(
            .conflict,
            detail: .object(["code": .string("version_conflict"), "current_version_id": JSONValue(current)]))
    }

    @Sendable func update(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let form = try JSONBody.decode(SkillForm.self, from: try await history.body(request))
        let json = try await history.transaction { connection -> String in
            try await applyUpdate(form, id: id, user: user, on: connection)
        }
        return JSONResponse.text(json)
    }

    /// Update's checks and writes (also an import's `replace`); returns the `SkillModel` text.
    func applyUpdate(_ form: SkillForm, id: String, user: Identity, on connection: PostgresConnection) async throws -> String {
        do {
            let row = try await checked(
                id, user, "write", missing: .notFound, denied: .unauthorized, full: true, lock: true, on: connection)
            if let expected = form.expectedVersionID, expected != row.versionID { throw Self.versionConflict(row.versionID) }
            let changers = [form.files != nil, form.data != nil, form.operations != nil].filter { $0 }.count
            if changers > 0, form.expectedVersionID == nil {
                throw APIError(.badRequest, "expected_version_id is required for file updates")
            }
            if changers > 1 { throw APIError(.badRequest, "[ERROR: Error updating skill]") }
            var files = form.data?.files ?? form.files ?? Self.files(of: row.data)
            if let operations = form.operations {
                do {
                    files = try Self.apply(operations, to: files)
                } catch is FileOperation.Failure {
                    throw APIError(.badRequest, "[ERROR: Error updating skill]")
                }
            }
            if let content = form.content {
                files.removeAll { $0.path == "SKILL.md" }
                files.append(SkillFile(path: "SKILL.md", content: content))
            }
            files = try Self.validate(files)
            let content = files.first { $0.path == "SKILL.md" }?.content ?? ""
            let name = form.name
            let description = form.sent.contains("description") ? form.description : row.description
            let meta = form.sent.contains("meta") ? Self.meta(form.meta) : Self.meta(row.meta)
            let before = Self.snapshot(
                name: row.name, description: row.description, meta: Self.meta(row.meta), content: row.content ?? "",
                files: Self.files(of: row.data))
            let after = Self.snapshot(name: name, description: description, meta: meta, content: content, files: files)
            let now = Int(Date().timeIntervalSince1970)
            if before != after {
                do {
                    try await connection.query(
                        """
                        UPDATE chat.plugins SET name = \(name), description = \(description), content = \(content),
                            data = \(Self.filesData(files))::json, meta = \(Self.metaText(meta))::json
                        WHERE kind = 'skill' AND id = \(id)
                        """, logger: logger)
                } catch where error.isUniqueViolation {
                    throw APIError(.badRequest, "[ERROR: Error updating skill]")  // another skill has the name
                }
                try await store.addVersion(
                    Self.kind, id, snapshot: after, parent: row.versionID, user: user.userID, message: form.commitMessage,
                    now: now, on: connection)
            }
            try await connection.query(
                """
                UPDATE chat.plugins SET is_active = \(form.isActive ?? row.isActive), updated_at = \(now)
                WHERE kind = 'skill' AND id = \(id)
                """, logger: logger)
            return try await store.json(Self.kind, id, Self.modelJSON, on: connection)
        }
    }

    @Sendable func updateAccess(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let form = try JSONBody.decode(AccessGrantsForm.self, from: try await history.body(request))
        let policy = try await policies.policy(user.userID)
        let json = try await history.transaction { connection -> String in
            _ = try await checked(id, user, "write", missing: .notFound, denied: .unauthorized, lock: true, on: connection)
            try await store.grants.replaceValidated(
                form, sharing: .skill, type: Self.kind, id: id, user: user, policy: policy, on: connection)
            return try await store.json(Self.kind, id, Self.modelJSON, on: connection)
        }
        return JSONResponse.text(json)
    }

    @Sendable func toggle(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let json = try await history.transaction { connection -> String in
            _ = try await checked(id, user, "write", missing: .notFound, denied: .unauthorized, lock: true, on: connection)
            try await connection.query(
                """
                UPDATE chat.plugins SET is_active = NOT is_active, updated_at = \(Int(Date().timeIntervalSince1970))
                WHERE kind = 'skill' AND id = \(id)
                """, logger: logger)
            return try await store.json(Self.kind, id, Self.modelJSON, on: connection)
        }
        return JSONResponse.text(json)
    }

    @Sendable func delete(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        try await history.transaction { connection in
            _ = try await checked(id, user, "write", missing: .notFound, denied: .unauthorized, lock: true, on: connection)
            try await store.delete(Self.kind, id, on: connection)
        }
        return JSONResponse.text("true")
    }

    // MARK: Files and versions

    /// A readable skill with the files of its current version, or of the saved version `versionID`.
    func versionFiles(_ id: String, _ user: Identity, versionID: String?, on connection: PostgresConnection) async throws
        -> (row: PluginStore.Row, version: String?, files: [SkillFile])
    {
        let row = try await checked(id, user, "read", full: true, on: connection)
        guard let versionID, !versionID.isEmpty, versionID != row.versionID else {
            return (row, row.versionID, Self.files(of: row.data))
        }
        let rows = try await connection.query(
            "SELECT snapshot::text FROM chat.plugin_history WHERE kind = 'skill' AND plugin_id = \(id) AND id = \(versionID)",
            logger: logger)
        for try await snapshot in rows.decode(String.self) {
            return (row, versionID, Self.files(of: JSONValue.parse(snapshot)?["data"]))
        }
        throw APIError(.notFound, "Skill version not found")
    }

    func versionFiles(_ id: String, _ user: Identity, versionID: String?) async throws -> (version: String?, files: [SkillFile]) {
        let found = try await history.postgres.withConnection { try await versionFiles(id, user, versionID: versionID, on: $0) }
        return (found.version, found.files)
    }

    /// The caller may read the skill (for its history).
    func readable(_ id: String, _ user: Identity) async throws {
        _ = try await store.checked(Self.kind, id, user, "read", admin: adminBypass, missing: Self.missing, denied: Self.denied)
    }

    static func summaries(_ files: [SkillFile]) -> String {
        OrderedJSON.array(
            files.map {
                OrderedJSON.object([
                    ("path", .string($0.path)), ("size", .int($0.bytes.count)), ("encoding", JSONValue($0.encoding)),
                ])
            })
    }

    @Sendable func files(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let (version, files) = try await versionFiles(
            try context.parameters.require("id"), user, versionID: request.queryValue("version_id"))
        return JSONResponse.text(
            OrderedJSON.appending(OrderedJSON.object([("version_id", JSONValue(version))]), raw: [("files", Self.summaries(files))]))
    }

    @Sendable func fileContent(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let query = try requiredQuery(request, "path", "version_id")
        let (path, version) = (query[0], query[1])
        let (_, files) = try await versionFiles(try context.parameters.require("id"), user, versionID: version)
        guard let file = files.first(where: { $0.path == path }) else { throw APIError(.notFound, "File not found") }
        let name = String(path.split(separator: "/").last ?? "file")
        var headers = HTTPFields()
        headers[.contentType] = path.hasSuffix(".md") ? "text/markdown" : path.hasSuffix(".txt") ? "text/plain" : "application/octet-stream"
        headers[.contentDisposition] =
            "attachment; filename*=UTF-8''" + (name.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "file")
        headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        headers[HTTPField.Name("Content-Security-Policy")!] = "default-src 'none'; sandbox"
        headers[.cacheControl] = "private, no-store"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: .init(data: file.bytes)))
    }

    @Sendable func historyList(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let page = try JSONBody.queryInt(request.queryValue("page"), name: "page") ?? 1
        try await readable(id, user)
        return JSONResponse.text(try await store.historyPage(Self.kind, id, page: page, caller: user))
    }

    @Sendable func historyEntry(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let entry = try context.parameters.require("entry")
        try await readable(id, user)
        let (json, _, snapshot) = try await history.postgres.withConnection {
            try await store.entry(Self.kind, id, entry, on: $0)
        }
        let value = JSONValue.parse(snapshot)
        let summary = OrderedJSON.appending(
            OrderedJSON.object([("name", value?["name"] ?? .null), ("description", value?["description"] ?? .null)]),
            raw: [
                ("meta", (value?["meta"] ?? .null).jsonText), ("content", (value?["content"] ?? .null).jsonText),
                ("data", "{\"files\":" + Self.summaries(Self.files(of: value?["data"])) + "}"),
            ])
        return JSONResponse.text(OrderedJSON.appending(json, raw: [("snapshot", summary)]))
    }

    @Sendable func deleteHistoryEntry(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let entry = try context.parameters.require("entry")
        try await history.transaction { connection in
            let row = try await checked(id, user, "write", lock: true, on: connection)
            try await store.deleteEntry(Self.kind, id, entry, current: row.versionID, on: connection)
        }
        return JSONResponse.text("true")
    }

    struct SetVersionForm: Decodable {
        var versionID: String
        var expectedVersionID: String

        enum CodingKeys: String, CodingKey {
            case versionID = "version_id"
            case expectedVersionID = "expected_version_id"
        }
    }

    @Sendable func setVersion(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let form = try JSONBody.decode(SetVersionForm.self, from: try await history.body(request))
        let json = try await history.transaction { connection -> String in
            let row = try await checked(id, user, "write", lock: true, on: connection)
            guard form.expectedVersionID == row.versionID else { throw Self.versionConflict(row.versionID) }
            let updated = try await connection.query(
                """
                UPDATE chat.plugins p SET name = h.snapshot ->> 'name', description = h.snapshot ->> 'description',
                    content = h.snapshot ->> 'content', data = h.snapshot -> 'data', meta = h.snapshot -> 'meta',
                    version_id = h.id, updated_at = \(Int(Date().timeIntervalSince1970))
                FROM chat.plugin_history h
                WHERE p.kind = 'skill' AND p.id = \(id) AND h.kind = 'skill' AND h.plugin_id = p.id AND h.id = \(form.versionID)
                RETURNING 1
                """, logger: logger)
            var found = false
            for try await _ in updated { found = true }
            guard found else { throw APIError(.notFound, "Skill version not found") }
            return try await store.json(Self.kind, id, Self.modelJSON, on: connection)
        }
        return JSONResponse.text(json)
    }

    struct CloneForm: Decodable {
        var id: String
        var name: String
        var versionID: String?

        enum CodingKeys: String, CodingKey {
            case id, name
            case versionID = "version_id"
        }
    }

    /// A copy (of the current or a saved version) under a new id and name, owned by the caller, unshared.
    @Sendable func clone(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let source = try context.parameters.require("id")
        let form = try JSONBody.decode(CloneForm.self, from: try await history.body(request))
        let policy = try await mayCreate(user)
        let json = try await history.transaction { connection -> String in
            let (row, _, files) = try await versionFiles(source, user, versionID: form.versionID, on: connection)
            let copy = SkillForm(id: form.id, name: form.name, description: row.description, meta: row.meta, files: files)
            try await insert(copy, user: user, policy: policy, grants: [], active: row.isActive, on: connection)
            return try await store.json(Self.kind, copy.normalizedID, Self.modelJSON, on: connection)
        }
        return JSONResponse.text(json)
    }
}

extension SkillsController.SkillForm {
    /// Ids are lower case with spaces as hyphens.
    var normalizedID: String { id.lowercased().replacingOccurrences(of: " ", with: "-") }
}
