// Owns the SQL of chats, their tags and shares. Response bodies for reads are built by Postgres as JSON
// text, so a list or a chat goes from the database to the client without being decoded on the way.
import Foundation
import Logging
import PostgresNIO
import Shared

/// A chat row as the write paths need it.
struct ChatRow: Sendable {
    var id: String
    var userID: String
    var title: String
    var chat: [String: JSONValue]
    var meta: [String: JSONValue]
    var variables: JSONValue?
    var folderID: String?
    var pinned: Bool
    var archived: Bool
    var shareID: String?
    var currentMessageID: String?
    var createdAt: Int
    var updatedAt: Int
    var lastReadAt: Int? = nil
    /// Whether `chat` holds the stored document; routes that only change flags lock the row without it, and
    /// `save` then leaves the document as it is.
    var hasDocument = true

    var tags: [String] {
        guard case .array(let items)? = meta["tags"] else { return [] }
        return items.compactMap(\.stringValue)
    }
}

/// How a list is ordered.
struct ChatOrder: Sendable, Equatable {
    var column: String
    var ascending: Bool

    static let recent = ChatOrder(column: "updated_at", ascending: false)

    /// `sort_by`/`sort_dir` of the chat lists: `title`, `updated_at` (any other value), or `unread_updated_at`
    /// (newest first; Skiff has no unfinished answers to rank first).
    static func list(sortBy: String?, sortDir: String?, defaultSort: String) -> ChatOrder {
        let ascending = sortDir == "asc"
        switch sortBy ?? defaultSort {
        case "title": return ChatOrder(column: "title", ascending: ascending)
        case "unread_updated_at": return .recent
        default: return ChatOrder(column: "updated_at", ascending: ascending)
        }
    }

    var sql: String { "c.\(column) \(ascending ? "ASC" : "DESC"), c.id" }

    /// `order_by`/`direction` of the archived and admin lists; unknown values are refused (the original fails
    /// with a 500).
    static func parse(orderBy: String?, direction: String?) throws -> ChatOrder? {
        guard let orderBy, let direction else { return nil }
        let columns = ["id", "user_id", "title", "created_at", "updated_at", "share_id", "archived", "pinned", "folder_id"]
        guard columns.contains(orderBy) else { throw APIError(.badRequest, "Invalid order_by field") }
        switch direction.lowercased() {
        case "asc": return ChatOrder(column: orderBy, ascending: true)
        case "desc": return ChatOrder(column: orderBy, ascending: false)
        default: throw APIError(.badRequest, "Invalid direction for ordering")
        }
    }
}

struct ChatStore: Sendable {
    let postgres: PostgresClient
    let logger: Logger

    /// `ChatResponse`, field for field.
    static func chatJSON(shareMode: Bool = false) -> String {
        let chat = shareMode ? "c.chat || '{\"share_mode\": \"continue\"}'::jsonb" : "c.chat"
        return """
            json_build_object('id', c.id, 'user_id', c.user_id, 'title', c.title, 'chat', \(chat),
                'updated_at', c.updated_at, 'created_at', c.created_at, 'share_id', c.share_id, 'archived', c.archived,
                'pinned', c.pinned, 'meta', c.meta, 'variables', coalesce(c.variables, '{}'::jsonb),
                'folder_id', c.folder_id, 'tasks', c.tasks, 'summary', c.summary,
                'current_message_id', c.current_message_id, 'context_usage', NULL)
            """
    }

    /// `ChatTitleIdResponse` as the trigger of `003_list_items.sql` keeps it in `item`. Like the original, the
    /// lists report `archived: false` (only search reads the column).
    static let titleJSON = "c.item::json"

    /// The archived list's entries: as `titleJSON`, but, as in the original, without `last_read_at`.
    static let archivedTitleJSON = """
        json_build_object('id', c.id, 'title', c.title, 'updated_at', c.updated_at, 'created_at', c.created_at,
            'last_read_at', NULL, 'snippet', NULL, 'active', false, 'archived', false)
        """

    static let tagJSON = "json_build_object('id', t.id, 'name', t.name, 'user_id', t.user_id, 'meta', t.meta)"

    // MARK: Reads

    /// One chat of the user as `ChatResponse` text, as `GET /api/v1/chats/{id}` shows it.
    func ownJSON(id: String, userID: String) async throws -> ByteBuffer? {
        for try await text in try await postgres.execute(OwnChat(id: id, userID: userID), logger: logger) { return text }
        return nil
    }

