// What tools, functions and skills share: their rows in `chat.plugins`, the version history (an entry per
// change of the versioned fields, one of them current), users' valves, and the text rules the original applies
// to plugin code without running it (frontmatter, import paths, which classes a module declares).
import Foundation
import Hummingbird
import Logging
import PostgresNIO
import Shared

struct PluginStore: Sendable {
    let history: ChatHistory
    let auth: AuthLookup
    var logger: Logger { history.logger }
    var grants: GrantStore { GrantStore(logger: logger) }

    static let versionNotFound = APIError(.notFound, "Version not found")
    static let idRule = APIError(.badRequest, "Only alphanumeric characters and underscores are allowed in the id")
    static let idTaken = APIError(.badRequest, "Uh-oh! This id is already registered. Please choose another id string.")

    /// The stored fields handlers decide on; `content`, `meta`, `description` and `data` only when read `full`.
    struct Row: Sendable {
        var owner: String
        var name: String
        var versionID: String?
        var isActive: Bool
        var content: String?
        var meta: JSONValue?
        var description: String?
        var data: JSONValue?
    }

    func row(
        _ kind: String, _ id: String, full: Bool = false, lock: Bool = false, on connection: PostgresConnection
    ) async throws -> Row? {
        let columns = full ? "content, meta::text, description, data::text" : "NULL::text, NULL::text, NULL::text, NULL::text"
        let rows = try await connection.query(
            """
            SELECT user_id, name, version_id, is_active, \(unescaped: columns)
            FROM chat.plugins WHERE kind = \(kind) AND id = \(id)\(unescaped: lock ? " FOR UPDATE" : "")
            """, logger: logger)
        for try await (owner, name, version, active, content, meta, description, data) in rows.decode(
            (String, String, String?, Bool, String?, String?, String?, String?).self)
        {
            return Row(
                owner: owner, name: name, versionID: version, isActive: active, content: content,
                meta: meta.flatMap(JSONValue.parse), description: description, data: data.flatMap(JSONValue.parse))
        }
        return nil
    }

    /// The row after an access check: `missing` when unknown; `denied` unless the caller owns it, holds a
    /// `permission` grant, or is an admin (any admin when `admin`).
    func checked(
        _ kind: String, _ id: String, _ user: Identity, _ permission: String, admin: Bool, missing: APIError = .notFound,
        denied: APIError, full: Bool = false, lock: Bool = false, on connection: PostgresConnection
    ) async throws -> Row {
        guard let row = try await row(kind, id, full: full, lock: lock, on: connection) else { throw missing }
        guard
            try await grants.permits(
                permission, type: kind, id: id, owner: row.owner, user: user, admin: admin, on: connection)
        else { throw denied }
        return row
    }

    /// The same on a connection of its own.
    func checked(
        _ kind: String, _ id: String, _ user: Identity, _ permission: String, admin: Bool, missing: APIError = .notFound,
        denied: APIError
    ) async throws -> Row {
        try await history.postgres.withConnection { connection in
            try await checked(kind, id, user, permission, admin: admin, missing: missing, denied: denied, on: connection)
        }
    }

    /// The JSON text (built by `json`, SQL over alias `t`) of one row; `missing` when there is none.
    func json(
        _ kind: String, _ id: String, _ json: String, missing: APIError = .notFound, on connection: PostgresConnection
    ) async throws -> String {
        var sql = SQLBuilder("SELECT " + json + "::text FROM chat.plugins t WHERE t.kind = ")
        sql.bind(kind)
        sql.append(" AND t.id = ")
        sql.bind(id)
        for try await text in try await connection.query(sql.query, logger: logger).decode(String.self) { return text }
        throw missing
    }

    /// Inserts a new row (its columns and values given as SQL with binds in `values`); `idTaken` when the id is
    /// in use, even by a create that won a race.
    func insert(_ sql: SQLBuilder, on connection: PostgresConnection) async throws {
        var sql = sql
        sql.append(" ON CONFLICT (kind, id) DO NOTHING RETURNING 1")
        for try await _ in try await connection.query(sql.query, logger: logger) { return }
        throw Self.idTaken
    }

