// /api/v1/functions: admin-managed pipes, filters and actions, stored with their valves, switches and
// history. The type comes from the first class the source declares (Pipe, Filter, Action, Event); the code
// itself never runs in Skiff.
import Foundation
import Hummingbird
import Logging
import PostgresNIO
import Shared

struct FunctionsController {
    let store: PluginStore
    let auth: AuthLookup
    var history: ChatHistory { store.history }
    var logger: Logger { store.logger }
    static let kind = "function"
    static let missing = APIError(.unauthorized, ErrorText.notFound)

    var routes: RouteCollection<ServiceRequestContext> {
        let routes = RouteCollection(context: ServiceRequestContext.self)
        routes.get("/", use: list)
        routes.get("list", use: adminList)
        routes.get("export", use: export)
        routes.post("load/url", use: needsCode)
        routes.post("sync", use: needsCode)
        routes.post("create", use: create)
        routes.get("id/:id", use: get)
        routes.post("id/:id/toggle", use: toggle)
        routes.post("id/:id/toggle/global", use: toggleGlobal)
        routes.post("id/:id/update", use: update)
        routes.delete("id/:id/delete", use: delete)
        routes.get("id/:id/valves", use: valves)
        routes.get("id/:id/valves/spec", use: valvesSpec)
        routes.post("id/:id/valves/update", use: updateValves)
        routes.get("id/:id/valves/user", use: userValves)
        routes.get("id/:id/valves/user/spec", use: userValvesSpec)
        routes.post("id/:id/valves/user/update", use: updateUserValves)
        routes.get("id/:id/history", use: historyList)
        routes.get("id/:id/history/diff", use: diff)
        routes.get("id/:id/history/:entry", use: historyEntry)
        routes.delete("id/:id/history/:entry", use: deleteHistoryEntry)
        routes.post("id/:id/update/version", use: setVersion)
        return routes
    }

    /// `FunctionResponse` (type before name).
    static let responseJSON = """
        json_build_object('version_id', t.version_id, 'id', t.id, 'user_id', t.user_id, 'type', t.type, 'name', t.name,
            'meta', t.meta, 'is_active', t.is_active, 'is_global', t.is_global, 'updated_at', t.updated_at,
            'created_at', t.created_at)
        """
    /// `FunctionModel`, or `FunctionWithValvesModel` with `valves`.
    static func modelJSON(valves: Bool = false) -> String {
        """
        json_build_object('version_id', t.version_id, 'id', t.id, 'user_id', t.user_id, 'name', t.name, 'type', t.type,
            'content', t.content, 'meta', t.meta,\(valves ? " 'valves', coalesce(t.valves, '{}')," : "")
            'is_active', t.is_active, 'is_global', t.is_global, 'updated_at', t.updated_at, 'created_at', t.created_at)
        """
    }

    /// `FunctionMeta` as the original stores it: description, the frontmatter `manifest`, then `toggle` (a filter
    /// that sets `self.toggle = True`) and the form's other keys.
    static func meta(_ form: [String: JSONValue], content: String, type: String) -> String {
        let toggle = type == "filter" && content.contains("self.toggle = True")
        return PluginSource.ordered(
            [
                ("description", form["description"] ?? .null),
                ("manifest", .object(Dictionary(PluginSource.frontmatter(content), uniquingKeysWith: { $1 }))),
                ("toggle", .bool(toggle)),
            ], extras: form)
    }

    static func snapshot(name: String, content: String?, meta: JSONValue?) -> String {
        var meta = meta?.objectValue ?? [:]
        if meta["description"] == nil { meta["description"] = .null }
        if meta["i18n"].map({ $0 == .null || $0 == .object([:]) }) ?? false { meta["i18n"] = nil }
        for key in ["manifest", "has_user_valves", "toggle"] { meta[key] = nil }
        return OrderedJSON.object([("name", .string(name)), ("content", .string(content ?? "")), ("meta", .object(meta))])
    }

    func one(_ id: String, json: String = modelJSON()) async throws -> String {
        try await history.postgres.withConnection { connection in
            do {
                return try await store.json(Self.kind, id, json, on: connection)
            } catch let error as APIError where error.status == .notFound {
                throw Self.missing
            }
        }
    }

    // MARK: Lists

    func rows(_ json: String, ordered: Bool) -> SQLBuilder {
        SQLBuilder(
            "SELECT coalesce(json_agg(j ORDER BY " + (ordered ? "u DESC, s DESC" : "s") + "), '[]')::text FROM (SELECT "
                + json + " AS j, t.updated_at AS u, t.seq AS s FROM chat.plugins t WHERE t.kind = 'function') x")
    }

