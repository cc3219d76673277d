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
    /// `skip` names a Socket.IO sid that does not get it (the sender of a typing event, say).
    @discardableResult
    public func emit(_ event: String, _ data: JSONValue, to target: Target, skip: String? = nil) async -> Bool {
        var message: [String: JSONValue] = ["to": target.json, "event": .string(event), "data": data]
        if let skip { message["skip"] = .string(skip) }
        let text = JSONValue.object(message).jsonText
        do {
            _ = try await redis.send(["PUBLISH", Self.channel, text])
            return true
        } catch {
            logger.warning("realtime publish failed", metadata: ["event": "\(event)", "error": "\(error)"])
            return false
        }
    }

    /// The same with `data` already encoded as JSON text (which keeps its key order).
    @discardableResult
    public func emit(raw event: String, _ data: String, to target: Target) async -> Bool {
        let text = "{\"to\":" + target.json.jsonText + ",\"event\":" + JSONValue.string(event).jsonText + ",\"data\":" + data + "}"
        do {
            _ = try await redis.send(["PUBLISH", Self.channel, text])
            return true
        } catch {
            logger.warning("realtime publish failed", metadata: ["event": "\(event)", "error": "\(error)"])
            return false
        }
    }

    /// Every socket leaves `room` (a deleted note's rooms, say).
    public func closeRoom(_ room: String) async {
        await control(["control": .string("close"), "room": .string(room)])
    }

    /// Each socket in `room` stays only if its user still gets 200 from `GET access` on the chat service (a
    /// note whose grants changed, say).
    public func recheckRoom(_ room: String, access: String) async {
        await control(["control": .string("recheck"), "room": .string(room), "access": .string(access)])
    }

    /// Marks room control messages on the channel (emits are plain JSON objects).
    public static let controlPrefix = "control:"

    private func control(_ message: [String: JSONValue]) async {
        do {
            _ = try await redis.send(["PUBLISH", Self.channel, Self.controlPrefix + JSONValue.object(message).jsonText])
        } catch {
            logger.warning("realtime publish failed", metadata: ["control": "\(message["control"] ?? .null)"])
        }
    }
}

/// The realtime replicas gateways can reach: a Redis hash from replica tag (the first four characters of the
/// Engine.IO session ids it hands out) to `<url>|<expiry epoch seconds>`, refreshed by each live replica.
public enum RealtimeReplicas {
    public static let key = "skiff:rt:replicas"
    /// Seconds an entry stays valid without a refresh.
    public static let lifetime = 15

    public static func entry(url: String, now: Int = Int(Date().timeIntervalSince1970)) -> String {
        "\(url)|\(now + lifetime)"
    }

    /// The URL of an entry that has not expired, nil otherwise.
    public static func url(fromEntry entry: String, now: Int = Int(Date().timeIntervalSince1970)) -> String? {
        guard let bar = entry.lastIndex(of: "|"), let expiry = Int(entry[entry.index(after: bar)...]), expiry >= now
        else { return nil }
        return String(entry[..<bar])
    }
}

/// Redis keys of what `/api/usage` reports: models in use and users lately active.
public enum UsageKeys {
    /// A sorted set of model ids scored by when a socket last said (`usage`) it is using the model.
    public static let models = "skiff:rt:usage:models"
    /// Seconds a model counts as in use after the last `usage` event.
    public static let modelWindow = 3
    /// A sorted set of user ids scored by when a gateway last saw their request.
    public static let users = "skiff:active_users"
    /// Seconds a user counts as active after their last request.
    public static let userWindow = 180
}
