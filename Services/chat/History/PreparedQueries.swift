// The hottest reads and writes as prepared statements: Postgres plans them once per connection instead of
// once per request, which is most of what a small query costs it.
import Foundation
import NIOCore
import PostgresNIO
import Shared

/// A page of the user's chat list, newest first (`GET /api/v1/chats/`), from the stored list entries.
struct ChatListPage: PostgresPreparedStatement {
    static let sql = """
        SELECT '[' || array_to_string(ARRAY(SELECT c.item FROM chat.chats c
            WHERE c.user_id = $1 AND NOT c.archived AND NOT c.internal AND ($2 OR NOT c.pinned) AND ($3 OR c.folder_id IS NULL)
            ORDER BY c.updated_at DESC, c.id LIMIT $4 OFFSET $5), ',') || ']'
        """
    typealias Row = ByteBuffer

    var userID: String
    var includePinned: Bool
    var includeFolders: Bool
    var limit: Int?
    var offset: Int

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 5)
        bindings.append(userID)
        bindings.append(includePinned)
        bindings.append(includeFolders)
        bindings.append(limit)
        bindings.append(offset)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> ByteBuffer { try row.decode(ByteBuffer.self) }
}

/// One chat of its owner as `ChatResponse`, with `share_mode` as `GET /api/v1/chats/{id}` shows it.
struct OwnChat: PostgresPreparedStatement {
    static let sql = """
        SELECT \(ChatStore.chatJSON(shareMode: true))::text FROM chat.chats c WHERE c.id = $1 AND c.user_id = $2
        """
    typealias Row = ByteBuffer

    var id: String
    var userID: String

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 2)
        bindings.append(id)
        bindings.append(userID)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> ByteBuffer { try row.decode(ByteBuffer.self) }
}

/// Inserts a chat and its `chat.created` event in one statement (one round trip, atomic on its own).
struct InsertChatWithEvent: PostgresPreparedStatement {
    static let sql = """
        WITH c AS (
            INSERT INTO chat.chats (id, user_id, title, chat, created_at, updated_at, archived, pinned, meta,
                variables, folder_id, current_message_id, last_read_at)
            VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9::jsonb, $10::jsonb, $11, $12, $13) RETURNING *
        ), event AS (
            INSERT INTO chat.outbox (stream, payload) VALUES ($14, $15::jsonb)
        ) SELECT \(ChatStore.chatJSON())::text FROM c
        """
    typealias Row = String

    var row: ChatRow
    var lastReadAt: Int
    var stream: String
    var event: String

    func makeBindings() throws -> PostgresBindings {
        var bindings = ChatStore.insertBindings(row, lastReadAt: lastReadAt)
        bindings.append(stream)
        bindings.append(event)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> String { try row.decode(String.self) }
}

extension ChatStore {
    static func insertBindings(_ row: ChatRow, lastReadAt: Int) -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 15)
        bindings.append(row.id)
        bindings.append(row.userID)
        bindings.append(row.title)
        bindings.append(JSONValue.object(row.chat).jsonText)
        bindings.append(row.createdAt)
        bindings.append(row.updatedAt)
        bindings.append(row.archived)
        bindings.append(row.pinned)
        bindings.append(JSONValue.object(row.meta).jsonText)
        bindings.append((row.variables ?? .object([:])).jsonText)
        bindings.append(row.folderID)
        bindings.append(row.currentMessageID)
        bindings.append(lastReadAt)
        return bindings
    }
}
