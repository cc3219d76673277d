// /api/v1/notes: a user's notes (title and `data.content` in its md/html/json forms), pins, sharing by access
// grants, and the note's room on realtime (`events:note` to `note:{id}` on every update).
import Foundation
import Hummingbird
import Logging
import PostgresNIO
import Shared

struct NotesController {
    let history: ChatHistory
    let policies: PolicyCache
    let auth: AuthLookup
    var grants: GrantStore { GrantStore(logger: history.logger) }
    var logger: Logger { history.logger }

    static let somethingWrong = APIError(.forbidden, "Something went wrong :/")
    static let pageSize = 60

    var routes: RouteCollection<ServiceRequestContext> {
        let routes = RouteCollection(context: ServiceRequestContext.self)
        routes.get("/", use: list)
        routes.get("pinned", use: pinned)
        routes.get("search", use: search)
        routes.post("create", use: create)
        routes.get(":id", use: get)
        routes.get(":id/chats", use: chats)
        routes.get(":id/chat", use: noteChat)
        routes.post(":id/chat", use: newNoteChat)
        routes.post(":id/update", use: update)
        routes.post(":id/access/update", use: updateAccess)
        routes.post(":id/pin", use: pin)
        routes.delete(":id/delete", use: delete)
        return routes
    }

    // MARK: Access

    /// The original's `check_notes_access`: notes switched on by the admin, and the `features.notes` permission
    /// for users.
    @discardableResult
    func checkFeature(_ user: Identity) async throws -> UserPolicy {
        try await policies.require(
            "notes", of: user, disabled: APIError(.forbidden, "Notes is disabled"), denied: .unauthorized)
    }

    /// The verified caller, with notes open to them, and the note id of the path.
    func caller(_ context: ServiceRequestContext) async throws -> (Identity, String) {
        let user = try context.requireVerified()
        try await checkFeature(user)
        return (user, try context.parameters.require("id"))
    }

    /// The note's owner, after checking the caller may `permission` it (admins may do anything); 404 for an
    /// unknown note, 403 for one they may not touch.
    @discardableResult
    func authorize(
        _ id: String, _ user: Identity, _ permission: String, on connection: PostgresConnection
    ) async throws -> String {
        let rows = try await connection.query("SELECT user_id FROM chat.notes WHERE id = \(id)", logger: logger)
        var owner: String?
        for try await found in rows.decode(String.self) { owner = found }
        guard let owner else { throw APIError.notFound }
        if user.isAdmin || owner == user.userID { return owner }
        guard try await grants.has(permission, type: "note", id: id, user: user, on: connection) else {
            throw Self.somethingWrong
        }
        return owner
    }

    // MARK: JSON

    /// `NoteModel` of note `n` (keys in the original's order), with `is_pinned` for the viewer bound at
    /// `viewer`; `data` is the stored one or, in lists, `truncatedData`.
    static func noteJSON(viewer: String, data: String = "n.data") -> String {
        """
        json_build_object('id', n.id, 'user_id', n.user_id, 'title', n.title, 'data', \(data), 'meta', n.meta,
            'is_pinned', \(pinnedSQL(viewer: viewer)), 'access_grants', \(GrantStore.listJSON(type: "note", idSQL: "n.id")),
            'created_at', n.created_at, 'updated_at', n.updated_at)::text
        """
    }

    /// `NoteItemResponse` of note `n` without its `user`, which the caller appends.
    static func itemJSON(pinned: String) -> String {
        """
        json_build_object('id', n.id, 'title', n.title, 'data', \(truncatedData), 'is_pinned', \(pinned),
            'updated_at', n.updated_at, 'created_at', n.created_at)::text
        """
    }

    static func pinnedSQL(viewer: String) -> String {
        "EXISTS (SELECT 1 FROM chat.pinned_notes p WHERE p.note_id = n.id AND p.user_id = \(viewer))"
    }

    /// The lists' `data`: the first 1,000 characters of `content.md` only (an empty `data` stays empty).
    static let truncatedData = """
        CASE WHEN n.data = '{}'::jsonb THEN n.data ELSE jsonb_build_object('content', jsonb_build_object('md',
            left(coalesce(CASE WHEN jsonb_typeof(n.data -> 'content') = 'object' THEN n.data #>> '{content,md}' END, ''), 1000)))
        END
        """

