// /api/v1/tools and /api/v1/functions: plugin code and settings stored with the real server's routes, shapes,
// access rules and version history. Skiff never runs the Python: what the original learns by loading the module
// (a tool's `specs`, a function's `type`) comes from reading the source, and routes that need the module loaded
// answer 501 with a detail that says so.
import Foundation
import Hummingbird
import Logging
import PostgresNIO
import Shared

/// Create and update bodies of tools and functions.
struct PluginForm: Decodable {
    var commitMessage: String?
    var id: String
    var name: String
    var content: String
    var meta: [String: JSONValue]
    var accessGrants: [JSONValue]?

    enum CodingKeys: String, CodingKey {
        case id, name, content, meta
        case commitMessage = "commit_message"
        case accessGrants = "access_grants"
    }
}

struct ToolsController {
    let store: PluginStore
    let policies: PolicyCache
    let auth: AuthLookup
    let adminBypass: Bool
    var history: ChatHistory { store.history }
    var grants: GrantStore { GrantStore(logger: store.logger) }
    var logger: Logger { store.logger }
    static let kind = "tool"
    static let unauthorized = APIError(.unauthorized, ErrorText.unauthorized)

    var routes: RouteCollection<ServiceRequestContext> {
        let routes = RouteCollection(context: ServiceRequestContext.self)
        routes.get("/", use: list)
        routes.get("list", use: accessList)
        routes.post("load/url", use: loadURL)
        routes.get("export", use: export)
        routes.post("create", use: create)
        routes.get("id/:id", use: get)
        routes.get("id/:id/specs", use: specs)
        routes.post("id/:id/update", use: update)
        routes.post("id/:id/access/update", use: updateAccess)
        routes.delete("id/:id/delete", use: delete)
        routes.get("id/:id/valves", use: valves)
        routes.get("id/:id/valves/spec", use: valvesSpec)
        routes.post("id/:id/valves/update", use: updateValves)
        routes.get("id/:id/valves/user", use: userValves)
        routes.get("id/:id/valves/user/spec", use: valvesSpec)
        routes.post("id/:id/valves/user/update", use: updateUserValves)
        routes.get("id/:id/history", use: historyList)
        routes.get("id/:id/history/diff", use: diff)
        routes.get("id/:id/history/:entry", use: historyEntry)
        routes.delete("id/:id/history/:entry", use: deleteHistoryEntry)
        routes.post("id/:id/update/version", use: setVersion)
        return routes
    }

    // MARK: Shapes (SQL over alias `t`)

    static let grantsJSON = GrantStore.listJSON(type: "tool", idSQL: "t.id")
    /// `ToolResponse`.
    static let responseJSON = """
        json_build_object('version_id', t.version_id, 'id', t.id, 'user_id', t.user_id, 'name', t.name, 'meta', t.meta,
            'access_grants', \(grantsJSON), 'updated_at', t.updated_at, 'created_at', t.created_at)
        """
    /// `ToolModel`.
    static let modelJSON = """
        json_build_object('version_id', t.version_id, 'id', t.id, 'user_id', t.user_id, 'name', t.name,
            'content', t.content, 'specs', coalesce(t.specs, '[]'), 'meta', t.meta, 'access_grants', \(grantsJSON),
            'updated_at', t.updated_at, 'created_at', t.created_at)
        """

    /// The original's `ToolMeta` of a form and the code: declared keys first, `manifest` from the frontmatter,
    /// `has_user_valves` from a `UserValves` class inside the module.
    static func meta(_ form: [String: JSONValue], content: String) -> String {
        PluginSource.ordered(
            [
                ("i18n", form["i18n"] ?? .null), ("description", form["description"] ?? .null),
                ("manifest", .object(Dictionary(PluginSource.frontmatter(content), uniquingKeysWith: { $1 }))),
                ("has_user_valves", .bool(PluginSource.declares("UserValves", in: content, topLevel: false))),
            ], extras: form)
    }

