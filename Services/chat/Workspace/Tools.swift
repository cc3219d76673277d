// /api/v1/tools and /api/v1/functions: plugin code and settings stored with the real server's routes, shapes,
// access rules and version history. Skiff never runs the Python: what the original learns by loading the module
// (a tool's `specs`, a function's `type`) comes from reading the source, and routes that need the module loaded
// answer 400 with a detail that says so.
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
    let adminBypass: Bool
    var history: ChatHistory { store.history }
    var logger: Logger { store.logger }
    static let kind = "tool"
    /// Meta keys the original derives from the code, left out of versions.
    static let derived = ["manifest", "has_user_valves"]

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
    static func meta(_ form: [String: JSONValue], content: String) -> (value: JSONValue, text: String) {
        PluginSource.meta(
            [
                ("i18n", form["i18n"] ?? .null), ("description", form["description"] ?? .null),
                ("manifest", PluginSource.frontmatter(content)),
                ("has_user_valves", .bool(PluginSource.declares("UserValves", in: content, topLevel: false))),
            ], extras: form)
    }

    // MARK: Access

    /// The tool after a check (any admin passes): `missing` when unknown, `denied` when not the caller's to `permission`.
    func checked(
        _ id: String, _ user: Identity, _ permission: String, missing: APIError = .notFound,
        denied: APIError = .accessProhibited, full: Bool = false, lock: Bool = false, on connection: PostgresConnection
    ) async throws -> PluginStore.Row {
        try await store.checked(
            Self.kind, id, user, permission, admin: true, missing: missing, denied: denied, full: full, lock: lock,
            on: connection)
    }

    func checked(_ id: String, _ user: Identity, _ permission: String, missing: APIError = .notFound,
        denied: APIError = .accessProhibited
    ) async throws -> PluginStore.Row {
        try await store.checked(Self.kind, id, user, permission, admin: true, missing: missing, denied: denied)
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
        let writer = GrantStore.writeAccessSQL(&sql, type: Self.kind, alias: "t", user: user, bypass: adminBypass)
        sql.append(
            Self.responseJSON + "::text, t.user_id, coalesce(t.specs, '[]')::text,"
                + " coalesce(t.meta ->> 'has_user_valves', '') = 'true', " + writer
                + " FROM chat.plugins t WHERE t.kind = 'tool' AND ")
        GrantStore.visible(&sql, type: Self.kind, alias: "t", user: user, bypass: adminBypass)
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
        let owners = try await OwnerLookup(auth: store.auth).owners(Set(rows.map(\.1)), caller: user)
        return rows.map { ($0.0, owners[$0.1]?.jsonText ?? "null", $0.2, $0.3, $0.4) }
    }

    @Sendable func export(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        if !user.isAdmin {
            guard try await policies.policy(user.userID).allows("workspace.tools_export") else { throw APIError.unauthorized }
        }
        var sql = SQLBuilder(
            "SELECT coalesce(json_agg(j ORDER BY u DESC, s DESC), '[]')::text FROM (SELECT " + Self.modelJSON
                + " AS j, t.updated_at AS u, t.seq AS s FROM chat.plugins t WHERE t.kind = 'tool' AND ")
        GrantStore.visible(&sql, type: Self.kind, alias: "t", user: user, bypass: adminBypass, permission: "write")
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
        _ = try await checked(try context.parameters.require("id"), user, "read")
        throw PluginStore.needsCode("tools")
    }

    // MARK: One tool

    @Sendable func create(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let policy = try await policies.policy(user.userID)
        guard user.isAdmin || policy.allows("workspace.tools") || policy.allows("workspace.tools_import") else {
            throw APIError.unauthorized
        }
        let form = try await JSONBody.decode(PluginForm.self, from: request)
        guard PluginSource.isIdentifier(form.id) else { throw PluginStore.idRule }
        let id = form.id.lowercased()
        let content = PluginSource.replacingImports(form.content)
        guard PluginSource.declares("Tools", in: content, topLevel: true) else {
            throw APIError(.badRequest, "[ERROR: Error creating tool]")
        }
        let chosen = SharingPolicy.tool.allowed(AccessGrant.normalize(form.accessGrants), user: user, policy: policy)
        let meta = Self.meta(form.meta, content: content)
        let now = Int(Date().timeIntervalSince1970)
        let json = try await history.transaction { connection -> String in
            var insert = SQLBuilder(
                "INSERT INTO chat.plugins (kind, id, user_id, name, content, specs, meta, created_at, updated_at) VALUES ('tool', ")
            for value in [id, user.userID, form.name, content] {
                insert.bind(value)
                insert.append(", ")
            }
            insert.append("'[]', ")
            insert.bind(meta.text)
            insert.append("::json, \(now), \(now))")
            try await store.insert(insert, on: connection)
            try await store.grants.replace(chosen, type: Self.kind, id: id, now: now, on: connection)
            try await store.addVersion(
                Self.kind, id,
                snapshot: PluginStore.snapshotText(
                    PluginStore.snapshot(name: form.name, content: content, meta: meta.value, dropping: Self.derived)),
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
            let writable =
                try await store.grants.permits(
                    "write", type: Self.kind, id: id, owner: row.owner, user: user, admin: adminBypass, on: connection)
            // `content` only for those who may change it, as the original.
            let extra =
                "json_build_object('user', NULL, 'write_access', \(writable)" + (writable ? ", 'content', t.content" : "")
                + ", 'specs', coalesce(t.specs, '[]'))::text"
            let rows = try await connection.query(
                """
                SELECT \(unescaped: Self.responseJSON)::text, \(unescaped: extra) FROM chat.plugins t
                WHERE t.kind = 'tool' AND t.id = \(id)
                """, logger: logger)
            for try await (item, parts) in rows.decode((String, String).self) {
                return OrderedJSON.appending(item, rawObject: parts)
            }
            throw APIError.notFound
        }
        return JSONResponse.text(json)
    }

    @Sendable func update(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let form = try await JSONBody.decode(PluginForm.self, from: request)
        let policy = try await policies.policy(user.userID)
        let content = PluginSource.replacingImports(form.content)
        let json = try await history.transaction { connection -> String in
            let row = try await checked(
                id, user, "write", missing: .notFoundUnauthorized, denied: .unauthorized, full: true, lock: true,
                on: connection)
            let mayChangeCode = user.isAdmin || policy.allows("workspace.tools") || policy.allows("workspace.tools_import")
            if form.content != row.content, !mayChangeCode { throw APIError.unauthorized }
            guard PluginSource.declares("Tools", in: content, topLevel: true) else {
                throw APIError(.badRequest, "No Tools class found in the module")
            }
            let meta = Self.meta(form.meta, content: content)
            try await store.save(
                Self.kind, id, name: form.name, content: content, meta: meta.value, metaText: meta.text, row: row,
                derived: Self.derived, user: user, message: form.commitMessage, on: connection)
            return try await store.json(Self.kind, id, Self.modelJSON, on: connection)
        }
        return JSONResponse.text(json)
    }

    @Sendable func updateAccess(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let form = try await JSONBody.decode(AccessGrantsForm.self, from: request)
        let policy = try await policies.policy(user.userID)
        let json = try await history.transaction { connection -> String in
            _ = try await checked(id, user, "write", denied: .unauthorized, lock: true, on: connection)
            try await store.grants.replaceValidated(
                form, sharing: .tool, type: Self.kind, id: id, user: user, policy: policy, on: connection)
            return try await store.json(Self.kind, id, Self.modelJSON, on: connection)
        }
        return JSONResponse.text(json)
    }

    @Sendable func delete(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        try await history.transaction { connection in
            _ = try await checked(
                id, user, "write", missing: .notFoundUnauthorized, denied: .unauthorized, lock: true, on: connection)
            try await store.delete(Self.kind, id, on: connection)
        }
        return JSONResponse.text("true")
    }

    // MARK: Valves

    @Sendable func valves(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        _ = try await checked(id, user, "write")
        return JSONResponse.text(try await store.valves(Self.kind, id, missing: .notFound))
    }

    @Sendable func updateValves(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let body = try await PluginStore.valvesBody(request)
        _ = try await checked(
            id, user, "write", missing: .notFoundUnauthorized, denied: APIError(.badRequest, ErrorText.accessProhibited))
        return JSONResponse.text(try await store.setValves(Self.kind, id, body, missing: .notFoundUnauthorized))
    }

    @Sendable func userValves(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        _ = try await checked(id, user, "read")
        return JSONResponse.text(try await store.userValves(Self.kind, id, user: user.userID))
    }

    @Sendable func updateUserValves(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let body = try await PluginStore.valvesBody(request)
        _ = try await checked(id, user, "read")
        return JSONResponse.text(try await store.setUserValves(Self.kind, id, user: user.userID, body, missing: .notFound))
    }

    // MARK: History

    /// `require_tool_history_access`: the owner, a write grant, or an admin with the bypass; 404 "Not found".
    func historyAccess(
        _ id: String, _ user: Identity, full: Bool = false, lock: Bool = false, on connection: PostgresConnection
    ) async throws -> PluginStore.Row {
        try await store.checked(
            Self.kind, id, user, "write", admin: adminBypass, missing: APIError(.notFound, "Not found"),
            denied: .accessProhibited, full: full, lock: lock, on: connection)
    }

    func historyAccess(_ id: String, _ user: Identity) async throws {
        _ = try await history.postgres.withConnection { try await historyAccess(id, user, on: $0) }
    }

    @Sendable func historyList(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let page = try JSONBody.queryInt(request.queryValue("page"), name: "page") ?? 1
        try await historyAccess(id, user)
        return JSONResponse.text(try await store.historyPage(Self.kind, id, page: page, caller: user))
    }

    @Sendable func historyEntry(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        try await historyAccess(id, user)
        return JSONResponse.text(
            try await store.entryWithAuthor(Self.kind, id, try context.parameters.require("entry"), caller: user))
    }

    @Sendable func diff(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let ids = try requiredQuery(request, "from_id", "to_id")
        try await historyAccess(id, user)
        return JSONResponse.text(try await store.diff(Self.kind, id, from: ids[0], to: ids[1]))
    }

    @Sendable func deleteHistoryEntry(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let entry = try context.parameters.require("entry")
        try await history.transaction { connection in
            let row = try await historyAccess(id, user, lock: true, on: connection)
            try await store.deleteEntry(Self.kind, id, entry, current: row.versionID, on: connection)
        }
        return JSONResponse.text("true")
    }

    /// Makes a saved version current: its name, code and meta come back (meta's derived keys recomputed).
    @Sendable func setVersion(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let form = try await JSONBody.decode(VersionForm.self, from: request)
        let json = try await history.transaction { connection -> String in
            let row = try await historyAccess(id, user, full: true, lock: true, on: connection)
            let snapshot = JSONValue.parse(try await store.entry(Self.kind, id, form.versionID, on: connection).snapshot)
            let content = snapshot?["content"]?.stringValue ?? ""
            let meta = Self.meta(snapshot?["meta"]?.objectValue ?? [:], content: content)
            try await store.save(
                Self.kind, id, name: snapshot?["name"]?.stringValue ?? row.name, content: content, meta: meta.value,
                metaText: meta.text, row: row, derived: Self.derived, user: user, message: nil,
                versionID: form.versionID, on: connection)
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