    /// The note as `NoteModel` text for `viewer`.
    func note(_ id: String, viewer: String, on connection: PostgresConnection) async throws -> String {
        var sql = SQLBuilder("SELECT ")
        let viewerSQL = sql.placeholder(for: viewer)
        sql.append(Self.noteJSON(viewer: viewerSQL) + " FROM chat.notes n WHERE n.id = ")
        sql.bind(id)
        for try await text in try await connection.query(sql.query, logger: logger).decode(String.self) { return text }
        throw APIError.notFound
    }

    /// Items (`SELECT <item text>, n.user_id ...`) with their owner appended; notes whose owner is gone drop.
    func itemList(_ sql: SQLBuilder, _ user: Identity) async throws -> String {
        var rows: [(String, String)] = []
        for try await row in try await history.postgres.query(sql.query, logger: logger).decode((String, String).self) {
            rows.append(row)
        }
        let users = try await OwnerLookup(auth: auth).owners(Set(rows.map(\.1)), caller: user)
        return OrderedJSON.array(
            rows.compactMap { item, owner in users[owner].map { OrderedJSON.appending(item, raw: [("user", $0.jsonText)]) } })
    }

    // MARK: Lists

    /// Readable by the user: their own notes and those granted to them, their groups or everyone.
    static func readable(_ sql: inout SQLBuilder, _ user: Identity, permission: String = "read") {
        GrantStore.ownedOrGranted(&sql, type: "note", alias: "n", user: user, permission: permission)
    }

    @Sendable func list(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        try await checkFeature(user)
        let page = try JSONBody.queryInt(request.queryValue("page"), name: "page")
        var sql = SQLBuilder("SELECT ")
        let viewer = sql.placeholder(for: user.userID)
        sql.append(Self.itemJSON(pinned: Self.pinnedSQL(viewer: viewer)) + ", n.user_id FROM chat.notes n WHERE ")
        Self.readable(&sql, user)
        sql.append(" ORDER BY n.updated_at DESC, n.id")
        if let page {
            sql.append(" LIMIT \(Self.pageSize) OFFSET \(try ChatHistory.offset(page: page, size: Self.pageSize))")
        }
        return JSONResponse.text(try await itemList(sql, user))
    }

    @Sendable func pinned(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        try await checkFeature(user)
        var sql = SQLBuilder("SELECT " + Self.itemJSON(pinned: "true"))
        sql.append(", n.user_id FROM chat.notes n JOIN chat.pinned_notes p ON p.note_id = n.id WHERE p.user_id = ")
        sql.bind(user.userID)
        sql.append(" AND ")
        Self.readable(&sql, user)
        sql.append(" ORDER BY p.created_at DESC, n.id")
        return JSONResponse.text(try await itemList(sql, user))
    }

    /// `query` (every word, hyphens and spaces ignored, in the title or the markdown), `view_option`
    /// (`created`, `shared`), `permission` (default `write`), `order_by`, `direction`, 60 per page. Admins see
    /// every note, as the original's default `BYPASS_ADMIN_ACCESS_CONTROL`.
    @Sendable func search(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        try await checkFeature(user)
        let page = try JSONBody.queryInt(request.queryValue("page"), name: "page") ?? 1
        let offset = try ChatHistory.offset(page: page, size: Self.pageSize)
        var sql = SQLBuilder("WITH found AS (SELECT n.* FROM chat.notes n WHERE true")
        for word in (request.queryValue("query") ?? "").split(whereSeparator: \.isWhitespace) {
            let bare = word.replacingOccurrences(of: "-", with: "")
            guard !bare.isEmpty else { continue }
            let pattern = sql.placeholder(for: "%" + bare + "%")
            sql.append(
                " AND (replace(replace(n.title, '-', ''), ' ', '') ILIKE \(pattern)"
                    + " OR replace(replace(coalesce(n.data #>> '{content,md}', ''), '-', ''), ' ', '') ILIKE \(pattern))")
        }
        WorkspaceList.viewOption(&sql, request, user: user, alias: "n")
        if !user.isAdmin {
            sql.append(" AND ")
            Self.readable(&sql, user, permission: request.queryValue("permission") ?? "write")
        }
        let direction = request.queryValue("direction") == "asc" ? "ASC" : "DESC"
        let order =
            switch request.queryValue("order_by") {
            case nil: "n.updated_at DESC"
            case "name": "n.title \(direction)"
            case "created_at": "n.created_at \(direction)"
            default: "n.updated_at \(direction)"
            }
        let viewer = sql.placeholder(for: user.userID)
        sql.append(
            """
            ), page AS (SELECT n.*, row_number() OVER (ORDER BY \(order), n.id) AS k FROM found n
                ORDER BY k LIMIT \(Self.pageSize) OFFSET \(offset))
            SELECT (SELECT count(*)::bigint FROM found),
                coalesce(array_agg(\(Self.noteJSON(viewer: viewer, data: Self.truncatedData)) ORDER BY n.k), '{}'),
                coalesce(array_agg(n.user_id ORDER BY n.k), '{}') FROM page n
            """)
        var (total, notes, owners) = (0, [String](), [String]())
        let rows = try await history.postgres.query(sql.query, logger: logger).decode((Int, [String], [String]).self)
        for try await row in rows { (total, notes, owners) = row }
        let users = try await OwnerLookup(auth: auth).owners(Set(owners), caller: user)
        let items = zip(notes, owners).map { note, owner in OrderedJSON.appending(note, raw: [("user", users[owner]?.jsonText ?? "null")]) }
        return JSONResponse.text("{\"items\":" + OrderedJSON.array(items) + ",\"total\":\(total)}")
    }

