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
    var history: ChatHistory { store.history }
    var logger: Logger { store.logger }
    static let kind = "function"
    static let derived = ["manifest", "has_user_valves", "toggle"]
    static let historyMissing = APIError(.notFound, "Not found")

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
    static func meta(_ form: [String: JSONValue], content: String, type: String) -> (value: JSONValue, text: String) {
        PluginSource.meta(
            [
                ("description", form["description"] ?? .null), ("manifest", PluginSource.frontmatter(content)),
                ("toggle", .bool(type == "filter" && content.contains("self.toggle = True"))),
            ], extras: form)
    }

    /// The function's type, or `error` when the source declares none of the classes.
    static func type(of content: String, or error: APIError) throws -> String {
        guard let type = PluginSource.functionType(content) else { throw error }
        return type
    }

    /// The function as `FunctionModel` text (401 with the not-found text when unknown, as the original).
    func one(_ id: String, on connection: PostgresConnection) async throws -> String {
        try await store.json(Self.kind, id, Self.modelJSON(), missing: .notFoundUnauthorized, on: connection)
    }

    // MARK: Lists

    /// Every function (`json` of each), oldest first.
    func all(_ json: String) async throws -> Response {
        let rows = try await history.postgres.query(
            """
            SELECT coalesce(json_agg(\(unescaped: json) ORDER BY t.seq), '[]')::text FROM chat.plugins t
            WHERE t.kind = 'function'
            """, logger: logger)
        for try await json in rows.decode(String.self) { return JSONResponse.text(json) }
        return JSONResponse.text("[]")
    }

    /// Every function without its code, for any signed-in user (the chat page reads the actions and filters).
    @Sendable func list(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireVerified()
        return try await all(Self.responseJSON)
    }

    @Sendable func adminList(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireAdmin()
        let sql = SQLBuilder(
            "SELECT " + Self.responseJSON
                + "::text, t.user_id FROM chat.plugins t WHERE t.kind = 'function' ORDER BY t.updated_at DESC, t.seq DESC")
        return JSONResponse.text(try await store.list(sql, caller: user) { [("user", $0?.jsonText ?? "null")] })
    }

    @Sendable func export(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        let valves = try JSONBody.queryBool(request.queryValue("include_valves"), name: "include_valves", default: false)
        return try await all(Self.modelJSON(valves: valves))
    }

    @Sendable func needsCode(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        throw PluginStore.needsCode("functions")
    }

    // MARK: One function

    @Sendable func create(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireAdmin()
        let form = try await JSONBody.decode(PluginForm.self, from: request)
        guard PluginSource.isIdentifier(form.id) else { throw PluginStore.idRule }
        let id = form.id.lowercased()
        let content = PluginSource.replacingImports(form.content)
        let type = try Self.type(of: content, or: APIError(.badRequest, "[ERROR: Error creating function]"))
        let meta = Self.meta(form.meta, content: content, type: type)
        let now = Int(Date().timeIntervalSince1970)
        let json = try await history.transaction { connection -> String in
            var insert = SQLBuilder(
                """
                INSERT INTO chat.plugins (kind, id, user_id, name, type, content, meta, is_active, is_global, created_at,
                    updated_at) VALUES ('function',
                """)
            for value in [id, user.userID, form.name, type, content] {
                insert.bind(value)
                insert.append(", ")
            }
            insert.bind(meta.text)
            insert.append("::json, false, false, \(now), \(now))")
            try await store.insert(insert, on: connection)
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
        _ = try context.requireAdmin()
        let id = try context.parameters.require("id")
        return JSONResponse.text(try await history.postgres.withConnection { try await one(id, on: $0) })
    }

    func flip(_ column: String, _ context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        let id = try context.parameters.require("id")
        let json = try await history.postgres.withConnection { connection in
            try await connection.query(
                """
                UPDATE chat.plugins SET \(unescaped: column) = NOT \(unescaped: column),
                    updated_at = \(Int(Date().timeIntervalSince1970))
                WHERE kind = 'function' AND id = \(id)
                """, logger: logger)
            return try await one(id, on: connection)
        }
        return JSONResponse.text(json)
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
        let form = try await JSONBody.decode(PluginForm.self, from: request)
        let content = PluginSource.replacingImports(form.content)
        let type = try Self.type(of: content, or: APIError(.badRequest, "No Function class found in the module"))
        let meta = Self.meta(form.meta, content: content, type: type)
        let json = try await history.transaction { connection -> String in
            guard let row = try await store.row(Self.kind, id, full: true, lock: true, on: connection) else {
                throw APIError(.badRequest, "Function not found")
            }
            try await store.save(
                Self.kind, id, name: form.name, content: content, meta: meta.value, metaText: meta.text, type: type,
                row: row, derived: Self.derived, user: user, message: form.commitMessage, on: connection)
            return try await one(id, on: connection)
        }
        return JSONResponse.text(json)
    }

    @Sendable func delete(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        let id = try context.parameters.require("id")
        try await history.transaction { try await store.delete(Self.kind, id, on: $0) }
        return JSONResponse.text("true")
    }

    // MARK: Valves

    func existing(_ id: String) async throws -> PluginStore.Row {
        guard let row = try await history.postgres.withConnection({ try await store.row(Self.kind, id, on: $0) }) else {
            throw APIError.notFoundUnauthorized
        }
        return row
    }

    @Sendable func valves(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        let id = try context.parameters.require("id")
        return JSONResponse.text(try await store.valves(Self.kind, id, missing: .notFoundUnauthorized))
    }

    @Sendable func valvesSpec(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        _ = try await existing(try context.parameters.require("id"))
        throw PluginStore.needsCode("functions")
    }

    @Sendable func updateValves(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        let id = try context.parameters.require("id")
        let body = try await PluginStore.valvesBody(request)
        return JSONResponse.text(try await store.setValves(Self.kind, id, body, missing: .notFoundUnauthorized))
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
        let body = try await PluginStore.valvesBody(request)
        guard try await existing(id).isActive else { throw APIError(.badRequest, "Function is not active") }
        return JSONResponse.text(
            try await store.setUserValves(Self.kind, id, user: user.userID, body, missing: .notFoundUnauthorized))
    }

    // MARK: History (admins)

    func historyRow(_ id: String, full: Bool = false, on connection: PostgresConnection) async throws -> PluginStore.Row {
        guard let row = try await store.row(Self.kind, id, full: full, lock: true, on: connection) else {
            throw Self.historyMissing
        }
        return row
    }

    func exists(_ id: String) async throws {
        let row = try await history.postgres.withConnection { try await store.row(Self.kind, id, on: $0) }
        guard row != nil else { throw Self.historyMissing }
    }

    @Sendable func historyList(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireAdmin()
        let id = try context.parameters.require("id")
        let page = try JSONBody.queryInt(request.queryValue("page"), name: "page") ?? 1
        try await exists(id)
        return JSONResponse.text(try await store.historyPage(Self.kind, id, page: page, caller: user))
    }

    @Sendable func historyEntry(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireAdmin()
        let id = try context.parameters.require("id")
        try await exists(id)
        return JSONResponse.text(
            try await store.entryWithAuthor(Self.kind, id, try context.parameters.require("entry"), caller: user))
    }

    @Sendable func diff(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        let id = try context.parameters.require("id")
        let ids = try requiredQuery(request, "from_id", "to_id")
        try await exists(id)
        return JSONResponse.text(try await store.diff(Self.kind, id, from: ids[0], to: ids[1]))
    }

    @Sendable func deleteHistoryEntry(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        _ = try context.requireAdmin()
        let id = try context.parameters.require("id")
        let entry = try context.parameters.require("entry")
        try await history.transaction { connection in
            let row = try await historyRow(id, on: connection)
            try await store.deleteEntry(Self.kind, id, entry, current: row.versionID, on: connection)
        }
        return JSONResponse.text("true")
    }

    @Sendable func setVersion(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireAdmin()
        let id = try context.parameters.require("id")
        let form = try await JSONBody.decode(VersionForm.self, from: request)
        let json = try await history.transaction { connection -> String in
            let row = try await historyRow(id, full: true, on: connection)
            let snapshot = JSONValue.parse(try await store.entry(Self.kind, id, form.versionID, on: connection).snapshot)
            let content = snapshot?["content"]?.stringValue ?? ""
            let type = try Self.type(of: content, or: APIError(.badRequest, "No Function class found in the module"))
            let meta = Self.meta(snapshot?["meta"]?.objectValue ?? [:], content: content, type: type)
            try await store.save(
                Self.kind, id, name: snapshot?["name"]?.stringValue ?? row.name, content: content, meta: meta.value,
                metaText: meta.text, type: type, row: row, derived: Self.derived, user: user, message: nil,
                versionID: form.versionID, on: connection)
            return try await one(id, on: connection)
        }
        return JSONResponse.text(json)
    }
}
