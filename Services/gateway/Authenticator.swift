// Resolves the caller of a request: Bearer JWT, Bearer `sk-` key, the `token` cookie or `x-api-key`.
import Foundation
import HTTPTypes
import Hummingbird
import Shared

struct Authenticator: Sendable {
    let tokens: SessionTokens
    let redis: RedisClient
    let cache: PrincipalCache
    let auth: AuthLookup

    static let apiKeyNotAllowed = "Use of API key is not enabled in the environment."
    /// Parsed once: a header name built per request costs a validation and a copy each time.
    static let apiKeyHeader = HTTPField.Name("x-api-key")!

    /// The credential a request carries, in the real server's order of precedence.
    static func credential(in headers: HTTPFields) -> String? {
        if let token = Credentials.token(in: headers) { return token }
        if let key = headers[apiKeyHeader], !key.isEmpty { return key }
        return nil
    }

    /// The caller; nil when the request has no credential. Bad credentials throw the real server's 401/403.
    func identify(_ request: Request, path: String) async throws -> Identity? {
        guard let credential = Self.credential(in: request.headers) else { return nil }
        if credential.hasPrefix("sk-") {
            return try await identifyAPIKey(credential, path: path)
        }
        return try await identifyToken(credential)
    }

    private func identifyToken(_ token: String) async throws -> Identity {
        let claims: SessionClaims
        if let cached = cache.verifiedClaims(token) {
            claims = cached
        } else {
            guard let verified = tokens.verify(token) else { throw APIError(.unauthorized, ErrorText.unauthorized) }
            cache.storeVerified(token, verified)
            claims = verified
        }
        let outcome: SessionCheck.Outcome
        do {
            outcome = try await SessionCheck.run(claims, redis: redis, principal: user)
        } catch {
            throw error as? APIError ?? APIError.unavailable
        }
        let principal: PrincipalInfo
        switch outcome {
        case .valid(let found): principal = found
        case .revoked: throw APIError(.unauthorized, "Invalid token")
        case .unknownUser: throw APIError.invalidToken
        }
        return Identity(
            userID: principal.id, role: principal.role, method: .jwt, tokenID: claims.jti, tokenExpiry: claims.exp,
            name: principal.name ?? "", email: principal.email ?? "", groupIDs: principal.groupIDs ?? [])
    }

    private func identifyAPIKey(_ key: String, path: String) async throws -> Identity {
        let hash = Credentials.apiKeyDigest(key)
        let principal: PrincipalInfo?
        if let cached = cache.apiKey(hash) {
            principal = cached
        } else {
            principal = try await auth.principal(apiKeyHash: hash)
            cache.storeAPIKey(hash, principal)
        }
        guard let principal else { throw APIError.invalidToken }
        let policy = try await self.policy()
        guard policy.enableAPIKeys, principal.apiKeysPermitted else {
            throw APIError(.forbidden, Self.apiKeyNotAllowed)
        }
        guard policy.allows(path: path) else { throw APIError.forbidden }
        return Identity(
            userID: principal.id, role: principal.role, method: .apiKey, name: principal.name ?? "",
            email: principal.email ?? "", groupIDs: principal.groupIDs ?? [])
    }

    private func user(_ id: String) async throws -> PrincipalInfo? {
        if let cached = cache.user(id) { return cached }
        let principal = try await auth.principal(userID: id)
        cache.storeUser(id, principal)
        return principal
    }

    private func policy() async throws -> GatewayPolicy {
        if let cached = cache.currentPolicy() { return cached }
        let policy = try await auth.policy()
        cache.storePolicy(policy)
        return policy
    }
}