    /// Rows of a list query (`SELECT <json>, t.user_id ...`), each with `extra` (pre-encoded JSON pairs) built
    /// from its owner.
    func list(
        _ sql: SQLBuilder, caller: Identity, extra: (UserSummary?) -> [(String, String)]
    ) async throws -> String {
        var rows: [(String, String)] = []
        for try await row in try await history.postgres.query(sql.query, logger: logger).decode((String, String).self) {
            rows.append(row)
        }
        let owners = try await OwnerLookup(auth: auth).owners(Set(rows.map(\.1)), caller: caller)
        return OrderedJSON.array(rows.map { OrderedJSON.appending($0.0, raw: extra(owners[$0.1])) })
    }

    // MARK: Versions

    /// `tool_snapshot`: name, code and meta, without the meta keys derived from the code (`dropping`).
    static func snapshot(name: String, content: String?, meta: JSONValue?, dropping derived: [String]) -> JSONValue {
        var meta = meta?.objectValue ?? [:]
        if meta["description"] == nil { meta["description"] = .null }
        if meta["i18n"].map({ $0 == .null || $0 == .object([:]) }) ?? false { meta["i18n"] = nil }
        for key in derived { meta[key] = nil }
        return .object(["name": .string(name), "content": .string(content ?? ""), "meta": .object(meta)])
    }

    static func snapshotText(_ snapshot: JSONValue) -> String {
        OrderedJSON.object([
            ("name", snapshot["name"] ?? .null), ("content", snapshot["content"] ?? .null), ("meta", snapshot["meta"] ?? .null),
        ])
    }

    /// Writes a tool's or function's name, code, meta (and type); a new current version when the snapshot
    /// changed or there was none, or `versionID` made current when restoring one.
    func save(
        _ kind: String, _ id: String, name: String, content: String, meta: JSONValue, metaText: String, type: String? = nil,
        row: Row, derived: [String], user: Identity, message: String?, versionID: String? = nil,
        on connection: PostgresConnection
    ) async throws {
        let now = Int(Date().timeIntervalSince1970)
        try await connection.query(
            """
            UPDATE chat.plugins SET name = \(name), content = \(content), meta = \(metaText)::json,
                type = coalesce(\(type), type), updated_at = \(now), version_id = coalesce(\(versionID), version_id)
            WHERE kind = \(kind) AND id = \(id)
            """, logger: logger)
        guard versionID == nil else { return }
        let before = Self.snapshot(name: row.name, content: row.content, meta: row.meta, dropping: derived)
        let after = Self.snapshot(name: name, content: content, meta: meta, dropping: derived)
        if before != after || row.versionID == nil {
            try await addVersion(
                kind, id, snapshot: Self.snapshotText(after), parent: row.versionID, user: user.userID, message: message,
                now: now, on: connection)
        }
    }

    /// Records a new current version whose parent is the previous current one.
    func addVersion(
        _ kind: String, _ id: String, snapshot: String, parent: String?, user: String, message: String?, now: Int,
        on connection: PostgresConnection
    ) async throws {
        let entry = UUID().uuidString.lowercased()
        try await connection.query(
            """
            INSERT INTO chat.plugin_history (id, kind, plugin_id, parent_id, snapshot, user_id, commit_message, created_at)
            VALUES (\(entry), \(kind), \(id), \(parent), \(snapshot)::json, \(user), \(message), \(now))
            """, logger: logger)
        try await connection.query(
            "UPDATE chat.plugins SET version_id = \(entry) WHERE kind = \(kind) AND id = \(id)", logger: logger)
    }

    /// History items: `{id, <kind>_id, parent_id, user_id, commit_message, created_at}` (the routes add `user`).
    static func entryJSON(_ kind: String) -> String {
        """
        json_build_object('id', h.id, '\(kind)_id', h.plugin_id, 'parent_id', h.parent_id, 'user_id', h.user_id,
            'commit_message', h.commit_message, 'created_at', h.created_at)::text
        """
    }

