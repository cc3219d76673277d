// /api/v1/prompts: slash-command prompts with tags, access grants and a version history (each saved change a
// snapshot; one is the production version; diffs between any two), with the real server's routes and codes.
import Foundation
import Hummingbird
import Logging
import PostgresNIO
import Shared

struct PromptsController {
    let history: ChatHistory
    let policies: PolicyCache
    let auth: AuthLookup
    /// `BYPASS_ADMIN_ACCESS_CONTROL`: admins list and write every resource (default on).
    let adminBypass: Bool
    var grants: GrantStore { GrantStore(logger: history.logger) }
    var logger: Logger { history.logger }

    static let commandTaken = APIError(
        .badRequest, "Uh-oh! This command is already registered. Please choose another command string.")
    static let pageSize = 30
    static let historyPageSize = 20

    var routes: RouteCollection<ServiceRequestContext> {
        let routes = RouteCollection(context: ServiceRequestContext.self)
        routes.get("/", use: list)
        routes.get("tags", use: tags)
        routes.get("list", use: page)
        routes.post("create", use: create)
        routes.get("id/:id", use: get)
        routes.post("id/:id/update", use: update)
        routes.post("id/:id/update/meta", use: updateMeta)
        routes.post("id/:id/update/version", use: setVersion)
        routes.post("id/:id/access/update", use: updateAccess)
        routes.post("id/:id/toggle", use: toggle)
        routes.delete("id/:id/delete", use: delete)
        routes.get("id/:id/history", use: historyList)
        routes.get("id/:id/history/diff", use: diff)
        routes.get("id/:id/history/:entry", use: historyEntry)
        routes.delete("id/:id/history/:entry", use: deleteHistoryEntry)
        return routes
    }

    // MARK: SQL

    /// `PromptModel` of prompt `p` as text, keys in the original's order.
    static let promptJSON = """
        json_build_object('id', p.id, 'command', p.command, 'user_id', p.user_id, 'name', p.name, 'content', p.content,
            'data', p.data, 'meta', p.meta, 'tags', p.tags, 'is_active', p.is_active, 'version_id', p.version_id,
            'created_at', p.created_at, 'updated_at', p.updated_at,
            'access_grants', \(GrantStore.listJSON(type: "prompt", idSQL: "p.id")))::text
        """

    /// The snapshot a history entry keeps of prompt `p` as stored now.
    static let snapshotJSON = """
        json_build_object('name', p.name, 'content', p.content, 'command', p.command, 'data', coalesce(p.data, '{}'),
            'meta', coalesce(p.meta, '{}'), 'tags', coalesce(p.tags, '[]'),
            'access_grants', \(GrantStore.listJSON(type: "prompt", idSQL: "p.id")))
        """

    func prompt(_ id: String, on connection: PostgresConnection) async throws -> String {
        let rows = try await connection.query(
            "SELECT \(unescaped: Self.promptJSON) FROM chat.prompts p WHERE p.id = \(id)", logger: logger)
        for try await json in rows.decode(String.self) { return json }
        throw APIError.notFound
    }

    // MARK: Access

    struct Stored {
        var owner: String
        var command: String
        var versionID: String?
    }

    func stored(_ id: String, on connection: PostgresConnection, lock: Bool = false) async throws -> Stored {
        let rows = try await connection.query(
            "SELECT user_id, command, version_id FROM chat.prompts WHERE id = \(id)\(unescaped: lock ? " FOR UPDATE" : "")",
            logger: logger)
        for try await (owner, command, version) in rows.decode((String, String, String?).self) {
            return Stored(owner: owner, command: command, versionID: version)
        }
        throw APIError.notFound
    }

    /// Whether the caller may `permission` the prompt: admins, its owner, or a grant.
    func may(_ permission: String, _ id: String, _ prompt: Stored, _ user: Identity, on connection: PostgresConnection)
        async throws -> Bool
    {
        try await grants.permits(
            permission, type: "prompt", id: id, owner: prompt.owner, user: user, admin: true, on: connection)
    }

    /// The prompt of the path after a write check: 404 unknown, 401 not theirs to change.
    @discardableResult
    func writable(_ id: String, _ user: Identity, on connection: PostgresConnection) async throws -> Stored {
        let prompt = try await stored(id, on: connection, lock: true)
        guard try await may("write", id, prompt, user, on: connection) else { throw APIError.accessProhibited }
        return prompt
    }

