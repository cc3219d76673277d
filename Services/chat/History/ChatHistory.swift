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

    func body(_ request: Request) async throws -> Data {
        Data(buffer: try await JSONBody.collect(request, limit: Self.bodyLimit))
    }

    func publish(_ type: String, actor: String?, data: [String: JSONValue], on connection: PostgresConnection) async throws {
        try await outbox.enqueue(Event(type: type, actorID: actor, data: .object(data)), on: connection, logger: logger)
    }

    static func now() -> Int { Int(Date().timeIntervalSince1970) }
}
