// Calls to the auth service's internal routes: who a user or API key is, and the gateway policy.
import AsyncHTTPClient
import Foundation
import NIOCore

/// The internal lookups the gateway and realtime make (with the internal secret).
public struct AuthLookup: Sendable {
    let client: HTTPClient
    let baseURL: String
    let internalSecret: String

    public init(client: HTTPClient, baseURL: String, internalSecret: String) {
        self.client = client
        self.baseURL = baseURL
        self.internalSecret = internalSecret
    }

    private func get<T: Decodable>(_ path: String, as type: T.Type) async throws -> T? {
        var request = HTTPClientRequest(url: baseURL + path)
        request.headers.add(name: InternalHeader.secret.rawName, value: internalSecret)
        let response: HTTPClientResponse
        do {
            response = try await client.execute(request, timeout: .seconds(5))
        } catch {
            throw APIError.unavailable
        }
        let body = try await response.body.collect(upTo: 1 << 20)
        switch response.status.code {
        case 200: return try JSONDecoder().decode(T.self, from: Data(buffer: body))
        case 404: return nil
        default: throw APIError.unavailable
        }
    }

    public func principal(userID: String) async throws -> PrincipalInfo? {
        guard let escaped = userID.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(["/"])) else {
            return nil
        }
        return try await get("/internal/principals/users/\(escaped)", as: PrincipalInfo.self)
    }

    public func principal(apiKeyHash: String) async throws -> PrincipalInfo? {
        try await get("/internal/principals/api-keys/\(apiKeyHash)", as: PrincipalInfo.self)
    }

    /// A user's effective permissions and the feature switches (`{"permissions": ..., "features": ...}`).
    public func userPolicy(userID: String) async throws -> UserPolicy {
        guard let escaped = userID.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(["/"])),
            let policy = try await get("/internal/policy/users/\(escaped)", as: UserPolicy.self)
        else { throw APIError.unavailable }
        return policy
    }

    /// `UserResponse`s of the given users (unknown ids left out), asked a hundred at a time.
    public func users(ids: some Collection<String>) async throws -> [UserSummary] {
        let ids = Array(ids)
        var users: [UserSummary] = []
        for start in stride(from: 0, to: ids.count, by: 100) {
            let list = ids[start..<min(ids.count, start + 100)].map(Self.queryEscaped).joined(separator: ",")
            users += try await get("/internal/users/summaries?ids=\(list)", as: [UserSummary].self) ?? []
        }
        return users
    }

    /// `UserResponse`s of up to 1,000 users whose name or email contains `query` (case-insensitive).
    public func users(matching query: String) async throws -> [UserSummary] {
        guard !query.isEmpty else { return [] }
        return try await get("/internal/users/summaries?query=\(Self.queryEscaped(query))", as: [UserSummary].self) ?? []
    }

    /// Text safe in a query string: everything but unreserved ASCII percent-encoded.
    static func queryEscaped(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: unreserved) ?? ""
    }

    static let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

    public func policy() async throws -> GatewayPolicy {
        guard let policy = try await get("/internal/gateway-config", as: GatewayPolicy.self) else {
            throw APIError.unavailable
        }
        return policy
    }
}

/// The original's `UserResponse`: who owns an item, as lists show it.
public struct UserSummary: Codable, Sendable {
    public var id: String
    public var name: String
    public var role: String
    public var email: String

    public init(id: String, name: String, role: String, email: String) {
        (self.id, self.name, self.role, self.email) = (id, name, role, email)
    }

    /// `{"id", "name", "role", "email"}` in that order.
    public var jsonText: String {
        OrderedJSON.object(["id": .string(id), "name": .string(name), "role": .string(role), "email": .string(email)])
    }
}

/// A user's effective permissions (defaults plus their groups' grants) and the admin's feature switches.
public struct UserPolicy: Codable, Sendable {
    public var permissions: JSONValue
    public var features: [String: Bool]

    /// Whether a permission such as `sharing.notes` is granted.
    public func allows(_ path: String) -> Bool { permissions.allows(path) }
}

/// Owners of listed items (the original's `UserResponse`), by user id: the caller from their identity, the
/// others from auth in one call.
public struct OwnerLookup: Sendable {
    let auth: AuthLookup

    public init(auth: AuthLookup) {
        self.auth = auth
    }

    public func owners(_ ids: Set<String>, caller: Identity) async throws -> [String: UserSummary] {
        var result: [String: UserSummary] = [:]
        if ids.contains(caller.userID) {
            result[caller.userID] = UserSummary(id: caller.userID, name: caller.name, role: caller.role, email: caller.email)
        }
        for user in try await auth.users(ids: ids.subtracting([caller.userID])) { result[user.id] = user }
        return result
    }
}
