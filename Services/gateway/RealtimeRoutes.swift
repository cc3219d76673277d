// Which realtime replica serves a Socket.IO request: the one whose tag starts the Engine.IO session id, or,
// for a new session, the next live replica in turn. Replicas register themselves in Redis.
import Foundation
import NIOConcurrencyHelpers
import Shared

final class RealtimeRoutes: Sendable {
    static let registryKey = "skiff:rt:replicas"

    let redis: RedisClient
    /// `SKIFF_REALTIME_URL`: used while no replica has registered.
    let fallback: String
    private let state = NIOLockedValueBox<(replicas: [String: String], fetched: ContinuousClock.Instant?, turn: Int)>(
        ([:], nil, 0))

    init(redis: RedisClient, fallback: String) {
        self.redis = redis
        self.fallback = fallback
    }

    /// Live replicas (tag → URL), read from Redis at most once a second.
    private func replicas(refresh: Bool = false) async -> [String: String] {
        let cached = state.withLockedValue { state -> [String: String]? in
            guard !refresh, let fetched = state.fetched, ContinuousClock.now - fetched < .seconds(1) else { return nil }
            return state.replicas
        }
        if let cached { return cached }
        var live: [String: String] = [:]
        if let reply = try? await redis.send(["HGETALL", Self.registryKey]), let items = reply.array {
            let now = Int(Date().timeIntervalSince1970)
            var index = 0
            while index + 1 < items.count {
                if let tag = items[index].string, let value = items[index + 1].string,
                    let bar = value.lastIndex(of: "|"), let expiry = Int(value[value.index(after: bar)...]), expiry >= now
                {
                    live[tag] = String(value[..<bar])
                }
                index += 2
            }
        }
        state.withLockedValue {
            $0.replicas = live
            $0.fetched = .now
        }
        return live
    }

    /// The replica holding an Engine.IO session, nil when none does.
    func url(forSession sid: String) async -> String? {
        let tag = String(sid.prefix(4))
        if let url = await replicas()[tag] { return url }
        if let url = await replicas(refresh: true)[tag] { return url }
        return await replicas().isEmpty ? fallback : nil
    }

    /// Candidates for a new session, starting with the next in turn.
    func handshakeURLs() async -> [String] {
        let urls = await replicas().values.sorted()
        guard !urls.isEmpty else { return [fallback] }
        let turn = state.withLockedValue { state -> Int in
            defer { state.turn &+= 1 }
            return state.turn
        }
        let start = turn % urls.count
        return Array(urls[start...] + urls[..<start])
    }

    /// The `sid` query parameter of a Socket.IO request.
    static func sessionID(query: String?) -> String? {
        for pair in (query ?? "").split(separator: "&") where pair.hasPrefix("sid=") {
            let value = pair.dropFirst(4)
            return value.isEmpty ? nil : String(value)
        }
        return nil
    }
}