    static func author(_ user: UserSummary?) -> String {
        user.map { OrderedJSON.object(["name": .string($0.name)]) } ?? "null"
    }

    /// Newest first, 20 a page from page 1, each with its author's `{name}`.
    func historyPage(_ kind: String, _ id: String, page: Int, caller: Identity) async throws -> String {
        var sql = SQLBuilder("SELECT " + Self.entryJSON(kind) + ", h.user_id FROM chat.plugin_history h WHERE h.kind = ")
        sql.bind(kind)
        sql.append(" AND h.plugin_id = ")
        sql.bind(id)
        sql.append(
            " ORDER BY h.created_at DESC, h.seq DESC LIMIT 20 OFFSET \(try ChatHistory.offset(page: max(1, page), size: 20))")
        return try await list(sql, caller: caller) { [("user", Self.author($0))] }
    }

    /// One entry: its JSON, author and stored snapshot text.
    func entry(_ kind: String, _ id: String, _ entry: String, on connection: PostgresConnection) async throws
        -> (json: String, author: String, snapshot: String)
    {
        let rows = try await connection.query(
            """
            SELECT \(unescaped: Self.entryJSON(kind)), h.user_id, h.snapshot::text FROM chat.plugin_history h
            WHERE h.kind = \(kind) AND h.plugin_id = \(id) AND h.id = \(entry)
            """, logger: logger)
        for try await row in rows.decode((String, String, String).self) { return row }
        throw Self.versionNotFound
    }

    /// The entry as the tool and function routes show it: with `user` (`{name}`), then `snapshot`.
    func entryWithAuthor(_ kind: String, _ id: String, _ entry: String, caller: Identity) async throws -> String {
        let (json, author, snapshot) = try await history.postgres.withConnection {
            try await self.entry(kind, id, entry, on: $0)
        }
        let user = try await OwnerLookup(auth: auth).owners([author], caller: caller)[author]
        return OrderedJSON.appending(json, raw: [("user", Self.author(user)), ("snapshot", snapshot)])
    }

    /// `tool_diff` of two entries: changed `name`/`meta`, and the unified diff of the code as one string.
    func diff(_ kind: String, _ id: String, from: String, to: String) async throws -> String {
        let (before, after) = try await history.postgres.withConnection { connection in
            (
                JSONValue.parse(try await entry(kind, id, from, on: connection).snapshot) ?? .null,
                JSONValue.parse(try await entry(kind, id, to, on: connection).snapshot) ?? .null
            )
        }
        var metadata: [(String, String)] = []
        for key in ["name", "meta"] where before[key] != after[key] {
            metadata.append((key, OrderedJSON.object([("before", before[key] ?? .null), ("after", after[key] ?? .null)])))
        }
        let old = before["content"]?.stringValue ?? ""
        let new = after["content"]?.stringValue ?? ""
        let patch = try UnifiedDiff.lines(old, new, fromFile: "selected.py", toFile: "production.py").joined(separator: "\n")
        return OrderedJSON.appending(
            OrderedJSON.object([("from_id", .string(from)), ("to_id", .string(to))]),
            raw: [
                ("metadata", OrderedJSON.appending("{}", raw: metadata)), ("content_diff", JSONValue.string(patch).jsonText),
                ("line_endings_only", "\(old != new && patch.isEmpty)"),
            ])
    }

    /// Removes an entry that is not the current version, handing its children to its parent.
    func deleteEntry(_ kind: String, _ id: String, _ entry: String, current: String?, on connection: PostgresConnection)
        async throws
    {
        guard current != entry else { throw APIError(.badRequest, "Cannot delete the current version") }
        let deleted = try await connection.query(
            "DELETE FROM chat.plugin_history WHERE kind = \(kind) AND plugin_id = \(id) AND id = \(entry) RETURNING parent_id",
            logger: logger)
        var found = false
        var parent: String?
        for try await row in deleted.decode(String?.self) { (found, parent) = (true, row) }
        guard found else { throw Self.versionNotFound }
        try await connection.query(
            "UPDATE chat.plugin_history SET parent_id = \(parent) WHERE kind = \(kind) AND plugin_id = \(id) AND parent_id = \(entry)",
            logger: logger)
    }

