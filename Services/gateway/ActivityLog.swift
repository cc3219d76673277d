// Who was active lately, for `/api/usage`'s `user_count` (the original counts users whose `last_active_at`,
// refreshed by every authenticated request, is under three minutes old). Requests only add the caller to an
// in-memory set; every few seconds the set goes to one Redis sorted set shared by all gateways.
import Foundation
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle
import Shared

final class ActivityLog: Service, Sendable {
    let redis: RedisClient
    let logger: Logger
    private let seen = NIOLockedValueBox<Set<String>>([])

    init(redis: RedisClient, logger: Logger) {
        self.redis = redis
        self.logger = logger
    }

    func record(_ userID: String) {
        seen.withLockedValue { _ = $0.insert(userID) }
    }

    func run() async throws {
        // Stops with the gateway's graceful shutdown, after one last flush.
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(5))
                await self.flush()
            }
        }
        await flush()
    }

    func flush() async {
        let users = seen.withLockedValue { seen -> Set<String> in
            defer { seen.removeAll() }
            return seen
        }
        guard !users.isEmpty else { return }
        let now = Int(Date().timeIntervalSince1970)
        var command = ["ZADD", UsageKeys.users]
        for user in users { command += [String(now), user] }
        do {
            _ = try await redis.send(command)
            _ = try await redis.send(["ZREMRANGEBYSCORE", UsageKeys.users, "-inf", String(now - UsageKeys.userWindow)])
        } catch {
            // Kept for the next flush.
            seen.withLockedValue { $0.formUnion(users) }
            logger.warning("could not record active users", metadata: ["error": "\(error)"])
        }
    }
}
