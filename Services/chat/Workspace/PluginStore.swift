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
    var logger: Logger { history.logger }

    static let failedText = "Something went wrong :/"
    static let versionNotFound = APIError(.notFound, "Version not found")

    /// The stored fields handlers decide on.
    struct Row: Sendable {
        var owner: String
        var name: String
        var content: String?
        var meta: JSONValue?
        var versionID: String?
        var isActive: Bool
        var description: String?
        var data: JSONValue?
    }

    func row(_ kind: String, _ id: String, on connection: PostgresConnection, lock: Bool = false) async throws -> Row? {
        let rows = try await connection.query(
            """
            SELECT user_id, name, content, meta::text, version_id, is_active, description, data::text
            FROM chat.plugins WHERE kind = \(kind) AND id = \(id)\(unescaped: lock ? " FOR UPDATE" : "")
            """, logger: logger)
        for try await (owner, name, content, meta, version, active, description, data) in rows.decode(
            (String, String, String?, String?, String?, Bool, String?, String?).self)
        {
            return Row(
                owner: owner, name: name, content: content, meta: meta.flatMap(JSONValue.parse), versionID: version,
                isActive: active, description: description, data: data.flatMap(JSONValue.parse))
        }
        return nil
    }

    /// The JSON text (built by `json`, SQL over alias `t`) of one row.
    func json(_ kind: String, _ id: String, _ json: String, on connection: PostgresConnection) async throws -> String {
        var sql = SQLBuilder("SELECT " + json + "::text FROM chat.plugins t WHERE t.kind = ")
        sql.bind(kind)
        sql.append(" AND t.id = ")
        sql.bind(id)
        for try await text in try await connection.query(sql.query, logger: logger).decode(String.self) { return text }
        throw APIError.notFound
    }

    func exists(_ kind: String, _ id: String, on connection: PostgresConnection) async throws -> Bool {
        let rows = try await connection.query(
            "SELECT 1 FROM chat.plugins WHERE kind = \(kind) AND id = \(id)", logger: logger)
        for try await _ in rows { return true }
        return false
    }

    /// Rows of a list query (`SELECT <json>, t.user_id ...`), each with `extra` (pre-encoded JSON pairs) built
    /// from its owner's `UserResponse`.
    func list(
        _ sql: SQLBuilder, caller: Identity, auth: AuthLookup, extra: (String?) -> [(String, String)]
    ) async throws -> String {
        var rows: [(String, String)] = []
        for try await row in try await history.postgres.query(sql.query, logger: logger).decode((String, String).self) {
            rows.append(row)
        }
        let owners = try await OwnerLookup(auth: auth).owners(Set(rows.map(\.1)), caller: caller)
        return OrderedJSON.array(rows.map { OrderedJSON.appending($0.0, raw: extra(owners[$0.1])) })
    }

    // MARK: History

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

    /// History items (newest first, 20 a page from page 1): `{id, <kind>_id, parent_id, user_id, commit_message,
    /// created_at, user: {name}}`, with the snapshot last when `snapshot`.
    static func entryJSON(_ kind: String, snapshot: Bool) -> String {
        """
        json_build_object('id', h.id, '\(kind)_id', h.plugin_id, 'parent_id', h.parent_id, 'user_id', h.user_id,
            'commit_message', h.commit_message, 'created_at', h.created_at\(snapshot ? ", 'snapshot', h.snapshot" : ""))::text
        """
    }

    func historyPage(_ kind: String, _ id: String, page: Int, caller: Identity, auth: AuthLookup) async throws -> String {
        let (offset, overflow) = (max(1, page) - 1).multipliedReportingOverflow(by: 20)
        guard !overflow else { throw APIError(.badRequest, Self.failedText) }
        var sql = SQLBuilder("SELECT " + Self.entryJSON(kind, snapshot: false) + ", h.user_id FROM chat.plugin_history h WHERE h.kind = ")
        sql.bind(kind)
        sql.append(" AND h.plugin_id = ")
        sql.bind(id)
        sql.append(" ORDER BY h.created_at DESC, h.seq DESC LIMIT 20 OFFSET \(offset)")
        return try await list(sql, caller: caller, auth: auth) { owner in
            [("user", owner.flatMap { JSONValue.parse($0)?["name"] }.map { OrderedJSON.object(["name": $0]) } ?? "null")]
        }
    }

    /// One entry as JSON with `user` then `snapshot` (tools and functions), and its snapshot.
    func entry(_ kind: String, _ id: String, _ entry: String, caller: Identity, auth: AuthLookup) async throws
        -> (json: String, snapshot: JSONValue)
    {
        let rows = try await history.postgres.query(
            """
            SELECT \(unescaped: Self.entryJSON(kind, snapshot: false)), h.user_id, h.snapshot::text FROM chat.plugin_history h
            WHERE h.kind = \(kind) AND h.plugin_id = \(id) AND h.id = \(entry)
            """, logger: logger)
        for try await (json, author, snapshot) in rows.decode((String, String, String).self) {
            let owner = try await OwnerLookup(auth: auth).owners([author], caller: caller)[author]
            let user = owner.flatMap { JSONValue.parse($0)?["name"] }.map { OrderedJSON.object(["name": $0]) } ?? "null"
            return (OrderedJSON.appending(json, raw: [("user", user), ("snapshot", snapshot)]), JSONValue.parse(snapshot) ?? .null)
        }
        throw Self.versionNotFound
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

    /// The original's `tool_diff`: changed `name`/`meta`, and the unified diff of the code as one string.
    static func diff(from: String, to: String, _ before: JSONValue, _ after: JSONValue) -> String {
        var metadata: [(String, String)] = []
        for key in ["name", "meta"] where before[key] != after[key] {
            metadata.append((key, OrderedJSON.object([("before", before[key] ?? .null), ("after", after[key] ?? .null)])))
        }
        let old = before["content"]?.stringValue ?? ""
        let new = after["content"]?.stringValue ?? ""
        let patch = UnifiedDiff.lines(old, new, fromFile: "selected.py", toFile: "production.py").joined(separator: "\n")
        return OrderedJSON.appending(
            OrderedJSON.object([("from_id", .string(from)), ("to_id", .string(to))]),
            raw: [
                ("metadata", OrderedJSON.appending("{}", raw: metadata)), ("content_diff", JSONValue.string(patch).jsonText),
                ("line_endings_only", "\(old != new && patch.isEmpty)"),
            ])
    }

    func deleteRows(_ kind: String, ids: [String], on connection: PostgresConnection) async throws {
        try await connection.query(
            "DELETE FROM chat.plugin_history WHERE kind = \(kind) AND plugin_id = ANY(\(ids))", logger: logger)
        try await connection.query(
            "DELETE FROM chat.access_grants WHERE resource_type = \(kind) AND resource_id = ANY(\(ids))", logger: logger)
        try await connection.query("DELETE FROM chat.plugins WHERE kind = \(kind) AND id = ANY(\(ids))", logger: logger)
    }

    /// A deleted user's tools, functions and skills, with their history, grants and the user's valves.
    static func deleteUserData(_ userID: String, on connection: PostgresConnection, logger: Logger) async throws {
        try await connection.query(
            """
            DELETE FROM chat.plugin_history h USING chat.plugins p
            WHERE p.user_id = \(userID) AND h.kind = p.kind AND h.plugin_id = p.id
            """, logger: logger)
        try await connection.query(
            """
            DELETE FROM chat.access_grants g USING chat.plugins p
            WHERE p.user_id = \(userID) AND g.resource_type = p.kind AND g.resource_id = p.id
            """, logger: logger)
        try await connection.query("DELETE FROM chat.plugins WHERE user_id = \(userID)", logger: logger)
        try await connection.query("DELETE FROM chat.plugin_user_valves WHERE user_id = \(userID)", logger: logger)
    }

    // MARK: Valves

    func valves(_ kind: String, _ id: String) async throws -> String {
        let rows = try await history.postgres.query(
            "SELECT coalesce(valves, '{}')::text FROM chat.plugins WHERE kind = \(kind) AND id = \(id)", logger: logger)
        for try await text in rows.decode(String.self) { return JSONValue.parse(text)?.objectValue == nil ? "{}" : text }
        return "{}"
    }

    func setValves(_ kind: String, _ id: String, _ valves: JSONValue) async throws -> String {
        let text = valves.jsonText
        try await history.postgres.query(
            """
            UPDATE chat.plugins SET valves = \(text)::json, updated_at = \(Int(Date().timeIntervalSince1970))
            WHERE kind = \(kind) AND id = \(id)
            """, logger: logger)
        return text
    }

    func userValves(_ kind: String, _ id: String, user: String) async throws -> String {
        let rows = try await history.postgres.query(
            "SELECT valves::text FROM chat.plugin_user_valves WHERE user_id = \(user) AND kind = \(kind) AND plugin_id = \(id)",
            logger: logger)
        for try await text in rows.decode(String.self) { return text }
        return "{}"
    }

    func setUserValves(_ kind: String, _ id: String, user: String, _ valves: JSONValue) async throws -> String {
        let text = valves.jsonText
        try await history.postgres.query(
            """
            INSERT INTO chat.plugin_user_valves (user_id, kind, plugin_id, valves) VALUES (\(user), \(kind), \(id), \(text)::json)
            ON CONFLICT (user_id, kind, plugin_id) DO UPDATE SET valves = EXCLUDED.valves
            """, logger: logger)
        return text
    }

    /// A valves body: any JSON object; its null values are dropped, as the original does before validating.
    static func valvesBody(_ data: Data) throws -> JSONValue {
        guard case .object(let object)? = try? JSONDecoder().decode(JSONValue.self, from: data) else {
            throw APIError.validation([
                ValidationIssue(
                    type: "dict_type", loc: [.string("body")], msg: "Input should be a valid dictionary",
                    input: JSONValue.parse(String(decoding: data, as: UTF8.self)) ?? .null)
            ])
        }
        return .object(object.filter { $0.value != .null })
    }

    static func needsCode(_ what: String) -> APIError {
        APIError(
            .notImplemented,
            "Skiff stores \(what) but does not run their Python code, so this route (which needs the code loaded) is not available."
        )
    }
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
    static func frontmatter(_ content: String) -> [(String, JSONValue)] {
        let lines = UnifiedDiff.splitLines(content)
        guard let first = lines.first, first.trimmingCharacters(in: .whitespaces) == "\"\"\"" else { return [] }
        var result: [(String, JSONValue)] = []
        for line in lines.dropFirst() {
            if line.contains("\"\"\"") { break }
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            guard let colon = trimmed.firstIndex(of: ":") else { continue }
            let key = trimmed[..<colon]
            guard !key.isEmpty, key.allSatisfy({ ($0.isASCII && $0.isLetter) || $0 == "_" }) else { continue }
            let value = trimmed[trimmed.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            result.removeAll { $0.0 == String(key) }
            result.append((String(key), .string(value)))
        }
        return result
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

    /// An object with its declared keys first (in order) and the rest after them.
    static func ordered(_ declared: [(String, JSONValue)], extras: [String: JSONValue]) -> String {
        let names = Set(declared.map(\.0))
        return OrderedJSON.object(declared + extras.filter { !names.contains($0.key) }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
    }
}
