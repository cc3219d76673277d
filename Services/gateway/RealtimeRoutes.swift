// Which realtime replica serves a Socket.IO request: the one whose tag starts the Engine.IO session id, or,
// for a new session, the next live replica in turn. Replicas register themselves in Redis.
import Foundation
import NIOConcurrencyHelpers
import Shared

final class RealtimeRoutes: Sendable {
    let redis: RedisClient
    /// `SKIFF_REALTIME_URL`: used while no replica has registered.
    let fallback: String
    private let state = NIOLockedValueBox<(replicas: [String: String], fetched: ContinuousClock.Instant?, turn: Int)>(
        ([:], nil, 0))
    /// Replicas that could not be reached, with when: skipped for `unreachableFor`, since a killed replica stays
    /// in the registry until its entry expires.
    private let unreachable = NIOLockedValueBox<[String: ContinuousClock.Instant]>([:])
    static let unreachableFor: Duration = .seconds(10)

    init(redis: RedisClient, fallback: String) {
        self.redis = redis
        self.fallback = fallback
    }

    /// How old the copy of the registry may be for ordinary lookups, and for the second look an unknown
    /// session gets (a replica that registered since the last read). The second bound caps the reads that
    /// requests with made-up session ids can force at ten a second.
    static let maxAge: Duration = .seconds(1)
    static let maxAgeForUnknown: Duration = .milliseconds(100)

    /// Live replicas (tag → URL), read from Redis once the copy is older than `maxAge`. The first caller to
    /// find it stale refreshes it while the others go on with the previous copy, so a burst costs one read.
    private func replicas(maxAge: Duration = RealtimeRoutes.maxAge) async -> [String: String] {
        let cached = state.withLockedValue { state -> [String: String]? in
            // Before the first read completes there is no copy to go on with: everyone reads.
            guard let fetched = state.fetched else { return nil }
            let now = ContinuousClock.now
            if now - fetched < maxAge { return state.replicas }
            state.fetched = now
            return nil
        }
        if let cached { return cached }
        guard let reply = try? await redis.send(["HGETALL", RealtimeReplicas.key]), let items = reply.array else {
            // Redis did not answer: go on with the copy there is (an empty map would send every session to the
            // fallback URL, where most are unknown) and read again once it is stale.
            return state.withLockedValue { $0.replicas }
        }
        var live: [String: String] = [:]
        for index in stride(from: 0, to: items.count - 1, by: 2) {
            if let tag = items[index].string, let entry = items[index + 1].string,
                let url = RealtimeReplicas.url(fromEntry: entry)
            {
                live[tag] = url
            }
        }
        state.withLockedValue {
            $0.replicas = live
            $0.fetched = .now
        }
        return live
    }

    func markUnreachable(_ url: String) {
        unreachable.withLockedValue { $0[url] = .now }
    }

    private func isUnreachable(_ url: String) -> Bool {
        unreachable.withLockedValue { marks in
            guard let since = marks[url] else { return false }
            if ContinuousClock.now - since < Self.unreachableFor { return true }
            marks[url] = nil
            return false
        }
    }

    /// The replica holding an Engine.IO session, nil when none does (the fallback while none registered).
    func url(forSession sid: String) async -> String? {
        let tag = String(sid.prefix(4))
        var live = await replicas()
        if live[tag] == nil { live = await replicas(maxAge: Self.maxAgeForUnknown) }
        guard let url = live[tag] ?? (live.isEmpty ? fallback : nil), !isUnreachable(url) else { return nil }
        return url
    }

    /// Candidates for a new session: the reachable replicas starting with the next in turn, then those found
    /// unreachable lately (a last resort).
    func handshakeURLs() async -> [String] {
        let registered = await replicas().values.sorted()
        guard !registered.isEmpty else { return [fallback] }
        var reachable: [String] = []
        var down: [String] = []
        for url in registered {
            if isUnreachable(url) { down.append(url) } else { reachable.append(url) }
        }
        guard !reachable.isEmpty else { return down }
        let turn = state.withLockedValue { state -> Int in
            defer { state.turn &+= 1 }
            return state.turn
        }
        let start = turn % reachable.count
        return Array(reachable[start...] + reachable[..<start]) + down
    }
}