    /// A page of the chat list, newest first.
    func page(userID: String, includePinned: Bool, includeFolders: Bool, limit: Int?, offset: Int) async throws -> ByteBuffer {
        let statement = ChatListPage(
            userID: userID, includePinned: includePinned, includeFolders: includeFolders, limit: limit, offset: offset)
        for try await text in try await postgres.execute(statement, logger: logger) { return text }
        return ByteBuffer(string: "[]")
    }

    func json(id: String, on connection: PostgresConnection) async throws -> String? {
        let rows = try await connection.query(
            "SELECT \(unescaped: Self.chatJSON())::text FROM chat.chats c WHERE c.id = \(id)", logger: logger)
        for try await text in rows.decode(String.self) { return text }
        return nil
    }

    /// A JSON array built from the rows a filtered query selects.
    func array(_ builder: SQLBuilder) async throws -> String {
        let rows = try await postgres.query(builder.query, logger: logger)
        for try await text in rows.decode(String?.self) { return text ?? "[]" }
        return "[]"
    }

    /// A list of the user's chats: `where` is SQL over `c` (with its binds already in `builder`). The page is
    /// chosen on ids and sort keys alone; only its rows are then turned into JSON.
    static func list(
        item: String, where build: (inout SQLBuilder) -> Void, order: ChatOrder?, limit: Int? = nil, offset: Int = 0
    ) -> SQLBuilder {
        var sql = SQLBuilder("SELECT coalesce(json_agg(\(item) ORDER BY page.n), '[]')::text FROM (SELECT c.id, ")
        sql.append("row_number() OVER (\(order.map { "ORDER BY \($0.sql)" } ?? "")) AS n FROM chat.chats c WHERE NOT c.internal AND ")
        build(&sql)
        if let order { sql.append(" ORDER BY \(order.sql)") }
        if let limit { sql.append(" LIMIT \(limit)") }
        if offset > 0 { sql.append(" OFFSET \(offset)") }
        sql.append(") page JOIN chat.chats c ON c.id = page.id")
        return sql
    }

    func count(userID: String, archived: Bool) async throws -> Int {
        let rows = try await postgres.query(
            "SELECT count(*)::bigint FROM chat.chats WHERE user_id = \(userID) AND archived = \(archived) AND NOT internal", logger: logger)
        for try await count in rows.decode(Int.self) { return count }
        return 0
    }

    /// Every chat of the user (archived too), one `ChatResponse` per line, newest first.
    func ndjson(userID: String) async throws -> String {
        let rows = try await postgres.query(
            """
            SELECT coalesce(string_agg(\(unescaped: Self.chatJSON())::text, E'\\n' ORDER BY c.updated_at DESC, c.id) || E'\\n', '')
            FROM chat.chats c WHERE c.user_id = \(userID) AND NOT c.internal
            """, logger: logger)
        for try await text in rows.decode(String.self) { return text }
        return ""
    }

    /// The user's chat a write path works on, locked until the transaction ends (nil for another user's chat,
    /// which is neither locked nor read).
    func lock(id: String, userID: String, document: Bool, on connection: PostgresConnection) async throws -> ChatRow? {
        let rows = try await connection.query(
            """
            SELECT c.id, c.user_id, c.title, CASE WHEN \(document) THEN c.chat::text END, c.meta::text, c.variables::text,
                c.folder_id, c.pinned, c.archived, c.share_id, c.current_message_id, c.created_at, c.updated_at,
                c.last_read_at
            FROM chat.chats c WHERE c.id = \(id) AND c.user_id = \(userID) FOR UPDATE
            """, logger: logger)
        for try await row in rows {
            let (id, user, title, chat, meta, variables, folder, pinned, archived, share, current, created, updated, read) =
                try row.decode(
                    (String, String, String, String?, String, String?, String?, Bool, Bool, String?, String?, Int, Int, Int?)
                        .self)
            return ChatRow(
                id: id, userID: user, title: title, chat: chat.flatMap(JSONValue.parse)?.objectValue ?? [:],
                meta: JSONValue.parse(meta)?.objectValue ?? [:], variables: variables.flatMap(JSONValue.parse),
                folderID: folder, pinned: pinned, archived: archived, shareID: share, currentMessageID: current,
                createdAt: created, updatedAt: updated, lastReadAt: read, hasDocument: document)
        }
        return nil
    }