    /// Removes a plugin with its history, grants and every user's valves for it.
    func delete(_ kind: String, _ id: String, on connection: PostgresConnection) async throws {
        try await connection.query(
            "DELETE FROM chat.plugin_history WHERE kind = \(kind) AND plugin_id = \(id)", logger: logger)
        try await connection.query(
            "DELETE FROM chat.access_grants WHERE resource_type = \(kind) AND resource_id = \(id)", logger: logger)
        try await connection.query(
            "DELETE FROM chat.plugin_user_valves WHERE kind = \(kind) AND plugin_id = \(id)", logger: logger)
        try await connection.query("DELETE FROM chat.plugins WHERE kind = \(kind) AND id = \(id)", logger: logger)
    }

    /// A deleted user's tools, functions and skills, with their history, grants and valves, and the user's valves.
    static func deleteUserData(_ userID: String, on connection: PostgresConnection, logger: Logger) async throws {
        for table in ["plugin_history", "plugin_user_valves"] {
            try await connection.query(
                """
                DELETE FROM chat.\(unescaped: table) h USING chat.plugins p
                WHERE p.user_id = \(userID) AND h.kind = p.kind AND h.plugin_id = p.id
                """, logger: logger)
        }
        try await connection.query(
            """
            DELETE FROM chat.access_grants g USING chat.plugins p
            WHERE p.user_id = \(userID) AND g.resource_type = p.kind AND g.resource_id = p.id
            """, logger: logger)
        try await connection.query("DELETE FROM chat.plugins WHERE user_id = \(userID)", logger: logger)
        try await connection.query("DELETE FROM chat.plugin_user_valves WHERE user_id = \(userID)", logger: logger)
    }

    // MARK: Valves

    /// A plugin's valves (`{}` when none); `missing` when the plugin is unknown.
    func valves(_ kind: String, _ id: String, missing: APIError) async throws -> String {
        let rows = try await history.postgres.query(
            """
            SELECT CASE WHEN json_typeof(valves) = 'object' THEN valves::text ELSE '{}' END FROM chat.plugins
            WHERE kind = \(kind) AND id = \(id)
            """, logger: logger)
        for try await text in rows.decode(String.self) { return text }
        throw missing
    }

    func setValves(_ kind: String, _ id: String, _ valves: JSONValue, missing: APIError) async throws -> String {
        let text = valves.jsonText
        let rows = try await history.postgres.query(
            """
            UPDATE chat.plugins SET valves = \(text)::json, updated_at = \(Int(Date().timeIntervalSince1970))
            WHERE kind = \(kind) AND id = \(id) RETURNING 1
            """, logger: logger)
        for try await _ in rows { return text }
        throw missing
    }

    func userValves(_ kind: String, _ id: String, user: String) async throws -> String {
        let rows = try await history.postgres.query(
            "SELECT valves::text FROM chat.plugin_user_valves WHERE user_id = \(user) AND kind = \(kind) AND plugin_id = \(id)",
            logger: logger)
        for try await text in rows.decode(String.self) { return text }
        return "{}"
    }

    /// Stores a user's valves for a plugin that exists (`missing` otherwise).
    func setUserValves(_ kind: String, _ id: String, user: String, _ valves: JSONValue, missing: APIError) async throws
        -> String
    {
        let text = valves.jsonText
        let rows = try await history.postgres.query(
            """
            INSERT INTO chat.plugin_user_valves (user_id, kind, plugin_id, valves)
            SELECT \(user), kind, id, \(text)::json FROM chat.plugins WHERE kind = \(kind) AND id = \(id)
            ON CONFLICT (user_id, kind, plugin_id) DO UPDATE SET valves = EXCLUDED.valves RETURNING 1
            """, logger: logger)
        for try await _ in rows { return text }
        throw missing
    }

