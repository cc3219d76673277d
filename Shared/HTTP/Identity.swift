// Who is calling: resolved by the gateway, passed to services in internal headers with the internal secret.
import Foundation
import HTTPTypes
import Hummingbird

/// The caller of a request as the gateway resolved it.
public struct Identity: Sendable, Equatable {
    /// How the caller proved who they are.
    public enum Method: String, Sendable {
        case jwt
        case apiKey = "api_key"
    }

    public var userID: String
    public var role: String
    public var method: Method
    /// The JWT's `jti` and `exp` when the caller used a session token.
    public var tokenID: String?
    public var tokenExpiry: Int?
    /// The user's display name and email as auth last reported them.
    public var name: String
    public var email: String
    public var groupIDs: [String]

    public init(
        userID: String, role: String, method: Method, tokenID: String? = nil, tokenExpiry: Int? = nil,
        name: String = "", email: String = "", groupIDs: [String] = []
    ) {
        self.userID = userID
        self.role = role
        self.method = method
        self.tokenID = tokenID
        self.tokenExpiry = tokenExpiry
        self.name = name
        self.email = email
        self.groupIDs = groupIDs
    }

    public var isAdmin: Bool { role == "admin" }
    /// Open WebUI's verified roles: `user` and `admin` (not `pending`).
    public var isVerified: Bool { role == "user" || role == "admin" }
}

/// Header names that carry the identity between gateway and services.
public enum InternalHeader {
    public static let secret = HTTPField.Name("X-Skiff-Internal-Secret")!
    public static let userID = HTTPField.Name("X-Skiff-User-Id")!
    public static let role = HTTPField.Name("X-Skiff-User-Role")!
    public static let method = HTTPField.Name("X-Skiff-Auth")!
    public static let tokenID = HTTPField.Name("X-Skiff-Token-Id")!
    public static let tokenExpiry = HTTPField.Name("X-Skiff-Token-Exp")!
    /// Percent-encoded, because names and emails may hold any character.
    public static let name = HTTPField.Name("X-Skiff-User-Name")!
    public static let email = HTTPField.Name("X-Skiff-User-Email")!
    /// Comma-separated group ids.
    public static let groups = HTTPField.Name("X-Skiff-User-Groups")!
    public static let all = [secret, userID, role, method, tokenID, tokenExpiry, name, email, groups]
    /// Set by a service on a reply that made the gateway's cached callers stale:
    /// `user:<id>`, `config` or `all`. The gateway that proxied the reply applies and removes it.
    public static let invalidate = HTTPField.Name("X-Skiff-Invalidate")!

    /// Writes an identity into headers (the gateway does this for every proxied request).
    public static func write(_ identity: Identity?, secret: String, into headers: inout HTTPFields) {
        for name in all { headers[name] = nil }
        headers[Self.secret] = secret
        guard let identity else { return }
        headers[userID] = identity.userID
        headers[role] = identity.role
        headers[method] = identity.method.rawValue
        if let tokenID = identity.tokenID { headers[Self.tokenID] = tokenID }
        if let expiry = identity.tokenExpiry { headers[tokenExpiry] = String(expiry) }
        headers[name] = encode(identity.name)
        headers[email] = encode(identity.email)
        if !identity.groupIDs.isEmpty { headers[groups] = identity.groupIDs.joined(separator: ",") }
    }

    private static func encode(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
    }

    /// Reads the identity a gateway wrote; nil when the request is anonymous.
    public static func read(_ headers: HTTPFields) -> Identity? {
        guard let id = headers[userID], let role = headers[role],
            let method = headers[method].flatMap(Identity.Method.init(rawValue:))
        else { return nil }
        return Identity(
            userID: id, role: role, method: method, tokenID: headers[tokenID],
            tokenExpiry: headers[tokenExpiry].flatMap { Int($0) },
            name: headers[name]?.removingPercentEncoding ?? "", email: headers[email]?.removingPercentEncoding ?? "",
            groupIDs: headers[groups].map { $0.split(separator: ",").map(String.init) } ?? [])
    }
}