    /// Whether the user's chat is pinned; nil when it is not theirs.
    func pinned(id: String, userID: String) async throws -> Bool? {
        let rows = try await postgres.query(
            "SELECT pinned FROM chat.chats WHERE id = \(id) AND user_id = \(userID)", logger: logger)
        for try await pinned in rows.decode(Bool.self) { return pinned }
        return nil
    }

    /// The tag rows of the user's chat, in the chat's order; nil when the chat is not theirs.
    func chatTagsJSON(id: String, userID: String) async throws -> String? {
        let rows = try await postgres.query(
            """
            SELECT (SELECT coalesce(json_agg(\(unescaped: Self.tagJSON) ORDER BY e.n), '[]')
                FROM jsonb_array_elements_text(CASE WHEN jsonb_typeof(c.meta -> 'tags') = 'array' THEN c.meta -> 'tags'
                    ELSE '[]'::jsonb END) WITH ORDINALITY e(tag, n)
                JOIN chat.tags t ON t.id = e.tag AND t.user_id = c.user_id)::text
            FROM chat.chats c WHERE c.id = \(id) AND c.user_id = \(userID)
            """, logger: logger)
        for try await text in rows.decode(String.self) { return text }
        return nil
    }

    /// A stored settings object of the service (`{}` when none was saved).
    func settings(_ key: String) async throws -> [String: JSONValue] {
        let rows = try await postgres.query("SELECT value::text FROM chat.settings WHERE key = \(key)", logger: logger)
        for try await text in rows.decode(String.self) { return JSONValue.parse(text)?.objectValue ?? [:] }
        return [:]
    }

    func saveSettings(_ key: String, _ value: [String: JSONValue]) async throws {
        try await postgres.query(
            """
            INSERT INTO chat.settings (key, value) VALUES (\(key), \(JSONValue.object(value).jsonText)::jsonb)
            ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
            """, logger: logger)
    }

    /// The chat's owner, without locking.
    func owner(of id: String) async throws -> String? {
        let rows = try await postgres.query("SELECT user_id FROM chat.chats WHERE id = \(id)", logger: logger)
        for try await owner in rows.decode(String.self) { return owner }
        return nil
    }

    // MARK: Writes

    /// Inserts a chat together with its event, in one statement; returns the `ChatResponse` text. Outside a
    /// transaction when `connection` is nil (the statement is atomic on its own).
    func insert(_ row: ChatRow, lastReadAt: Int, event: Event, stream: String, on connection: PostgresConnection? = nil)
        async throws -> String
    {
        let statement = InsertChatWithEvent(
            row: row, lastReadAt: lastReadAt, stream: stream, event: try Outbox.payload(event))
        let rows =
            if let connection {
                try await connection.execute(statement, logger: logger)
            } else {
                try await postgres.execute(statement, logger: logger)
            }
        for try await text in rows { return text }
        throw ChatHistory.failed
    }

    /// Writes back a locked row's document, meta and flags; returns the `ChatResponse` text when `answering`
    /// (else an empty text: the whole document need not come back).
    @discardableResult
    func save(_ row: ChatRow, answering: Bool = true, on connection: PostgresConnection) async throws -> String {
        let rows = try await connection.query(
            """
            UPDATE chat.chats AS c SET title = \(row.title),
                chat = coalesce(\(row.hasDocument ? JSONValue.object(row.chat).jsonText : nil)::jsonb, c.chat),
                meta = \(JSONValue.object(row.meta).jsonText)::jsonb, variables = \(row.variables?.jsonText)::jsonb,
                folder_id = \(row.folderID), pinned = \(row.pinned), archived = \(row.archived), share_id = \(row.shareID),
                current_message_id = \(row.currentMessageID), updated_at = \(row.updatedAt), last_read_at = \(row.lastReadAt)
            WHERE c.id = \(row.id) RETURNING \(unescaped: answering ? Self.chatJSON() + "::text" : "''::text")
            """, logger: logger)
        for try await text in rows.decode(String.self) { return text }
        throw APIError.accessProhibited
    }

    /// Deletes chats of the user (shares and grants go with them): those with the ids given, those in the
    /// folders given, or all when neither is; returns the ids deleted.
    func delete(
        userID: String, ids: [String]? = nil, inFolders folderIDs: [String]? = nil, on connection: PostgresConnection
    ) async throws -> [String] {
        let rows = try await connection.query(
            """
            DELETE FROM chat.chats WHERE user_id = \(userID) AND (\(ids)::text[] IS NULL OR id = ANY(\(ids)))
            AND (\(folderIDs)::text[] IS NULL OR folder_id = ANY(\(folderIDs))) RETURNING id
            """, logger: logger)
        var deleted: [String] = []
        for try await id in rows.decode(String.self) { deleted.append(id) }
        return deleted
    }

