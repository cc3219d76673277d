// Fixed-window counters in Redis, so every gateway replica shares the same limits.
import Foundation
import HTTPTypes
import Shared

struct RateLimiter: Sendable {
    let redis: RedisClient

    /// Counts one hit and returns the count in the window and the seconds until it resets (one round trip).
    func hit(key: String, window: Int) async throws -> (count: Int, reset: Int) {
        let script = """
            local c = redis.call('INCR', KEYS[1])
            if c == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
            return {c, redis.call('TTL', KEYS[1])}
            """
        let reply: RESPValue
        do {
            reply = try await redis.send(["EVAL", script, "1", key, String(window)])
        } catch {
            throw APIError.unavailable
        }
        let values = reply.array ?? []
        return (values.first?.int ?? 0, max(0, values.dropFirst().first?.int ?? window))
    }

    static func signinKey(email: String) -> String { "skiff:rl:signin:\(email.lowercased())" }

    static func userKey(_ userID: String, now: Date = Date()) -> String {
        "skiff:rl:user:\(userID):\(Int(now.timeIntervalSince1970) / 60)"
    }
}

enum RateLimitHeader {
    static let limit = HTTPField.Name("X-RateLimit-Limit")!
    static let remaining = HTTPField.Name("X-RateLimit-Remaining")!
    static let reset = HTTPField.Name("X-RateLimit-Reset")!
}