    /// The prompt of the path after a read check for the history routes (401 when not readable).
    @discardableResult
    func readable(_ id: String, _ user: Identity, on connection: PostgresConnection) async throws -> Stored {
        let prompt = try await stored(id, on: connection)
        guard try await may("read", id, prompt, user, on: connection) else { throw APIError.accessProhibited }
        return prompt
    }

    /// SQL filter for the lists: everything for admins (with the bypass), else owned or readable prompts.
    func visible(_ sql: inout SQLBuilder, _ user: Identity) {
        GrantStore.visible(&sql, type: "prompt", alias: "p", user: user, bypass: adminBypass)
    }

    func commandTaken(_ command: String, except id: String?, on connection: PostgresConnection) async throws -> Bool {
        let rows = try await connection.query(
            "SELECT 1 FROM chat.prompts WHERE command = \(command) AND id IS DISTINCT FROM \(id)", logger: logger)
        for try await _ in rows { return true }
        return false
    }

    // MARK: Lists

    @Sendable func list(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        var sql = SQLBuilder(
            "SELECT coalesce(json_agg(p.j ORDER BY p.updated_at DESC, p.seq DESC), '[]')::text FROM (SELECT "
                + Self.promptJSON + "::json AS j, p.updated_at, p.seq FROM chat.prompts p WHERE p.is_active AND ")
        visible(&sql, user)
        sql.append(") p")
        for try await json in try await history.postgres.query(sql.query, logger: logger).decode(String.self) {
            return JSONResponse.text(json)
        }
        return JSONResponse.text("[]")
    }

    @Sendable func tags(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        var sql = SQLBuilder(
            """
            SELECT coalesce(array_agg(DISTINCT t COLLATE "C" ORDER BY t COLLATE "C"), '{}') FROM chat.prompts p,
                json_array_elements_text(CASE WHEN json_typeof(p.tags) = 'array' THEN p.tags ELSE '[]' END) t
            WHERE t <> '' AND p.is_active AND
            """)
        visible(&sql, user)
        var tags: [String] = []
        for try await found in try await history.postgres.query(sql.query, logger: logger).decode([String].self) {
            tags = found
        }
        return try JSONResponse.make(tags)
    }

    /// `/list`: `query` (name, command, content, or the owner's name or email), `view_option`, `tag`,
    /// `order_by`, `direction`, 30 per page, with each prompt's owner and `write_access`.
    @Sendable func page(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let page = max(1, try JSONBody.queryInt(request.queryValue("page"), name: "page") ?? 1)
        let offset = try ChatHistory.offset(page: page, size: Self.pageSize)
        var sql = SQLBuilder("WITH found AS (SELECT p.* FROM chat.prompts p WHERE ")
        visible(&sql, user)
        if let query = request.queryValue("query"), !query.isEmpty {
            let pattern = sql.placeholder(for: "%" + query + "%")
            let owners = try await auth.users(matching: query).map(\.id)
            sql.append(
                " AND (p.name ILIKE \(pattern) OR p.command ILIKE \(pattern) OR p.content ILIKE \(pattern)"
                    + " OR p.user_id = ANY(\(sql.placeholder(for: owners))))")
        }
        WorkspaceList.viewOption(&sql, request, user: user, alias: "p")
        if let tag = request.queryValue("tag"), !tag.isEmpty {
            sql.append(
                """
                 AND EXISTS (SELECT 1 FROM json_array_elements_text(CASE WHEN json_typeof(p.tags) = 'array'
                    THEN p.tags ELSE '[]' END) t WHERE lower(t) = lower(\(sql.placeholder(for: tag))))
                """)
        }
        let (column, direction) = WorkspaceList.order(request)
        let writer = GrantStore.writeAccessSQL(&sql, type: "prompt", alias: "p", user: user, bypass: adminBypass)
        sql.append(
            """
            ), page AS (SELECT p.*, row_number() OVER (ORDER BY p.\(column) \(direction), p.seq \(direction)) AS k
                FROM found p ORDER BY k LIMIT \(Self.pageSize) OFFSET \(offset))
            SELECT (SELECT count(*)::bigint FROM found),
                coalesce(array_agg(\(Self.promptJSON) ORDER BY p.k), '{}'), coalesce(array_agg(p.user_id ORDER BY p.k), '{}'),
                coalesce(array_agg(\(writer) ORDER BY p.k), '{}') FROM page p
            """)
        var (total, items, owners, writable) = (0, [String](), [String](), [Bool]())
        let rows = try await history.postgres.query(sql.query, logger: logger).decode((Int, [String], [String], [Bool]).self)
        for try await row in rows { (total, items, owners, writable) = row }
        let users = try await OwnerLookup(auth: auth).owners(Set(owners), caller: user)
        let listed = items.indices.map { index in
            OrderedJSON.appending(
                items[index], raw: [("user", users[owners[index]]?.jsonText ?? "null"), ("write_access", "\(writable[index])")])
        }
        return JSONResponse.text("{\"items\":" + OrderedJSON.array(listed) + ",\"total\":\(total)}")
    }