    // MARK: One note

    struct NoteForm: Decodable {
        var title: String
        var data: JSONValue?
        var meta: [String: JSONValue]?
        var accessGrants: [JSONValue]?

        enum CodingKeys: String, CodingKey {
            case title, data, meta
            case accessGrants = "access_grants"
        }
    }

    @Sendable func create(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let policy = try await checkFeature(user)
        let form = try JSONBody.decode(NoteForm.self, from: try await history.body(request))
        let data = try NoteContent.sanitize(form.data)
        let chosen = SharingPolicy.note.allowed(AccessGrant.normalize(form.accessGrants), user: user, policy: policy)
        let id = UUID().uuidString.lowercased()
        let now = NoteContent.now()
        let json = try await history.transaction { connection -> String in
            try await connection.query(
                """
                INSERT INTO chat.notes (id, user_id, title, data, meta, created_at, updated_at)
                VALUES (\(id), \(user.userID), \(form.title), \((data ?? .object([:])).jsonText)::jsonb,
                    \(form.meta.map { JSONValue.object($0).jsonText })::jsonb, \(now), \(now))
                """, logger: logger)
            try await grants.replace(chosen, type: "note", id: id, now: now / 1_000_000_000, on: connection)
            return try await note(id, viewer: user.userID, on: connection)
        }
        return JSONResponse.text(json)
    }

    @Sendable func get(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (user, id) = try await caller(context)
        let json = try await history.postgres.withConnection { connection -> String in
            let owner = try await authorize(id, user, "read", on: connection)
            var writable = user.isAdmin || owner == user.userID
            if !writable { writable = try await grants.has("write", type: "note", id: id, user: user, on: connection) }
            return OrderedJSON.appending(
                try await note(id, viewer: user.userID, on: connection), [("write_access", .bool(writable))])
        }
        return JSONResponse.text(json)
    }

    /// The note's hidden chats of the caller (chats the note's assistant panel made).
    @Sendable func chats(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (user, id) = try await caller(context)
        let json = try await history.postgres.withConnection { connection -> String in
            try await authorize(id, user, "read", on: connection)
            let rows = try await connection.query(
                """
                SELECT coalesce(json_agg(\(unescaped: ChatStore.chatJSON()) ORDER BY c.updated_at DESC, c.id), '[]')::text
                FROM chat.chats c WHERE c.user_id = \(user.userID) AND c.meta ->> 'note_id' = \(id)
                AND c.meta ->> 'type' = 'note'
                """, logger: logger)
            for try await text in rows.decode(String.self) { return text }
            return "[]"
        }
        return JSONResponse.text(json)
    }

    /// The system prompt of a note's assistant chat.
    static func noteChatSystem(_ noteID: String) -> String {
        "CONTEXT:\nCurrent note id: \(noteID)\nThis chat is attached to the current note.\nFor edit requests like make "
            + "this concise, rewrite, enhance, shorten, or update: call view_note then replace_note_content.\nDo not say "
            + "an edit is done unless replace_note_content succeeds."
    }

    /// A new hidden chat of the caller attached to the note (`ChatResponse`).
    func createNoteChat(_ noteID: String, user: Identity) async throws -> String {
        let id = UUID().uuidString.lowercased()
        let now = ChatHistory.now()
        let chat: [String: JSONValue] = [
            "id": .string(id), "title": .string("Chat"), "models": .array([.string("")]),
            "params": .object(["system": .string(Self.noteChatSystem(noteID))]),
            "history": .object(["messages": .object([:]), "currentId": .null]), "messages": .array([]), "tags": .array([]),
        ]
        let row = ChatRow(
            id: id, userID: user.userID, title: "Chat", chat: chat,
            meta: ["internal": .bool(true), "type": .string("note"), "note_id": .string(noteID)], variables: .object([:]),
            folderID: nil, pinned: false, archived: false, shareID: nil, currentMessageID: nil, createdAt: now, updatedAt: now)
        return try await history.create(row, actor: user.userID, lastReadAt: now)
    }

