// Who is calling: resolved by the gateway, passed to services in internal headers with the internal secret.
import Foundation
import HTTPTypes
import Hummingbird
import NIOHTTP1

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
    /// The same into an outgoing async-http-client request's headers.
    public static func add(_ identity: Identity?, secret: String, to headers: inout HTTPHeaders) {
        var fields = HTTPFields()
        write(identity, secret: secret, into: &fields)
        for field in fields { headers.add(name: field.name.rawName, value: field.value) }
    }

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

    /// Built once: every email takes the encoding path (`@` and `.` are escaped).
    private static let hexDigits = Array("0123456789ABCDEF".utf8)

    /// Percent-encodes every byte but ASCII letters and digits (names and emails cross on every request,
    /// so this works on UTF-8 bytes rather than through Foundation).
    static func encode(_ text: String) -> String {
        func plain(_ byte: UInt8) -> Bool {
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
        }
        if text.utf8.allSatisfy(plain) { return text }
        let hex = hexDigits
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count * 3)
        for byte in text.utf8 {
            if plain(byte) {
                out.append(byte)
            } else {
                out.append(UInt8(ascii: "%"))
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0x0F)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Undoes `encode`; a `%` not followed by two hex digits stays as it is.
    static func decode(_ text: String) -> String {
        guard text.utf8.contains(UInt8(ascii: "%")) else { return text }
        func value(_ byte: UInt8) -> UInt8? {
            switch byte {
            case 0x30...0x39: return byte - 0x30
            case 0x41...0x46: return byte - 0x41 + 10
            case 0x61...0x66: return byte - 0x61 + 10
            default: return nil
            }
        }
        let bytes = Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "%"), index + 2 < bytes.count,
                let high = value(bytes[index + 1]), let low = value(bytes[index + 2])
            {
                out.append(high << 4 | low)
                index += 3
            } else {
                out.append(bytes[index])
                index += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Reads the identity a gateway wrote; nil when the request is anonymous.
    public static func read(_ headers: HTTPFields) -> Identity? {
        guard let id = headers[userID], let role = headers[role],
            let method = headers[method].flatMap(Identity.Method.init(rawValue:))
        else { return nil }
        return Identity(
            userID: id, role: role, method: method, tokenID: headers[tokenID],
            tokenExpiry: headers[tokenExpiry].flatMap { Int($0) },
            name: headers[name].map(decode) ?? "", email: headers[email].map(decode) ?? "",
            groupIDs: headers[groups].map { $0.split(separator: ",").map(String.init) } ?? [])
    }
}

extension Identity {
    /// Whether access grants (objects with `principal_type`, `principal_id`, `permission`) give this user
    /// `permission`: a grant to everyone (`user:*`), to the user, or to one of their groups.
    public func isGranted(_ permission: String, by grants: [JSONValue]) -> Bool {
        grants.contains { grant in
            guard grant["permission"]?.stringValue == permission, let id = grant["principal_id"]?.stringValue else { return false }
            switch grant["principal_type"]?.stringValue {
            case "user": return id == "*" || id == userID
            case "group": return groupIDs.contains(id)
            default: return false
            }
        }
    }
}