    // MARK: One prompt

    struct PromptForm: Decodable {
        var command: String
        var name: String
        var content: String
        var data: [String: JSONValue]?
        var meta: [String: JSONValue]?
        var tags: [String]?
        var accessGrants: [JSONValue]?
        var versionID: String?
        var commitMessage: String?
        /// Absent means true; an explicit null or false saves a draft.
        var isProduction: Bool

        enum CodingKeys: String, CodingKey {
            case command, name, content, data, meta, tags
            case accessGrants = "access_grants"
            case versionID = "version_id"
            case commitMessage = "commit_message"
            case isProduction = "is_production"
        }

        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            command = try c.decode(String.self, forKey: .command)
            name = try c.decode(String.self, forKey: .name)
            content = try c.decode(String.self, forKey: .content)
            data = try c.decodeIfPresent([String: JSONValue].self, forKey: .data)
            meta = try c.decodeIfPresent([String: JSONValue].self, forKey: .meta)
            tags = try c.decodeIfPresent([String].self, forKey: .tags)
            accessGrants = try c.decodeIfPresent([JSONValue].self, forKey: .accessGrants)
            versionID = try c.decodeIfPresent(String.self, forKey: .versionID)
            commitMessage = try c.decodeIfPresent(String.self, forKey: .commitMessage)
            isProduction = c.contains(.isProduction) ? (try c.decodeIfPresent(Bool.self, forKey: .isProduction) ?? false) : true
        }