    func clearFolders(_ folderIDs: [String], userID: String, on connection: PostgresConnection) async throws {
        try await connection.query(
            "UPDATE chat.chats SET folder_id = NULL WHERE user_id = \(userID) AND folder_id = ANY(\(folderIDs))",
            logger: logger)
    }

    /// Archives (and takes out of folders) or unarchives every chat of the user.
    func setArchivedAll(_ archived: Bool, userID: String, on connection: PostgresConnection) async throws {
        if archived {
            try await connection.query(
                "UPDATE chat.chats SET archived = true, folder_id = NULL WHERE user_id = \(userID)", logger: logger)
        } else {
            try await connection.query(
                "UPDATE chat.chats SET archived = false WHERE user_id = \(userID) AND archived", logger: logger)
        }
    }

    /// Marks chats read (`last_read_at = updated_at`): all of the user's, or those in the folders given.
    func markRead(folderIDs: [String]?, userID: String, on connection: PostgresConnection) async throws -> Int {
        let rows: PostgresRowSequence
        if let folderIDs {
            rows = try await connection.query(
                """
                UPDATE chat.chats SET last_read_at = updated_at WHERE user_id = \(userID) AND NOT archived
                AND folder_id = ANY(\(folderIDs)) RETURNING 1
                """, logger: logger)
        } else {
            rows = try await connection.query(
                "UPDATE chat.chats SET last_read_at = updated_at WHERE user_id = \(userID) AND NOT archived RETURNING 1",
                logger: logger)
        }
        var count = 0
        for try await _ in rows { count += 1 }
        return count
    }

    /// Stamps one of the user's chats read at `now` (the socket's `last_read_at`); nil when the chat is not
    /// theirs, else whether it had changed since it was last read, as the original decides.
    func stampRead(id: String, userID: String, now: Int, on connection: PostgresConnection) async throws -> Bool? {
        let rows = try await connection.query(
            """
            UPDATE chat.chats c SET last_read_at = \(now)
            FROM (SELECT id, last_read_at FROM chat.chats WHERE id = \(id) AND user_id = \(userID) FOR UPDATE) p
            WHERE c.id = p.id RETURNING (p.last_read_at IS NULL OR c.updated_at > p.last_read_at)
            """, logger: logger)
        for try await wasUnread in rows.decode(Bool.self) { return wasUnread }
        return nil
    }

    /// The chats of a folder as `/folders/{id}/shared/chats` lists them, and their total.
    func folderShareList(
        folderID: String, userID: String, ownerName: String, limit: Int, offset: Int
    ) async throws -> (String, Int) {
        let rows = try await postgres.query(
            """
            SELECT coalesce(json_agg(item ORDER BY n), '[]')::text, (SELECT count(*)::bigint FROM chat.chats
                WHERE user_id = \(userID) AND folder_id = \(folderID) AND NOT pinned AND NOT archived AND NOT internal)
            FROM (SELECT json_build_object('id', c.id, 'title', c.title, 'user_id', c.user_id, 'updated_at', c.updated_at,
                    'created_at', c.created_at, 'last_read_at', c.last_read_at, 'owner_name', \(ownerName),
                    'participants', json_build_array(json_build_object('id', c.user_id, 'name', \(ownerName))),
                    'active', false, 'readonly', false) AS item,
                    row_number() OVER (ORDER BY (c.updated_at > coalesce(c.last_read_at, 0)) DESC, c.updated_at DESC, c.id) AS n
                FROM chat.chats c WHERE c.user_id = \(userID) AND c.folder_id = \(folderID) AND NOT c.pinned AND NOT c.archived
                    AND NOT c.internal
                ORDER BY n LIMIT \(limit) OFFSET \(offset)) page
            """, logger: logger)
        for try await (text, total) in rows.decode((String, Int).self) { return (text, total) }
        return ("[]", 0)
    }

    // MARK: Tags

    /// The user's tag rows whose ids are given, as a JSON array.
    func tagsJSON(ids: [String], userID: String, on connection: PostgresConnection) async throws -> String {
        let rows = try await connection.query(
            """
            SELECT coalesce(json_agg(\(unescaped: Self.tagJSON) ORDER BY array_position(\(ids), t.id)), '[]')::text
            FROM chat.tags t WHERE t.user_id = \(userID) AND t.id = ANY(\(ids))
            """, logger: logger)
        for try await text in rows.decode(String.self) { return text }
        return "[]"
    }

