// Routes only the gateway calls (with the internal secret): who a token or key belongs to, and the gateway's config.
import Foundation
import Hummingbird
import Shared

struct InternalController {
    let accounts: Accounts

    var routes: RouteCollection<ServiceRequestContext> {
        let routes = RouteCollection(context: ServiceRequestContext.self)
        routes.get("principals/users/:id", use: userPrincipal)
        routes.get("principals/api-keys/:hash", use: apiKeyPrincipal)
        routes.get("gateway-config", use: gatewayConfig)
        routes.get("policy/users/:id", use: userPolicy)
        routes.get("users/summaries", use: userSummaries)
        return routes
    }

    @Sendable func userPrincipal(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let id = try context.parameters.require("id")
        guard let found = try await accounts.users.principal(userID: id) else { throw APIError.notFound }
        return try JSONResponse.make(
            PrincipalInfo(
                id: id, role: found.role, sessionStamp: found.stamp, apiKeysPermitted: false, name: found.name,
                email: found.email, groupIDs: found.groups))
    }

    /// The owner of a key (looked up by SHA-256) and whether they may use API keys at all.
    @Sendable func apiKeyPrincipal(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let hash = try context.parameters.require("hash")
        guard let owner = try await accounts.users.owner(apiKeyHash: hash) else { throw APIError.notFound }
        let permitted = try await accounts.mayUseAPIKeys(userID: owner.id, role: owner.role)
        return try JSONResponse.make(
            PrincipalInfo(
                id: owner.id, role: owner.role, sessionStamp: nil, apiKeysPermitted: permitted, name: owner.name,
                email: owner.email, groupIDs: owner.groups))
    }

    /// What other services need to decide a user's access to workspace features: their effective permissions
    /// and the admin switches of those features.
    @Sendable func userPolicy(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let id = try context.parameters.require("id")
        let config = try await accounts.config.current()
        return JSONResponse.text(
            OrderedJSON.object([
                "permissions": try await accounts.permissions(ofUser: id),
                "features": .object([
                    "notes": .bool(config.bool("ENABLE_NOTES")), "memories": .bool(config.bool("ENABLE_MEMORIES")),
                ]),
            ]))
    }

    /// `UserResponse`s (`id`, `name`, `role`, `email`) of the users named in `ids` (comma-separated), or of at
    /// most 1,000 users whose name or email contains `query`: the owners other services show beside items.
    @Sendable func userSummaries(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let ids = request.queryValue("ids").map { $0.split(separator: ",").map(String.init) }
        let query = request.queryValue("query").flatMap { $0.isEmpty ? nil : $0 }
        guard ids != nil || query != nil else { return JSONResponse.text("[]") }
        return JSONResponse.text(try await accounts.users.summaries(ids: ids, matching: query))
    }

    @Sendable func gatewayConfig(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let config = try await accounts.config.fresh()
        return try JSONResponse.make(
            GatewayPolicy(
                enableAPIKeys: config.bool("ENABLE_API_KEYS"),
                endpointRestrictions: config.bool("ENABLE_API_KEYS_ENDPOINT_RESTRICTIONS"),
                allowedEndpoints: config.string("API_KEYS_ALLOWED_ENDPOINTS")))
    }
}
