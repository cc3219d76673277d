// Messages for connected sockets: any service publishes `{to, event, data}` on one pub/sub channel and
// every realtime replica delivers it to the sockets it holds.
import Foundation
import Logging

/// Publishes Socket.IO emits for the realtime service to deliver.
public struct RealtimeBus: Sendable {
    /// The pub/sub channel every realtime replica subscribes to.
    public static let channel = "skiff:realtime"

    /// Who receives a message: every socket of a user, a room (`chat:<id>`, `note:<id>`, ...), or one socket.
    public enum Target: Sendable {
        case user(String)
        case room(String)
        case session(String)

        var json: JSONValue {
            switch self {
            case .user(let id): return .object(["user": .string(id)])
            case .room(let name): return .object(["room": .string(name)])
            case .session(let id): return .object(["session": .string(id)])
            }
        }
    }

    let redis: RedisClient
    let logger: Logger

    public init(redis: RedisClient, logger: Logger) {
        self.redis = redis
        self.logger = logger
    }

    /// Publishes one emit; returns whether Redis took it (delivery to sockets is best effort, as in the original).
    @discardableResult
    public func emit(_ event: String, _ data: JSONValue, to target: Target) async -> Bool {
        let message: JSONValue = .object(["to": target.json, "event": .string(event), "data": data])
        do {
            _ = try await redis.send(["PUBLISH", Self.channel, message.jsonText])
            return true
        } catch {
            logger.warning("realtime publish failed", metadata: ["event": "\(event)", "error": "\(error)"])
            return false
        }
    }
}