    /// `tool_snapshot`: name, code and meta without what is derived from the code.
    static func snapshot(name: String, content: String?, meta: JSONValue?) -> String {
        var meta = meta?.objectValue ?? [:]
        if meta["description"] == nil { meta["description"] = .null }
        if meta["i18n"].map({ $0 == .null || $0 == .object([:]) }) ?? false { meta["i18n"] = nil }
        meta["manifest"] = nil
        meta["has_user_valves"] = nil
        return OrderedJSON.object([("name", .string(name)), ("content", .string(content ?? "")), ("meta", .object(meta))])
    }

    // MARK: Access

    func visible(_ sql: inout SQLBuilder, _ user: Identity, permission: String = "read") {
        if user.isAdmin && adminBypass {
            sql.append("true")
        } else {
            GrantStore.ownedOrGranted(&sql, type: Self.kind, alias: "t", user: user, permission: permission)
        }
    }

    func may(_ permission: String, _ id: String, _ row: PluginStore.Row, _ user: Identity, on connection: PostgresConnection)
        async throws -> Bool
    {
        if user.isAdmin || row.owner == user.userID { return true }
        return try await grants.has(permission, type: Self.kind, id: id, user: user, on: connection)
    }

    /// The tool after a check: `missing` when unknown, `denied` when the caller may not `permission` it.
    func checked(
        _ id: String, _ user: Identity, _ permission: String, missing: APIError = .notFound,
        denied: APIError = .accessProhibited, lock: Bool = false, on connection: PostgresConnection
    ) async throws -> PluginStore.Row {
        guard let row = try await store.row(Self.kind, id, on: connection, lock: lock) else { throw missing }
        guard try await may(permission, id, row, user, on: connection) else { throw denied }
        return row
    }

    // MARK: Lists

    @Sendable func list(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let rows = try await items(user, query: request.queryValue("query"))
        return JSONResponse.text(
            OrderedJSON.array(
                rows.map {
                    OrderedJSON.appending(
                        $0.item,
                        raw: [("user", $0.owner), ("content", "null"), ("specs", $0.specs), ("has_user_valves", "\($0.userValves)")])
                }))
    }

    @Sendable func accessList(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let rows = try await items(user, query: nil)
        return JSONResponse.text(
            OrderedJSON.array(
                rows.map {
                    OrderedJSON.appending(
                        $0.item,
                        raw: [("user", $0.owner), ("write_access", "\($0.writable)"), ("content", "null"), ("specs", $0.specs)])
                }))
    }

    /// The tools the caller may read, newest first, with what the two lists add to each.
    func items(_ user: Identity, query: String?) async throws
        -> [(item: String, owner: String, specs: String, userValves: Bool, writable: Bool)]
    {
        var sql = SQLBuilder("SELECT ")
        let writer = user.isAdmin && adminBypass
            ? "true" : GrantStore.ownedOrGrantedSQL(&sql, type: Self.kind, alias: "t", user: user, permission: "write")
        sql.append(
            Self.responseJSON + "::text, t.user_id, coalesce(t.specs, '[]')::text,"
                + " coalesce(t.meta ->> 'has_user_valves', '') = 'true', " + writer
                + " FROM chat.plugins t WHERE t.kind = 'tool' AND ")
        visible(&sql, user)
        if let query, !query.isEmpty {
            sql.append(" AND strpos(lower(t.name), lower(\(sql.placeholder(for: query)))) > 0")
        }
        sql.append(" ORDER BY t.updated_at DESC, t.seq DESC")
        var rows: [(String, String, String, Bool, Bool)] = []
        for try await row in try await history.postgres.query(sql.query, logger: logger).decode(
            (String, String, String, Bool, Bool).self)
        {
            rows.append(row)
        }
        let owners = try await OwnerLookup(auth: auth).owners(Set(rows.map(\.1)), caller: user)
        return rows.map { ($0.0, owners[$0.1] ?? "null", $0.2, $0.3, $0.4) }
    }