    /// `GET /{id}/chat`: the caller's latest chat of the note (its system prompt set right, without touching
    /// `updated_at`), or a new one.
    @Sendable func noteChat(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (user, id) = try await caller(context)
        let system = Self.noteChatSystem(id)
        let existing = try await history.transaction { connection -> String? in
            try await authorize(id, user, "read", on: connection)
            let rows = try await connection.query(
                """
                SELECT c.id FROM chat.chats c WHERE c.user_id = \(user.userID) AND c.internal
                AND c.meta ->> 'type' = 'note' AND c.meta ->> 'note_id' = \(id)
                ORDER BY c.updated_at DESC, c.created_at DESC LIMIT 1
                """, logger: logger)
            var found: String?
            for try await chatID in rows.decode(String.self) { found = chatID }
            guard let chatID = found, var row = try await history.chats.lock(id: chatID, userID: user.userID, document: true, on: connection)
            else { return nil }
            var params = row.chat["params"]?.objectValue ?? [:]
            if params["note_id"] != nil || params["system"]?.stringValue != system {
                params["note_id"] = nil
                params["system"] = .string(system)
                row.chat["params"] = .object(params)
                try await history.chats.save(row, answering: false, on: connection)
            }
            return try await history.chats.json(id: chatID, on: connection)
        }
        if let existing { return JSONResponse.text(existing) }
        return JSONResponse.text(try await createNoteChat(id, user: user))
    }

    /// `POST /{id}/chat`: always a new chat of the note.
    @Sendable func newNoteChat(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (user, id) = try await caller(context)
        try await history.postgres.withConnection { connection in _ = try await authorize(id, user, "read", on: connection) }
        return JSONResponse.text(try await createNoteChat(id, user: user))
    }

    struct NoteUpdateForm: Decodable {
        var title: String?
        var data: JSONValue?
        var meta: JSONValue?
    }

    /// An update that passed validation: `data` sanitised, `meta` an object if sent.
    struct NoteChange {
        var title: String?
        var data: [String: JSONValue]?
        var meta: [String: JSONValue]?

        init(_ form: NoteUpdateForm) throws {
            if let meta = form.meta, meta != .null, meta.objectValue == nil {
                throw APIError.validation([
                    ValidationIssue(
                        type: "dict_type", loc: [.string("body"), .string("meta")],
                        msg: "Input should be a valid dictionary", input: meta)
                ])
            }
            title = form.title
            data = try NoteContent.sanitize(form.data)?.objectValue
            meta = form.meta?.objectValue
        }
    }

    @Sendable func update(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (user, id) = try await caller(context)
        let change = try NoteChange(JSONBody.decode(NoteUpdateForm.self, from: try await history.body(request)))
        let json = try await apply(change, to: id, user: user)
        // The room hears the note with only the `data` keys this update sent.
        if case .object(var event)? = JSONValue.parse(json) {
            if let sent = change.data, case .object(let stored)? = event["data"] {
                event["data"] = .object(stored.filter { sent[$0.key] != nil })
            }
            await history.realtime.emit("events:note", .object(event), to: .room("note:\(id)"))
        }
        return JSONResponse.text(json)
    }

    /// `POST /internal/notes/{id}/content` (realtime saving a collaborative document): the update without the
    /// `events:note` broadcast, as the original's document save.
    @Sendable func saveContent(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (user, id) = try await caller(context)
        let change = try NoteChange(JSONBody.decode(NoteUpdateForm.self, from: try await history.body(request)))
        return JSONResponse.text(try await apply(change, to: id, user: user))
    }

    var internalRoutes: RouteCollection<ServiceRequestContext> {
        let routes = RouteCollection(context: ServiceRequestContext.self)
        routes.post(":id/content", use: saveContent)
        return routes
    }

