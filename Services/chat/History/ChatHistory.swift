// What the history routes share: stores, the outbox, the realtime bus and request-body reading.
import Foundation
import Hummingbird
import Logging
import PostgresNIO
import Shared

struct ChatHistory: Sendable {
    let postgres: PostgresClient
    let logger: Logger
    let chats: ChatStore
    let folders: FolderStore
    let outbox: Outbox
    let realtime: RealtimeBus

    /// Chats carry whole conversations (pasted documents, inline images): allow far more than other routes.
    static let bodyLimit = 64 << 20

    init(postgres: PostgresClient, redis: RedisClient, logger: Logger) {
        self.postgres = postgres
        self.logger = logger
        self.chats = ChatStore(postgres: postgres, logger: logger)
        self.folders = FolderStore(postgres: postgres, logger: logger)
        self.outbox = Outbox(schema: "chat", stream: EventStream.chat)
        self.realtime = RealtimeBus(redis: redis, logger: logger)
    }

    /// The original's answer to a write it could not make, for reasons it does not name.
    static let failed = APIError(.badRequest, "Something went wrong :/")

    func body(_ request: Request) async throws -> Data {
        Data(buffer: try await JSONBody.collect(request, limit: Self.bodyLimit))
    }

    /// Runs `body` in one transaction on a pooled connection.
    func transaction<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await postgres.withTransaction(logger: logger) { connection in try await body(connection) }
    }

    func publish(_ type: String, actor: String?, data: [String: JSONValue], on connection: PostgresConnection) async throws {
        try await outbox.enqueue(Event(type: type, actorID: actor, data: .object(data)), on: connection, logger: logger)
    }

    /// An event about one chat: its id and owner, and what else the event carries.
    static func chatEvent(_ type: String, chatID: String, ownerID: String, actor: String, extra: [String: JSONValue] = [:])
        -> Event
    {
        var data = extra
        data["chat_id"] = .string(chatID)
        data["user_id"] = .string(ownerID)
        return Event(type: type, actorID: actor, data: .object(data))
    }

    func publishChat(
        _ type: String, chatID: String, ownerID: String, actor: String, extra: [String: JSONValue] = [:],
        on connection: PostgresConnection
    ) async throws {
        let event = Self.chatEvent(type, chatID: chatID, ownerID: ownerID, actor: actor, extra: extra)
        try await outbox.enqueue(event, on: connection, logger: logger)
    }

    /// The same event about each of the owner's chats, written in one statement (deleting every chat of a user
    /// or of a folder would otherwise cost a round trip per chat).
    func publishChats(
        _ type: String, chatIDs: [String], ownerID: String, actor: String, on connection: PostgresConnection
    ) async throws {
        let events = chatIDs.map { Self.chatEvent(type, chatID: $0, ownerID: ownerID, actor: actor) }
        try await outbox.enqueue(events, on: connection, logger: logger)
    }

    /// Inserts a new chat and its `chat.created` event; returns the `ChatResponse` text.
    func create(_ row: ChatRow, actor: String, lastReadAt: Int, on connection: PostgresConnection? = nil) async throws
        -> String
    {
        let event = Self.chatEvent(
            "chat.created", chatID: row.id, ownerID: row.userID, actor: actor, extra: ["title": .string(row.title)])
        return try await chats.insert(row, lastReadAt: lastReadAt, event: event, stream: outbox.stream, on: connection)
    }

    static func now() -> Int { Int(Date().timeIntervalSince1970) }

    /// The offset of `page` (counted from 1) in pages of `size`; a page below 1, or one so far out that its
    /// offset does not fit, is refused as the original's database error is.
    static func offset(page: Int?, size: Int = 60) throws -> Int {
        guard let page else { return 0 }
        let (offset, overflow) = (page &- 1).multipliedReportingOverflow(by: size)
        guard page >= 1, !overflow else { throw failed }
        return offset
    }
}