    @Sendable func export(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        if !user.isAdmin {
            guard try await policies.policy(user.userID).allows("workspace.tools_export") else { throw Self.unauthorized }
        }
        var sql = SQLBuilder(
            "SELECT coalesce(json_agg(j ORDER BY u DESC, s DESC), '[]')::text FROM (SELECT " + Self.modelJSON
                + " AS j, t.updated_at AS u, t.seq AS s FROM chat.plugins t WHERE t.kind = 'tool' AND ")
        visible(&sql, user, permission: "write")
        sql.append(") x")
        for try await json in try await history.postgres.query(sql.query, logger: logger).decode(String.self) {
            return JSONResponse.text(json)
        }
        return JSONResponse.text("[]")
    }

    @Sendable func loadURL(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        throw PluginStore.needsCode("tools")
    }

    @Sendable func specs(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireVerified()
        throw APIError(.notFound, "Tool not found")
    }

    @Sendable func valvesSpec(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        _ = try await history.postgres.withConnection { try await checked(id, user, "read", on: $0) }
        throw PluginStore.needsCode("tools")
    }

    // MARK: One tool

    static let idRule = APIError(.badRequest, "Only alphanumeric characters and underscores are allowed in the id")
    static let idTaken = APIError(.badRequest, "Uh-oh! This id is already registered. Please choose another id string.")

    @Sendable func create(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let policy = try await policies.policy(user.userID)
        guard user.isAdmin || policy.allows("workspace.tools") || policy.allows("workspace.tools_import") else {
            throw Self.unauthorized
        }
        let form = try JSONBody.decode(PluginForm.self, from: try await history.body(request))
        guard PluginSource.isIdentifier(form.id) else { throw Self.idRule }
        let id = form.id.lowercased()
        let content = PluginSource.replacingImports(form.content)
        let chosen = SharingPolicy.tool.allowed(AccessGrant.normalize(form.accessGrants), user: user, policy: policy)
        let meta = Self.meta(form.meta, content: content)
        let now = Int(Date().timeIntervalSince1970)
        let json = try await history.transaction { connection -> String in
            guard try await !store.exists(Self.kind, id, on: connection) else { throw Self.idTaken }
            guard PluginSource.declares("Tools", in: content, topLevel: true) else {
                throw APIError(.badRequest, "[ERROR: Error creating tool]")
            }
            try await connection.query(
                """
                INSERT INTO chat.plugins (kind, id, user_id, name, content, specs, meta, created_at, updated_at)
                VALUES ('tool', \(id), \(user.userID), \(form.name), \(content), '[]', \(meta)::json, \(now), \(now))
                """, logger: logger)
            try await grants.replace(chosen, type: Self.kind, id: id, now: now, on: connection)
            try await store.addVersion(
                Self.kind, id, snapshot: Self.snapshot(name: form.name, content: content, meta: JSONValue.parse(meta)),
                parent: nil, user: user.userID, message: form.commitMessage, now: now, on: connection)
            return try await store.json(Self.kind, id, Self.responseJSON, on: connection)
        }
        return JSONResponse.text(json)
    }

    @Sendable func get(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let json = try await history.postgres.withConnection { connection -> String in
            let row = try await checked(id, user, "read", on: connection)
            var writable = (user.isAdmin && adminBypass) || row.owner == user.userID
            if !writable { writable = try await grants.has("write", type: Self.kind, id: id, user: user, on: connection) }
            let specs = try await store.json(Self.kind, id, "coalesce(t.specs, '[]')", on: connection)
            var extra: [(String, String)] = [("user", "null"), ("write_access", "\(writable)")]
            if writable { extra.append(("content", JSONValue(row.content).jsonText)) }
            extra.append(("specs", specs))
            return OrderedJSON.appending(try await store.json(Self.kind, id, Self.responseJSON, on: connection), raw: extra)
        }
        return JSONResponse.text(json)
    }