        /// `data` or `meta` as stored: the sent object unless it is missing or empty.
        static func text(_ value: [String: JSONValue]?) -> String? {
            guard let value, !value.isEmpty else { return nil }
            return JSONValue.object(value).jsonText
        }
    }

    @Sendable func create(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let policy = try await policies.policy(user.userID)
        guard user.isAdmin || policy.allows("workspace.prompts") || policy.allows("workspace.prompts_import") else {
            throw APIError.unauthorized
        }
        let form = try await JSONBody.decode(PromptForm.self, from: request)
        let chosen = SharingPolicy.prompt.allowed(AccessGrant.normalize(form.accessGrants), user: user, policy: policy)
        let id = UUID().uuidString.lowercased()
        let now = Int(Date().timeIntervalSince1970)
        let json = try await history.transaction { connection -> String in
            // A taken command (also one taken by a create that won a race) inserts nothing.
            let inserted = try await connection.query(
                """
                INSERT INTO chat.prompts (id, command, user_id, name, content, data, meta, tags, created_at, updated_at)
                VALUES (\(id), \(form.command), \(user.userID), \(form.name), \(form.content),
                    \(PromptForm.text(form.data) ?? "{}")::json, \(PromptForm.text(form.meta) ?? "{}")::json,
                    \(Self.tagsText(form.tags ?? []))::json, \(now), \(now))
                ON CONFLICT (command) DO NOTHING RETURNING 1
                """, logger: logger)
            var created = false
            for try await _ in inserted { created = true }
            guard created else { throw Self.commandTaken }
            try await grants.replace(chosen, type: "prompt", id: id, now: now, on: connection)
            try await addHistory(
                id, snapshot: { $0.append(Self.snapshotJSON) }, parent: nil, user: user, message: form.commitMessage ?? "Initial version",
                makeCurrent: true, now: now, on: connection)
            return try await prompt(id, on: connection)
        }
        return JSONResponse.text(json)
    }

    /// Records a history entry whose snapshot `snapshot` writes as SQL over prompt `p` (as stored after the
    /// change).
    func addHistory(
        _ promptID: String, snapshot: (inout SQLBuilder) -> Void, parent: String?, user: Identity, message: String?,
        makeCurrent: Bool, now: Int, on connection: PostgresConnection
    ) async throws {
        let entry = UUID().uuidString.lowercased()
        var sql = SQLBuilder("INSERT INTO chat.prompt_history (id, prompt_id, parent_id, snapshot, user_id, commit_message, created_at) SELECT ")
        sql.bind(entry)
        sql.append(", p.id, ")
        sql.bind(parent)
        sql.append(", ")
        snapshot(&sql)
        sql.append(", ")
        sql.bind(user.userID)
        sql.append(", ")
        sql.bind(message)
        sql.append(", ")
        sql.bind(now)
        sql.append(" FROM chat.prompts p WHERE p.id = ")
        sql.bind(promptID)
        try await connection.query(sql.query, logger: logger)
        if makeCurrent {
            try await connection.query("UPDATE chat.prompts SET version_id = \(entry) WHERE id = \(promptID)", logger: logger)
        }
    }

    @Sendable func get(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let json = try await history.postgres.withConnection { connection -> String in
            // Not readable answers as unknown (404), as the original.
            let prompt = try await stored(id, on: connection)
            guard try await may("read", id, prompt, user, on: connection) else { throw APIError.notFound }
            let writable = try await grants.permits(
                "write", type: "prompt", id: id, owner: prompt.owner, user: user, admin: adminBypass, on: connection)
            return OrderedJSON.appending(
                try await self.prompt(id, on: connection), raw: [("user", "null"), ("write_access", "\(writable)")])
        }
        return JSONResponse.text(json)
    }

    @Sendable func update(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let form = try await JSONBody.decode(PromptForm.self, from: request)
        let now = Int(Date().timeIntervalSince1970)
        let tags = Self.tagsText(form.tags)
        let data = PromptForm.text(form.data)
        let meta = PromptForm.text(form.meta)
        let json = try await history.transaction { connection -> String in
            let prompt = try await writable(id, user, on: connection)
            if form.command != prompt.command, try await commandTaken(form.command, except: id, on: connection) {
                throw Self.commandTaken
            }
            // A change of name, command, content or (sent) tags makes a history entry.
            let rows = try await connection.query(
                """
                SELECT name <> \(form.name) OR command <> \(form.command) OR content <> \(form.content)
                    OR (\(tags)::text IS NOT NULL AND coalesce(tags::text, '') <> \(tags)),
                    (SELECT h.id FROM chat.prompt_history h WHERE h.prompt_id = p.id ORDER BY h.created_at DESC, h.seq DESC LIMIT 1)
                FROM chat.prompts p WHERE p.id = \(id)
                """, logger: logger)
            var (changed, parent) = (false, String?.none)
            for try await row in rows.decode((Bool, String?).self) { (changed, parent) = row }
            // A draft changes only the command of the live prompt.
            let live = form.isProduction
            try await claimingCommand {
                try await connection.query(
                    """
                    UPDATE chat.prompts SET command = \(form.command), updated_at = \(now),
                        name = CASE WHEN \(live) THEN \(form.name) ELSE name END,
                        content = CASE WHEN \(live) THEN \(form.content) ELSE content END,
                        data = CASE WHEN \(live) THEN coalesce(\(data)::json, data) ELSE data END,
                        meta = CASE WHEN \(live) THEN coalesce(\(meta)::json, meta) ELSE meta END,
                        tags = CASE WHEN \(live) THEN coalesce(\(tags)::json, tags) ELSE tags END
                    WHERE id = \(id)
                    """, logger: logger)
            }
            if changed {
                try await addHistory(
                    id,
                    snapshot: { sql in
                        let name = sql.placeholder(for: form.name)
                        let content = sql.placeholder(for: form.content)
                        let data = sql.placeholder(for: data ?? "{}")
                        let meta = sql.placeholder(for: meta ?? "{}")
                        let tags = sql.placeholder(for: tags)
                        sql.append(
                            """
                            json_build_object('name', \(name)::text, 'content', \(content)::text, 'command', p.command,
                                'data', \(data)::json, 'meta', \(meta)::json, 'tags', coalesce(\(tags)::json, p.tags, '[]'),
                                'access_grants', \(GrantStore.listJSON(type: "prompt", idSQL: "p.id")))
                            """)
                    },
                    parent: parent, user: user, message: form.commitMessage, makeCurrent: form.isProduction, now: now,
                    on: connection)
            }
            return try await self.prompt(id, on: connection)
        }
        return JSONResponse.text(json)
    }

    static func tagsText(_ tags: [String]?) -> String? {
        tags.map { JSONValue.array($0.map(JSONValue.string)).jsonText }
    }

    /// A write that sets a command: another prompt taking it first (the unique index) is the taken-command 400.
    func claimingCommand(_ write: () async throws -> Void) async throws {
        do {
            try await write()
        } catch where error.isUniqueViolation {
            throw Self.commandTaken
        }
    }

    struct MetaForm: Decodable {
        var name: String
        var command: String
        var tags: [String]?
    }

    @Sendable func updateMeta(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let form = try await JSONBody.decode(MetaForm.self, from: request)
        let json = try await history.transaction { connection -> String in
            let prompt = try await writable(id, user, on: connection)
            if form.command != prompt.command, try await commandTaken(form.command, except: id, on: connection) {
                throw Self.commandTaken
            }
            try await claimingCommand {
                try await connection.query(
                    """
                    UPDATE chat.prompts SET name = \(form.name), command = \(form.command),
                        tags = coalesce(\(Self.tagsText(form.tags))::json, tags),
                        updated_at = \(Int(Date().timeIntervalSince1970))
                    WHERE id = \(id)
                    """, logger: logger)
            }
            return try await self.prompt(id, on: connection)
        }
        return JSONResponse.text(json)
    }

    /// Makes a history entry the production version: name, content, data, meta and tags come back from its
    /// snapshot (the command and grants stay).
    @Sendable func setVersion(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let form = try await JSONBody.decode(VersionForm.self, from: request)
        let json = try await history.transaction { connection -> String in
            try await writable(id, user, on: connection)
            let updated = try await connection.query(
                """
                UPDATE chat.prompts p SET version_id = h.id, updated_at = \(Int(Date().timeIntervalSince1970)),
                    name = coalesce(h.snapshot ->> 'name', p.name), content = coalesce(h.snapshot ->> 'content', p.content),
                    data = coalesce(h.snapshot -> 'data', p.data), meta = coalesce(h.snapshot -> 'meta', p.meta),
                    tags = coalesce(h.snapshot -> 'tags', p.tags)
                FROM chat.prompt_history h WHERE p.id = \(id) AND h.id = \(form.versionID) AND h.prompt_id = p.id
                RETURNING 1
                """, logger: logger)
            var found = false
            for try await _ in updated { found = true }
            guard found else { throw ChatHistory.failed }
            return try await self.prompt(id, on: connection)
        }
        return JSONResponse.text(json)
    }

    @Sendable func updateAccess(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let form = try await JSONBody.decode(AccessGrantsForm.self, from: request)
        let policy = try await policies.policy(user.userID)
        let json = try await history.transaction { connection -> String in
            try await writable(id, user, on: connection)
            try await grants.replaceValidated(
                form, sharing: .prompt, type: "prompt", id: id, user: user, policy: policy, on: connection)
            return try await prompt(id, on: connection)
        }
        return JSONResponse.text(json)
    }

    @Sendable func toggle(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let json = try await history.transaction { connection -> String in
            try await writable(id, user, on: connection)
            try await connection.query(
                """
                UPDATE chat.prompts SET is_active = NOT is_active, updated_at = \(Int(Date().timeIntervalSince1970))
                WHERE id = \(id)
                """, logger: logger)
            return try await prompt(id, on: connection)
        }
        return JSONResponse.text(json)
    }

    @Sendable func delete(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        try await history.transaction { connection in
            try await writable(id, user, on: connection)
            try await Self.deleteRows(ids: [id], on: connection, logger: logger)
        }
        return JSONResponse.text("true")
    }

    /// Removes prompts with their history and grants.
    static func deleteRows(ids: [String], on connection: PostgresConnection, logger: Logger) async throws {
        try await connection.query("DELETE FROM chat.prompt_history WHERE prompt_id = ANY(\(ids))", logger: logger)
        try await connection.query(
            "DELETE FROM chat.access_grants WHERE resource_type = 'prompt' AND resource_id = ANY(\(ids))", logger: logger)
        try await connection.query("DELETE FROM chat.prompts WHERE id = ANY(\(ids))", logger: logger)
    }

    // MARK: History

    static let entryJSON = """
        json_build_object('id', h.id, 'prompt_id', h.prompt_id, 'parent_id', h.parent_id, 'snapshot', h.snapshot,
            'user_id', h.user_id, 'commit_message', h.commit_message, 'created_at', h.created_at)::text
        """

    @Sendable func historyList(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        // Pages count from 0 here, as the original's.
        let page = try JSONBody.queryInt(request.queryValue("page"), name: "page") ?? 0
        let offset = try ChatHistory.offset(page: max(0, page) + 1, size: Self.historyPageSize)
        let rows = try await history.postgres.withConnection { connection -> [(String, String)] in
            try await readable(id, user, on: connection)
            let found = try await connection.query(
                """
                SELECT \(unescaped: Self.entryJSON), h.user_id FROM chat.prompt_history h WHERE h.prompt_id = \(id)
                ORDER BY h.created_at DESC, h.seq DESC LIMIT \(Self.historyPageSize) OFFSET \(offset)
                """, logger: logger)
            var rows: [(String, String)] = []
            for try await row in found.decode((String, String).self) { rows.append(row) }
            return rows
        }
        let users = try await OwnerLookup(auth: auth).owners(Set(rows.map(\.1)), caller: user)
        return JSONResponse.text(
            OrderedJSON.array(rows.map { OrderedJSON.appending($0.0, raw: [("user", users[$0.1]?.jsonText ?? "null")]) }))
    }

    /// A history entry of the prompt as JSON, with its snapshot as stored text.
    func entry(_ entry: String, of id: String, on connection: PostgresConnection) async throws -> (json: String, snapshot: String) {
        let rows = try await connection.query(
            """
            SELECT \(unescaped: Self.entryJSON), h.snapshot::text FROM chat.prompt_history h
            WHERE h.id = \(entry) AND h.prompt_id = \(id)
            """, logger: logger)
        for try await row in rows.decode((String, String).self) { return row }
        throw APIError.notFound
    }

    @Sendable func historyEntry(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let entryID = try context.parameters.require("entry")
        let json = try await history.postgres.withConnection { connection -> String in
            try await readable(id, user, on: connection)
            return try await entry(entryID, of: id, on: connection).json
        }
        return JSONResponse.text(json)
    }

    @Sendable func diff(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let ids = try requiredQuery(request, "from_id", "to_id")
        let (from, to) = (ids[0], ids[1])
        let (fromSnapshot, toSnapshot) = try await history.postgres.withConnection { connection in
            try await readable(id, user, on: connection)
            return (try await entry(from, of: id, on: connection).snapshot, try await entry(to, of: id, on: connection).snapshot)
        }
        let (before, after) = (JSONValue.parse(fromSnapshot), JSONValue.parse(toSnapshot))
        let old = before?["content"]?.stringValue ?? ""
        let new = after?["content"]?.stringValue ?? ""
        let lines = try UnifiedDiff.lines(old, new, fromFile: "v" + from.prefix(8), toFile: "v" + to.prefix(8))
        return JSONResponse.text(
            OrderedJSON.appending(
                OrderedJSON.object(["from_id": .string(from), "to_id": .string(to)]),
                raw: [
                    ("from_snapshot", fromSnapshot), ("to_snapshot", toSnapshot),
                    ("content_diff", JSONValue.array(lines.map(JSONValue.string)).jsonText),
                    ("line_endings_only", "\(lines.isEmpty && old != new)"),
                    ("name_changed", "\(before?["name"] != after?["name"])"),
                ]))
    }

    @Sendable func deleteHistoryEntry(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        let id = try context.parameters.require("id")
        let entryID = try context.parameters.require("entry")
        try await history.transaction { connection in
            let prompt = try await writable(id, user, on: connection)
            guard prompt.versionID != entryID else {
                throw APIError(.badRequest, "Cannot delete the active production version")
            }
            let deleted = try await connection.query(
                "DELETE FROM chat.prompt_history WHERE id = \(entryID) AND prompt_id = \(id) RETURNING parent_id",
                logger: logger)
            var found = false
            var parent: String?
            for try await row in deleted.decode(String?.self) { (found, parent) = (true, row) }
            guard found else { throw APIError.notFound }
            try await connection.query(
                "UPDATE chat.prompt_history SET parent_id = \(parent) WHERE prompt_id = \(id) AND parent_id = \(entryID)",
                logger: logger)
        }
        return JSONResponse.text("true")
    }
}