    /// Writes an update a user may make, merged as the original (top-level keys of `data` and `meta` replace
    /// the stored ones; `updated_at` moves only when something changed); returns the note.
    func apply(_ change: NoteChange, to id: String, user: Identity) async throws -> String {
        let data = change.data.map { JSONValue.object($0).jsonText }
        let meta = change.meta.map { JSONValue.object($0).jsonText }
        return try await history.transaction { connection -> String in
            try await authorize(id, user, "write", on: connection)
            try await connection.query(
                """
                WITH next AS (SELECT id, coalesce(\(change.title), title) AS title,
                    data || coalesce(\(data)::jsonb, '{}'::jsonb) AS data,
                    CASE WHEN \(meta)::jsonb IS NULL THEN meta ELSE coalesce(meta, '{}'::jsonb) || \(meta)::jsonb END AS meta
                    FROM chat.notes WHERE id = \(id))
                UPDATE chat.notes n SET title = next.title, data = next.data, meta = next.meta,
                    updated_at = \(NoteContent.now())
                FROM next WHERE n.id = next.id AND (n.title, n.data, n.meta) IS DISTINCT FROM (next.title, next.data, next.meta)
                """, logger: logger)
            return try await note(id, viewer: user.userID, on: connection)
        }
    }

    @Sendable func updateAccess(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let policy = try await checkFeature(user)
        let id = try context.parameters.require("id")
        let form = try JSONBody.decode(AccessGrantsForm.self, from: try await history.body(request))
        let json = try await history.transaction { connection -> String in
            try await authorize(id, user, "write", on: connection)
            try await grants.replaceValidated(form, sharing: .note, type: "note", id: id, user: user, policy: policy, on: connection)
            return try await note(id, viewer: user.userID, on: connection)
        }
        // Sockets in the note's rooms whose user lost access leave them.
        await history.realtime.recheckRoom("note:\(id)", access: "/api/v1/notes/\(id)")
        await history.realtime.recheckRoom("doc_note:\(id)", access: "/api/v1/notes/\(id)")
        return JSONResponse.text(json)
    }

    @Sendable func pin(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (user, id) = try await caller(context)
        let json = try await history.transaction { connection -> String in
            try await authorize(id, user, "read", on: connection)
            let removed = try await connection.query(
                "DELETE FROM chat.pinned_notes WHERE user_id = \(user.userID) AND note_id = \(id) RETURNING 1",
                logger: logger)
            var wasPinned = false
            for try await _ in removed { wasPinned = true }
            if !wasPinned {
                try await connection.query(
                    """
                    INSERT INTO chat.pinned_notes (user_id, note_id, created_at) VALUES (\(user.userID), \(id), \(NoteContent.now()))
                    ON CONFLICT DO NOTHING
                    """, logger: logger)
            }
            return try await note(id, viewer: user.userID, on: connection)
        }
        return JSONResponse.text(json)
    }

    @Sendable func delete(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let (user, id) = try await caller(context)
        try await history.transaction { connection in
            try await authorize(id, user, "write", on: connection)
            try await connection.query(
                "DELETE FROM chat.access_grants WHERE resource_type = 'note' AND resource_id = \(id)", logger: logger)
            try await connection.query("DELETE FROM chat.notes WHERE id = \(id)", logger: logger)
        }
        await history.realtime.closeRoom("note:\(id)")
        await history.realtime.closeRoom("doc_note:\(id)")
        return JSONResponse.text("true")
    }
}

/// Note content rules of the original.
enum NoteContent {
    /// Notes keep nanosecond timestamps, as the original's `time.time_ns()`.
    static func now() -> Int {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return spec.tv_sec * 1_000_000_000 + spec.tv_nsec
    }

    /// `sanitize_note_data`: `data` that is not an object becomes `{"content": {"md": text}}`, and a
    /// `content.md` that is not text becomes text (a JSON block for objects and lists, "" for null).
    static func sanitize(_ data: JSONValue?) throws -> JSONValue? {
        guard let data, data != .null else { return nil }
        guard case .object(var object) = data else { return .object(["content": .object(["md": .string(text(data))])]) }
        if case .object(var content)? = object["content"], let md = content["md"] {
            switch md {
            case .string: return data
            case .null: content["md"] = .string("")
            case .object, .array: content["md"] = .string("```json\n" + md.prettyText + "\n```")
            default: content["md"] = .string(text(md))
            }
            object["content"] = .object(content)
        }
        return .object(object)
    }

    static func text(_ value: JSONValue) -> String {
        switch value {
        case .string(let text): return text
        case .bool(let flag): return flag ? "True" : "False"
        case .null: return "None"
        default: return value.jsonText
        }
    }
}

extension JSONValue {
    /// Indented JSON (two spaces), for markdown that arrived as a structure.
    var prettyText: String {
        guard let data = jsonText.data(using: .utf8), let object = try? JSONSerialization.jsonObject(with: data),
            let pretty = try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
        else { return jsonText }
        return String(decoding: pretty, as: UTF8.self)
    }
}