    func text(_ sql: SQLBuilder) async throws -> Response {
        for try await json in try await history.postgres.query(sql.query, logger: logger).decode(String.self) {
            return JSONResponse.text(json)
        }
        return JSONResponse.text("[]")
    }

    /// Every function without its code, for any signed-in user (the chat page reads the actions and filters).
    @Sendable func list(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireVerified()
        return try await text(rows(Self.responseJSON, ordered: false))
    }

    @Sendable func adminList(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireAdmin()
        let sql = SQLBuilder(
            "SELECT " + Self.responseJSON
                + "::text, t.user_id FROM chat.plugins t WHERE t.kind = 'function' ORDER BY t.updated_at DESC, t.seq DESC")
        return JSONResponse.text(
            try await store.list(sql, caller: user, auth: auth) { [("user", $0 ?? "null")] })
    }

    @Sendable func export(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        let valves = try JSONBody.queryBool(request.queryValue("include_valves"), name: "include_valves", default: false)
        return try await text(rows(Self.modelJSON(valves: valves), ordered: false))
    }

    @Sendable func needsCode(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        throw PluginStore.needsCode("functions")
    }

    // MARK: One function

    @Sendable func create(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireAdmin()
        let form = try JSONBody.decode(PluginForm.self, from: try await history.body(request))
        guard PluginSource.isIdentifier(form.id) else { throw ToolsController.idRule }
        let id = form.id.lowercased()
        let content = PluginSource.replacingImports(form.content)
        let now = Int(Date().timeIntervalSince1970)
        let json = try await history.transaction { connection -> String in
            guard try await !store.exists(Self.kind, id, on: connection) else { throw ToolsController.idTaken }
            guard let type = PluginSource.functionType(content) else {
                throw APIError(.badRequest, "[ERROR: Error creating function]")
            }
            let meta = Self.meta(form.meta, content: content, type: type)
            try await connection.query(
                """
                INSERT INTO chat.plugins (kind, id, user_id, name, type, content, meta, is_active, is_global, created_at, updated_at)
                VALUES ('function', \(id), \(user.userID), \(form.name), \(type), \(content), \(meta)::json, false, false,
                    \(now), \(now))
                """, logger: logger)
            try await store.addVersion(
                Self.kind, id, snapshot: Self.snapshot(name: form.name, content: content, meta: JSONValue.parse(meta)),
                parent: nil, user: user.userID, message: form.commitMessage, now: now, on: connection)
            return try await store.json(Self.kind, id, Self.responseJSON, on: connection)
        }
        return JSONResponse.text(json)
    }

    @Sendable func get(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        return JSONResponse.text(try await one(try context.parameters.require("id")))
    }

    func flip(_ column: String, _ context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        let id = try context.parameters.require("id")
        try await history.postgres.query(
            """
            UPDATE chat.plugins SET \(unescaped: column) = NOT \(unescaped: column), updated_at = \(Int(Date().timeIntervalSince1970))
            WHERE kind = 'function' AND id = \(id)
            """, logger: logger)
        return JSONResponse.text(try await one(id))
    }

    @Sendable func toggle(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        try await flip("is_active", context)
    }

    @Sendable func toggleGlobal(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        try await flip("is_global", context)
    }

    @Sendable func update(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireAdmin()
        let id = try context.parameters.require("id")
        let form = try JSONBody.decode(PluginForm.self, from: try await history.body(request))
        let content = PluginSource.replacingImports(form.content)
        guard let type = PluginSource.functionType(content) else {
            throw APIError(.badRequest, "No Function class found in the module")
        }
        try await history.transaction { connection in
            guard let row = try await store.row(Self.kind, id, on: connection, lock: true) else {
                throw APIError(.badRequest, "Function not found")
            }
            try await save(
                id, name: form.name, content: content, type: type, meta: Self.meta(form.meta, content: content, type: type),
                row: row, user: user, message: form.commitMessage, on: connection)
        }
        return JSONResponse.text(try await one(id))
    }

    func save(
        _ id: String, name: String, content: String, type: String, meta: String, row: PluginStore.Row, user: Identity,
        message: String?, versionID: String? = nil, on connection: PostgresConnection
    ) async throws {
        let now = Int(Date().timeIntervalSince1970)
        try await connection.query(
            """
            UPDATE chat.plugins SET name = \(name), content = \(content), type = \(type), meta = \(meta)::json,
                updated_at = \(now), version_id = coalesce(\(versionID), version_id)
            WHERE kind = 'function' AND id = \(id)
            """, logger: logger)
        guard versionID == nil else { return }
        let after = Self.snapshot(name: name, content: content, meta: JSONValue.parse(meta))
        if JSONValue.parse(Self.snapshot(name: row.name, content: row.content, meta: row.meta)) != JSONValue.parse(after)
            || row.versionID == nil
        {
            try await store.addVersion(
                Self.kind, id, snapshot: after, parent: row.versionID, user: user.userID, message: message, now: now,
                on: connection)
        }
    }