    /// A valves body: any JSON object; its null values are dropped, as the original does before validating.
    static func valvesBody(_ request: Request) async throws -> JSONValue {
        .object(try await JSONBody.object(request).filter { $0.value != .null })
    }

    static func needsCode(_ what: String) -> APIError {
        APIError(
            .badRequest,
            "Skiff stores \(what) but does not run their Python code, so this route (which needs the code loaded) is not available."
        )
    }
}

/// `from_id` and `to_id` style required query parameters (422 as FastAPI's when missing).
func requiredQuery(_ request: Request, _ names: String...) throws -> [String] {
    let values = names.map { request.queryValue($0) }
    let missing = zip(names, values).filter { $0.1 == nil }.map {
        ValidationIssue(type: "missing", loc: [.string("query"), .string($0.0)], msg: "Field required", input: .null)
    }
    guard missing.isEmpty else { throw APIError.validation(missing) }
    return values.map { $0! }
}

/// The text rules the original applies to plugin source (none of them runs it).
enum PluginSource {
    /// `replace_imports`: the import paths of old plugins rewritten to the package's, as plain text.
    static func replacingImports(_ content: String) -> String {
        var content = content
        for name in ["utils", "apps", "main", "config"] {
            content = content.replacingOccurrences(of: "from \(name)", with: "from open_webui.\(name)")
        }
        return content
    }

    /// `extract_frontmatter`: `key: value` lines of a leading `"""` block.
    static func frontmatter(_ content: String) -> JSONValue {
        let lines = UnifiedDiff.splitLines(content)
        guard let first = lines.first, first.trimmingCharacters(in: .whitespaces) == "\"\"\"" else { return .object([:]) }
        var result: [String: JSONValue] = [:]
        for line in lines.dropFirst() {
            if line.contains("\"\"\"") { break }
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            guard let colon = trimmed.firstIndex(of: ":") else { continue }
            let key = trimmed[..<colon]
            guard !key.isEmpty, key.allSatisfy({ ($0.isASCII && $0.isLetter) || $0 == "_" }) else { continue }
            let value = trimmed[trimmed.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            result[String(key)] = .string(value)
        }
        return .object(result)
    }

    /// Whether a line declares `class <name>` (at the top level when `topLevel`).
    static func declares(_ name: String, in content: String, topLevel: Bool) -> Bool {
        UnifiedDiff.splitLines(content).contains { line in
            let body = topLevel ? Substring(line) : line.drop { $0 == " " || $0 == "\t" }
            if !topLevel && body.count == line.count { return false }
            guard body.hasPrefix("class " + name) else { return false }
            let rest = body.dropFirst(6 + name.count)
            return rest.first.map { $0 == ":" || $0 == "(" || $0 == " " } ?? false
        }
    }

    /// A function's type from the first class it declares of Pipe, Filter, Action, Event.
    static func functionType(_ content: String) -> String? {
        for name in ["Pipe", "Filter", "Action", "Event"] where declares(name, in: content, topLevel: true) {
            return name.lowercased()
        }
        return nil
    }

    /// Python's `str.isidentifier()`: a letter or `_`, then letters, digits or `_`.
    static func isIdentifier(_ id: String) -> Bool {
        guard let first = id.first, first.isLetter || first == "_" else { return false }
        return id.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" }
    }

    /// A meta object with its declared keys first (in order) and the rest after them, as a value and as text.
    static func meta(_ declared: [(String, JSONValue)], extras: [String: JSONValue]) -> (value: JSONValue, text: String) {
        let names = Set(declared.map(\.0))
        let pairs = declared + extras.filter { !names.contains($0.key) }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        return (.object(Dictionary(pairs, uniquingKeysWith: { $1 })), OrderedJSON.object(pairs))
    }
}
