// The event envelope that crosses services on Redis streams.
import Foundation

/// `{id, type, occurred_at, actor_id, data}` as DESIGN.md fixes it.
public struct Event: Codable, Sendable, Equatable {
    public var id: String
    public var type: String
    public var occurredAt: Int
    public var actorID: String?
    public var data: JSONValue

    enum CodingKeys: String, CodingKey {
        case id, type, data
        case occurredAt = "occurred_at"
        case actorID = "actor_id"
    }

    public init(type: String, actorID: String?, data: JSONValue) {
        self.id = UUID().uuidString.lowercased()
        self.type = type
        self.occurredAt = Int(Date().timeIntervalSince1970)
        self.actorID = actorID
        self.data = data
    }
}

/// Stream names, one per producing service.
public enum EventStream {
    public static func name(_ service: String) -> String { "skiff:events:\(service)" }
    public static let auth = name("auth")
    public static let chat = name("chat")
    public static let files = name("files")
    public static let retrieval = name("retrieval")
    /// Streams are trimmed to about this many entries.
    public static let maxLength = 100_000
}