    @Sendable func delete(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        let id = try context.parameters.require("id")
        try await history.transaction { try await store.deleteRows(Self.kind, ids: [id], on: $0) }
        return JSONResponse.text("true")
    }

    // MARK: Valves

    func existing(_ id: String) async throws -> PluginStore.Row {
        guard let row = try await history.postgres.withConnection({ try await store.row(Self.kind, id, on: $0) }) else {
            throw Self.missing
        }
        return row
    }

    @Sendable func valves(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        let id = try context.parameters.require("id")
        _ = try await existing(id)
        return JSONResponse.text(try await store.valves(Self.kind, id))
    }

    @Sendable func valvesSpec(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        _ = try await existing(try context.parameters.require("id"))
        throw PluginStore.needsCode("functions")
    }

    @Sendable func updateValves(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        let id = try context.parameters.require("id")
        let body = try PluginStore.valvesBody(try await history.body(request))
        _ = try await existing(id)
        return JSONResponse.text(try await store.setValves(Self.kind, id, body))
    }

    @Sendable func userValves(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        _ = try await existing(id)
        return JSONResponse.text(try await store.userValves(Self.kind, id, user: user.userID))
    }

    @Sendable func userValvesSpec(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireVerified()
        let row = try await existing(try context.parameters.require("id"))
        guard row.isActive else { return JSONResponse.text("null") }
        throw PluginStore.needsCode("functions")
    }

    @Sendable func updateUserValves(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let body = try PluginStore.valvesBody(try await history.body(request))
        guard try await existing(id).isActive else { throw APIError(.badRequest, "Function is not active") }
        return JSONResponse.text(try await store.setUserValves(Self.kind, id, user: user.userID, body))
    }

    // MARK: History (admins)

    func historyRow(_ id: String) async throws -> PluginStore.Row {
        guard let row = try await history.postgres.withConnection({ try await store.row(Self.kind, id, on: $0) }) else {
            throw APIError(.notFound, "Not found")
        }
        return row
    }

    @Sendable func historyList(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireAdmin()
        let id = try context.parameters.require("id")
        let page = try JSONBody.queryInt(request.queryValue("page"), name: "page") ?? 1
        _ = try await historyRow(id)
        return JSONResponse.text(try await store.historyPage(Self.kind, id, page: page, caller: user, auth: auth))
    }

    @Sendable func historyEntry(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireAdmin()
        let id = try context.parameters.require("id")
        _ = try await historyRow(id)
        return JSONResponse.text(
            try await store.entry(Self.kind, id, try context.parameters.require("entry"), caller: user, auth: auth).json)
    }

    @Sendable func diff(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireAdmin()
        let id = try context.parameters.require("id")
        let (from, to) = try diffQuery(request)
        _ = try await historyRow(id)
        let before = try await store.entry(Self.kind, id, from, caller: user, auth: auth).snapshot
        let after = try await store.entry(Self.kind, id, to, caller: user, auth: auth).snapshot
        return JSONResponse.text(PluginStore.diff(from: from, to: to, before, after))
    }

    @Sendable func deleteHistoryEntry(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        let id = try context.parameters.require("id")
        let entry = try context.parameters.require("entry")
        try await history.transaction { connection in
            guard let row = try await store.row(Self.kind, id, on: connection, lock: true) else {
                throw APIError(.notFound, "Not found")
            }
            try await store.deleteEntry(Self.kind, id, entry, current: row.versionID, on: connection)
        }
        return JSONResponse.text("true")
    }

    @Sendable func setVersion(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireAdmin()
        let id = try context.parameters.require("id")
        let form = try JSONBody.decode(VersionForm.self, from: try await history.body(request))
        _ = try await historyRow(id)
        let snapshot = try await store.entry(Self.kind, id, form.versionID, caller: user, auth: auth).snapshot
        let content = snapshot["content"]?.stringValue ?? ""
        guard let type = PluginSource.functionType(content) else {
            throw APIError(.badRequest, "No Function class found in the module")
        }
        try await history.transaction { connection in
            guard let row = try await store.row(Self.kind, id, on: connection, lock: true) else {
                throw APIError(.badRequest, "Function not found")
            }
            try await save(
                id, name: snapshot["name"]?.stringValue ?? row.name, content: content, type: type,
                meta: Self.meta(snapshot["meta"]?.objectValue ?? [:], content: content, type: type), row: row, user: user,
                message: nil, versionID: form.versionID, on: connection)
        }
        return JSONResponse.text(try await one(id))
    }
}
