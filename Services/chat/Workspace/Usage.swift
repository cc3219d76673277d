// GET /api/usage: the models in use right now (a socket sent `usage` for them in the last 3 seconds, as realtime
// records it) and how many users were active in the last 3 minutes (as the gateways record them).
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
        let models = try await redis.send(
            ["ZRANGEBYSCORE", UsageKeys.models, "(" + String(now - UsageKeys.modelWindow), "+inf"]
        ).array?.compactMap(\.string) ?? []
        let active = try await redis.send(["ZCOUNT", UsageKeys.users, String(now - UsageKeys.userWindow), "+inf"]).int ?? 0
        let ids = models.map(JSONValue.string)
        return JSONResponse.text(OrderedJSON.object([("model_ids", .array(ids)), ("user_count", .int(active))]))
    }
}
