// Session tokens as Open WebUI issues them: HS256 JWTs signed with WEBUI_SECRET_KEY.
import Foundation
import Crypto

/// The claims of a session token, named as the real server names them.
public struct SessionClaims: Codable, Sendable, Equatable {
    public var id: String
    public var typ: String?
    public var authMethod: String?
    public var authTime: Int?
    public var sessionStamp: String?
    public var mfaVerified: Bool?
    public var exp: Int?
    public var jti: String?
    public var iat: Int?

    enum CodingKeys: String, CodingKey {
        case id, typ, exp, jti, iat
        case authMethod = "auth_method"
        case authTime = "auth_time"
        case sessionStamp = "session_stamp"
        case mfaVerified = "mfa_verified"
    }

    public init(userID: String, sessionStamp: String, lifetime: Int?, now: Int = Int(Date().timeIntervalSince1970)) {
        self.id = userID
        self.typ = "session"
        self.authMethod = "password"
        self.authTime = now
        self.sessionStamp = sessionStamp
        self.mfaVerified = false
        self.exp = lifetime.map { now + $0 }
        self.jti = UUID().uuidString.lowercased()
        self.iat = now
    }

    public var isExpired: Bool {
        if let exp { return exp <= Int(Date().timeIntervalSince1970) }
        return false
    }
}

/// Signs and verifies session tokens (HS256 with the shared secret) exactly as PyJWT does, for keys of
/// any length: Open WebUI accepts short secrets such as its default, so operators' keys carry over.
public struct SessionTokens: Sendable {
    let key: SymmetricKey
    static let header = base64URL(Data(#"{"alg":"HS256","typ":"JWT"}"#.utf8))

    public init(secret: String) {
        self.key = SymmetricKey(data: Data(secret.utf8))
    }

    public func sign(_ claims: SessionClaims) throws -> String {
        let payload = Self.base64URL(try JSONEncoder().encode(claims))
        let input = Self.header + "." + payload
        let signature = HMAC<SHA256>.authenticationCode(for: Data(input.utf8), using: key)
        return input + "." + Self.base64URL(Data(signature))
    }

    /// The claims of a valid, unexpired token; nil for anything else.
    public func verify(_ token: String) -> SessionClaims? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let headerData = Self.decodeBase64URL(parts[0]),
            let header = try? JSONDecoder().decode([String: String].self, from: headerData), header["alg"] == "HS256",
            let signature = Self.decodeBase64URL(parts[2]), let payload = Self.decodeBase64URL(parts[1])
        else { return nil }
        let input = Data(token.utf8.prefix(parts[0].utf8.count + 1 + parts[1].utf8.count))
        guard HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: input, using: key),
            let claims = try? JSONDecoder().decode(SessionClaims.self, from: payload), !claims.isExpired
        else { return nil }
        return claims
    }

    static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func decodeBase64URL(_ text: Substring) -> Data? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64)
    }
}

/// Parses Open WebUI duration strings: "4w", "1h30m", "500ms"; "-1" and "0" mean no expiry (nil).
public enum TokenLifetime {
    public static func seconds(_ text: String) -> Int?? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed == "-1" || trimmed == "0" { return .some(nil) }
        let pattern = try! NSRegularExpression(pattern: "(-?\\d+(?:\\.\\d+)?)(ms|s|m|h|d|w)")
        let range = NSRange(trimmed.startIndex..., in: trimmed)
        var total = 0.0
        var matched = false
        for match in pattern.matches(in: trimmed, range: range) {
            guard let numberRange = Range(match.range(at: 1), in: trimmed),
                let unitRange = Range(match.range(at: 2), in: trimmed), let number = Double(trimmed[numberRange])
            else { continue }
            matched = true
            let unit: Double = switch trimmed[unitRange] {
            case "ms": 0.001
            case "s": 1
            case "m": 60
            case "h": 3600
            case "d": 86400
            default: 604_800
            }
            total += number * unit
        }
        guard matched else { return nil }
        // Held to ±3,000 years, so an absurd setting ("99999999999999999w") cannot overflow the expiry.
        let bound = 1e11
        return total == 0 ? .some(nil) : .some(Int(max(-bound, min(total, bound))))
    }
}
