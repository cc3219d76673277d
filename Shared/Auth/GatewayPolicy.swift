// The part of the admin config the gateway enforces, served by auth and cached by every gateway.
import Foundation

/// API-key policy: whether keys work at all and which paths they may reach.
public struct GatewayPolicy: Codable, Sendable, Equatable {
    public var enableAPIKeys: Bool
    public var endpointRestrictions: Bool
    public var allowedEndpoints: String

    enum CodingKeys: String, CodingKey {
        case enableAPIKeys = "enable_api_keys"
        case endpointRestrictions = "endpoint_restrictions"
        case allowedEndpoints = "allowed_endpoints"
    }

    public init(enableAPIKeys: Bool, endpointRestrictions: Bool, allowedEndpoints: String) {
        self.enableAPIKeys = enableAPIKeys
        self.endpointRestrictions = endpointRestrictions
        self.allowedEndpoints = allowedEndpoints
    }

    /// The real server's rule: the path equals an allowed entry or lies below it.
    public func allows(path: String) -> Bool {
        guard endpointRestrictions else { return true }
        let allowed = allowedEndpoints.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        return allowed.contains { path == $0 || path.hasPrefix($0 + "/") }
    }
}

/// The user a session token or API key resolves to, as auth reports it to the gateway.
public struct PrincipalInfo: Codable, Sendable {
    public var id: String
    public var role: String
    public var sessionStamp: String?
    public var apiKeysPermitted: Bool
    /// Display name and email, passed on to services (chat messages carry the author's name).
    public var name: String?
    public var email: String?
    /// Ids of the groups the user belongs to (access grants to groups need them).
    public var groupIDs: [String]?

    enum CodingKeys: String, CodingKey {
        case id, role, name, email
        case groupIDs = "group_ids"
        case sessionStamp = "session_stamp"
        case apiKeysPermitted = "api_keys_permitted"
    }

    public init(
        id: String, role: String, sessionStamp: String?, apiKeysPermitted: Bool, name: String? = nil, email: String? = nil,
        groupIDs: [String]? = nil
    ) {
        self.id = id
        self.role = role
        self.sessionStamp = sessionStamp
        self.apiKeysPermitted = apiKeysPermitted
        self.name = name
        self.email = email
        self.groupIDs = groupIDs
    }
}