    @Sendable func update(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let form = try JSONBody.decode(PluginForm.self, from: try await history.body(request))
        let policy = try await policies.policy(user.userID)
        let json = try await history.transaction { connection -> String in
            let row = try await checked(
                id, user, "write", missing: APIError(.unauthorized, ErrorText.notFound), denied: Self.unauthorized,
                lock: true, on: connection)
            let mayChangeCode = user.isAdmin || policy.allows("workspace.tools") || policy.allows("workspace.tools_import")
            if form.content != row.content, !mayChangeCode { throw Self.unauthorized }
            let content = PluginSource.replacingImports(form.content)
            guard PluginSource.declares("Tools", in: content, topLevel: true) else {
                throw APIError(.badRequest, "No Tools class found in the module")
            }
            let meta = Self.meta(form.meta, content: content)
            try await save(
                id, name: form.name, content: content, meta: meta, row: row, user: user, message: form.commitMessage,
                on: connection)
            return try await store.json(Self.kind, id, Self.modelJSON, on: connection)
        }
        return JSONResponse.text(json)
    }

    /// Writes name, code and meta; a new version when the snapshot changed (or there was none).
    func save(
        _ id: String, name: String, content: String, meta: String, row: PluginStore.Row, user: Identity,
        message: String?, versionID: String? = nil, on connection: PostgresConnection
    ) async throws {
        let now = Int(Date().timeIntervalSince1970)
        try await connection.query(
            """
            UPDATE chat.plugins SET name = \(name), content = \(content), meta = \(meta)::json, updated_at = \(now)
            WHERE kind = 'tool' AND id = \(id)
            """, logger: logger)
        if let versionID {
            try await connection.query(
                "UPDATE chat.plugins SET version_id = \(versionID) WHERE kind = 'tool' AND id = \(id)", logger: logger)
            return
        }
        let before = Self.snapshot(name: row.name, content: row.content, meta: row.meta)
        let after = Self.snapshot(name: name, content: content, meta: JSONValue.parse(meta))
        if JSONValue.parse(before) != JSONValue.parse(after) || row.versionID == nil {
            try await store.addVersion(
                Self.kind, id, snapshot: after, parent: row.versionID, user: user.userID, message: message, now: now,
                on: connection)
        }
    }

    @Sendable func updateAccess(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let form = try JSONBody.decode(AccessGrantsForm.self, from: try await history.body(request))
        let policy = try await policies.policy(user.userID)
        let json = try await history.transaction { connection -> String in
            _ = try await checked(id, user, "write", denied: Self.unauthorized, lock: true, on: connection)
            let chosen = try SharingPolicy.tool.validate(AccessGrant.normalize(form.accessGrants), user: user, policy: policy)
            try await grants.replace(chosen, type: Self.kind, id: id, now: Int(Date().timeIntervalSince1970), on: connection)
            return try await store.json(Self.kind, id, Self.modelJSON, on: connection)
        }
        return JSONResponse.text(json)
    }

    @Sendable func delete(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        try await history.transaction { connection in
            _ = try await checked(
                id, user, "write", missing: APIError(.unauthorized, ErrorText.notFound), denied: Self.unauthorized,
                lock: true, on: connection)
            try await store.deleteRows(Self.kind, ids: [id], on: connection)
        }
        return JSONResponse.text("true")
    }

    // MARK: Valves

    @Sendable func valves(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        _ = try await history.postgres.withConnection { try await checked(id, user, "write", on: $0) }
        return JSONResponse.text(try await store.valves(Self.kind, id))
    }

    @Sendable func updateValves(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let body = try PluginStore.valvesBody(try await history.body(request))
        _ = try await history.postgres.withConnection {
            try await checked(
                id, user, "write", missing: APIError(.unauthorized, ErrorText.notFound),
                denied: APIError(.badRequest, ErrorText.accessProhibited), on: $0)
        }
        return JSONResponse.text(try await store.setValves(Self.kind, id, body))
    }

    @Sendable func userValves(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        _ = try await history.postgres.withConnection { try await checked(id, user, "read", on: $0) }
        return JSONResponse.text(try await store.userValves(Self.kind, id, user: user.userID))
    }