    func allTagsJSON(userID: String) async throws -> String {
        let rows = try await postgres.query(
            "SELECT coalesce(json_agg(\(unescaped: Self.tagJSON) ORDER BY t.id), '[]')::text FROM chat.tags t WHERE t.user_id = \(userID)",
            logger: logger)
        for try await text in rows.decode(String.self) { return text }
        return "[]"
    }

    /// Creates tag rows that do not exist yet; an existing row keeps its first spelling.
    func ensureTags(_ tags: [(id: String, name: String)], userID: String, on connection: PostgresConnection) async throws {
        guard !tags.isEmpty else { return }
        try await connection.query(
            """
            INSERT INTO chat.tags (id, name, user_id)
            SELECT t.id, t.name, \(userID) FROM unnest(\(tags.map(\.id))::text[], \(tags.map(\.name))::text[]) AS t(id, name)
            ON CONFLICT (id, user_id) DO NOTHING
            """, logger: logger)
    }

    /// Deletes the user's tag rows among `ids` that no chat of the user carries any more.
    func deleteUnusedTags(ids: [String], userID: String, on connection: PostgresConnection) async throws {
        guard !ids.isEmpty else { return }
        try await connection.query(
            """
            DELETE FROM chat.tags t WHERE t.user_id = \(userID) AND t.id = ANY(\(ids)) AND NOT EXISTS (
                SELECT 1 FROM chat.chats c WHERE c.user_id = \(userID) AND c.meta -> 'tags' ? t.id)
            """, logger: logger)
    }

    func deleteUnusedTags(ids: [String], userID: String) async throws {
        try await postgres.withConnection { try await deleteUnusedTags(ids: ids, userID: userID, on: $0) }
    }

    func deleteAllTags(userID: String, on connection: PostgresConnection) async throws {
        try await connection.query("DELETE FROM chat.tags WHERE user_id = \(userID)", logger: logger)
    }

    // MARK: Shares

    static let sharedItemJSON = """
        json_build_object('id', s.chat_id, 'chat_id', s.chat_id, 'title', s.title, 'share_id', s.id,
            'updated_at', s.updated_at, 'created_at', s.created_at)
        """

    struct Share: Sendable {
        var id: String
        var chatID: String
        var userID: String
        var title: String
        var chat: String
        var createdAt: Int
        var updatedAt: Int
    }

    func share(id: String) async throws -> Share? {
        let rows = try await postgres.query(
            """
            SELECT id, chat_id, user_id, title, chat::text, created_at, updated_at
            FROM chat.shared_chats WHERE id = \(id)
            """, logger: logger)
        for try await (id, chat, user, title, json, created, updated) in rows.decode(
            (String, String, String, String, String, Int, Int).self)
        {
            return Share(id: id, chatID: chat, userID: user, title: title, chat: json, createdAt: created, updatedAt: updated)
        }
        return nil
    }

    /// Creates or refreshes the snapshot of a chat; returns the share id.
    func snapshot(
        _ row: ChatRow, shareMode: JSONValue?, keepMode: Bool, now: Int, on connection: PostgresConnection
    ) async throws -> String {
        var document = row.chat
        if let shareID = row.shareID {
            let rows = try await connection.query(
                "SELECT chat -> 'share_mode' FROM chat.shared_chats WHERE id = \(shareID) FOR UPDATE", logger: logger)
            var existing: JSONValue??
            for try await mode in rows.decode(String?.self) { existing = .some(mode.flatMap(JSONValue.parse)) }
            if let existing {
                document["share_mode"] = keepMode ? (existing ?? .null) : (shareMode ?? .null)
                try await connection.query(
                    """
                    UPDATE chat.shared_chats SET title = \(row.title), chat = \(JSONValue.object(document).jsonText)::jsonb,
                        updated_at = \(now) WHERE id = \(shareID)
                    """, logger: logger)
                return shareID
            }
        }
        document["share_mode"] = shareMode ?? .null
        let shareID = UUID().uuidString.lowercased()
        try await connection.query(
            """
            INSERT INTO chat.shared_chats (id, chat_id, user_id, title, chat, created_at, updated_at)
            VALUES (\(shareID), \(row.id), \(row.userID), \(row.title), \(JSONValue.object(document).jsonText)::jsonb, \(now), \(now))
            ON CONFLICT (chat_id) DO UPDATE SET id = EXCLUDED.id, title = EXCLUDED.title, chat = EXCLUDED.chat,
                updated_at = EXCLUDED.updated_at
            """, logger: logger)
        try await connection.query("UPDATE chat.chats SET share_id = \(shareID) WHERE id = \(row.id)", logger: logger)
        return shareID
    }

