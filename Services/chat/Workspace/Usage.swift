// GET /api/usage: the models in use right now (sockets that sent `usage` in the last 3 seconds, as realtime
// records them) and how many users were active in the last 3 minutes (as the gateways record them).
import Foundation
import Hummingbird
import Shared

struct UsageController {
    let redis: RedisClient
    /// `ENABLE_PUBLIC_ACTIVE_USERS_COUNT`: whether users other than admins may ask.
    let publicCount: Bool

    var routes: RouteCollection<ServiceRequestContext> {
        let routes = RouteCollection(context: ServiceRequestContext.self)
        routes.get("/", use: usage)
        return routes
    }

    @Sendable func usage(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        guard publicCount || user.isAdmin else {
            throw APIError(.forbidden, "Access denied. Only administrators can view usage statistics.")
        }
        let now = Int(Date().timeIntervalSince1970)
        var models: [(String, Int)] = []
        var cursor = "0"
        repeat {
            let reply = try await redis.send(["SCAN", cursor, "MATCH", "skiff:rt:usage:*", "COUNT", "200"])
            guard let parts = reply.array, parts.count == 2 else { break }
            cursor = parts[0].string ?? "0"
            for key in parts[1].array ?? [] {
                guard let key = key.string else { continue }
                let recent = try await redis.send(["ZRANGEBYSCORE", key, String(now - 3), "+inf", "WITHSCORES"])
                let scores = (recent.array ?? []).enumerated().filter { $0.offset % 2 == 1 }.compactMap { $0.element.int }
                if let first = scores.min() { models.append((String(key.dropFirst("skiff:rt:usage:".count)), first)) }
            }
        } while cursor != "0"
        let active = try await redis.send(["ZCOUNT", "skiff:active_users", String(now - 180), "+inf"]).int ?? 0
        let ids = models.sorted { ($0.1, $0.0) < ($1.1, $1.0) }.map { JSONValue.string($0.0) }
        return JSONResponse.text(OrderedJSON.object([("model_ids", .array(ids)), ("user_count", .int(active))]))
    }
}