    @Sendable func updateUserValves(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let body = try PluginStore.valvesBody(try await history.body(request))
        _ = try await history.postgres.withConnection { try await checked(id, user, "read", on: $0) }
        return JSONResponse.text(try await store.setUserValves(Self.kind, id, user: user.userID, body))
    }

    // MARK: History

    /// `require_tool_history_access`: the owner, a write grant, or an admin with the bypass.
    func historyAccess(_ id: String, _ user: Identity, on connection: PostgresConnection) async throws -> PluginStore.Row {
        guard let row = try await store.row(Self.kind, id, on: connection) else { throw APIError(.notFound, "Not found") }
        if (user.isAdmin && adminBypass) || row.owner == user.userID { return row }
        guard try await grants.has("write", type: Self.kind, id: id, user: user, on: connection) else {
            throw APIError.accessProhibited
        }
        return row
    }

    @Sendable func historyList(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let page = try JSONBody.queryInt(request.queryValue("page"), name: "page") ?? 1
        _ = try await history.postgres.withConnection { try await historyAccess(id, user, on: $0) }
        return JSONResponse.text(try await store.historyPage(Self.kind, id, page: page, caller: user, auth: auth))
    }

    @Sendable func historyEntry(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let entry = try context.parameters.require("entry")
        _ = try await history.postgres.withConnection { try await historyAccess(id, user, on: $0) }
        return JSONResponse.text(try await store.entry(Self.kind, id, entry, caller: user, auth: auth).json)
    }

    @Sendable func diff(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let (from, to) = try diffQuery(request)
        _ = try await history.postgres.withConnection { try await historyAccess(id, user, on: $0) }
        let before = try await store.entry(Self.kind, id, from, caller: user, auth: auth).snapshot
        let after = try await store.entry(Self.kind, id, to, caller: user, auth: auth).snapshot
        return JSONResponse.text(PluginStore.diff(from: from, to: to, before, after))
    }

    @Sendable func deleteHistoryEntry(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let entry = try context.parameters.require("entry")
        try await history.transaction { connection in
            let row = try await historyAccess(id, user, on: connection)
            try await store.deleteEntry(Self.kind, id, entry, current: row.versionID, on: connection)
        }
        return JSONResponse.text("true")
    }

    /// Makes a saved version current: its name, code and meta come back (meta's derived keys recomputed).
    @Sendable func setVersion(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let form = try JSONBody.decode(VersionForm.self, from: try await history.body(request))
        _ = try await history.postgres.withConnection { try await historyAccess(id, user, on: $0) }
        let snapshot = try await store.entry(Self.kind, id, form.versionID, caller: user, auth: auth).snapshot
        let json = try await history.transaction { connection -> String in
            let row = try await checked(
                id, user, "write", missing: APIError(.unauthorized, ErrorText.notFound), denied: Self.unauthorized,
                lock: true, on: connection)
            let content = snapshot["content"]?.stringValue ?? ""
            try await save(
                id, name: snapshot["name"]?.stringValue ?? row.name, content: content,
                meta: Self.meta(snapshot["meta"]?.objectValue ?? [:], content: content), row: row, user: user,
                message: nil, versionID: form.versionID, on: connection)
            return try await store.json(Self.kind, id, Self.modelJSON, on: connection)
        }
        return JSONResponse.text(json)
    }
}

struct VersionForm: Decodable {
    var versionID: String

    enum CodingKeys: String, CodingKey {
        case versionID = "version_id"
    }
}

/// `from_id` and `to_id` of a diff, both required (422 as FastAPI's when missing).
func diffQuery(_ request: Request) throws -> (String, String) {
    let from = request.queryValue("from_id")
    let to = request.queryValue("to_id")
    let missing = [("from_id", from), ("to_id", to)].filter { $0.1 == nil }.map {
        ValidationIssue(type: "missing", loc: [.string("query"), .string($0.0)], msg: "Field required", input: .null)
    }
    guard missing.isEmpty, let from, let to else { throw APIError.validation(missing) }
    return (from, to)
}