    /// Removes a chat's share and its grants.
    func unshare(chatID: String, on connection: PostgresConnection) async throws {
        try await connection.query("DELETE FROM chat.shared_chats WHERE chat_id = \(chatID)", logger: logger)
        try await connection.query("DELETE FROM chat.share_grants WHERE chat_id = \(chatID)", logger: logger)
        try await connection.query("UPDATE chat.chats SET share_id = NULL WHERE id = \(chatID)", logger: logger)
    }

    func unshareAll(userID: String, on connection: PostgresConnection) async throws -> [String] {
        let rows = try await connection.query(
            "DELETE FROM chat.shared_chats WHERE user_id = \(userID) RETURNING chat_id", logger: logger)
        var ids: [String] = []
        for try await id in rows.decode(String.self) { ids.append(id) }
        try await connection.query("DELETE FROM chat.share_grants WHERE chat_id = ANY(\(ids))", logger: logger)
        try await connection.query("UPDATE chat.chats SET share_id = NULL WHERE id = ANY(\(ids))", logger: logger)
        return ids
    }

    typealias Grant = AccessGrant

    func grants(chatID: String) async throws -> [Grant] {
        let rows = try await postgres.query(
            """
            SELECT principal_type, principal_id, permission FROM chat.share_grants WHERE chat_id = \(chatID)
            ORDER BY principal_type, principal_id, permission
            """, logger: logger)
        var result: [Grant] = []
        for try await (type, id, permission) in rows.decode((String, String, String).self) {
            result.append(Grant(principalType: type, principalID: id, permission: permission))
        }
        return result
    }

    /// Replaces the chat's grants with `grants`, all inserted in one statement (the list comes from the client).
    func replaceGrants(_ grants: [Grant], chatID: String, on connection: PostgresConnection) async throws {
        try await connection.query("DELETE FROM chat.share_grants WHERE chat_id = \(chatID)", logger: logger)
        guard !grants.isEmpty else { return }
        try await connection.query(
            """
            INSERT INTO chat.share_grants (chat_id, principal_type, principal_id, permission)
            SELECT \(chatID), g.principal_type, g.principal_id, g.permission
            FROM unnest(\(grants.map(\.principalType))::text[], \(grants.map(\.principalID))::text[],
                \(grants.map(\.permission))::text[]) AS g(principal_type, principal_id, permission)
            ON CONFLICT DO NOTHING
            """, logger: logger)
    }

    // MARK: Users

    /// Removes everything the user kept here; running it twice is harmless.
    func deleteUserData(userID: String) async throws {
        try await postgres.withTransaction(logger: logger) { connection in
            try await connection.query("DELETE FROM chat.shared_chats WHERE user_id = \(userID)", logger: logger)
            try await connection.query("DELETE FROM chat.chats WHERE user_id = \(userID)", logger: logger)
            try await connection.query("DELETE FROM chat.folders WHERE user_id = \(userID)", logger: logger)
            try await connection.query("DELETE FROM chat.tags WHERE user_id = \(userID)", logger: logger)
            // Their notes, who pinned them and the grants on them, and the grants that named the user.
            try await connection.query(
                """
                DELETE FROM chat.access_grants WHERE (principal_type = 'user' AND principal_id = \(userID))
                OR (resource_type = 'note' AND resource_id IN (SELECT id FROM chat.notes WHERE user_id = \(userID)))
                """, logger: logger)
            try await connection.query("DELETE FROM chat.pinned_notes WHERE user_id = \(userID)", logger: logger)
            let prompts = try await connection.query("SELECT id FROM chat.prompts WHERE user_id = \(userID)", logger: logger)
            var promptIDs: [String] = []
            for try await id in prompts.decode(String.self) { promptIDs.append(id) }
            try await PromptsController.deleteRows(ids: promptIDs, on: connection, logger: logger)
            try await PluginStore.deleteUserData(userID, on: connection, logger: logger)
            try await connection.query("DELETE FROM chat.memories WHERE user_id = \(userID)", logger: logger)
            try await connection.query("DELETE FROM chat.notes WHERE user_id = \(userID)", logger: logger)
            try await connection.query(
                "DELETE FROM chat.share_grants WHERE principal_type = 'user' AND principal_id = \(userID)", logger: logger)
        }
    }
}
