// Session tokens as Open WebUI issues them: HS256 JWTs signed with WEBUI_SECRET_KEY.
import Foundation
import JWTKit

/// The claims of a session token, named as the real server names them.
public struct SessionClaims: JWTPayload, Equatable {
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

    /// Expired tokens fail verification, as PyJWT fails them.
    public func verify(using algorithm: some JWTAlgorithm) async throws {
        if let exp, exp <= Int(Date().timeIntervalSince1970) {
            throw JWTError.claimVerificationFailure(failedClaim: nil, reason: "expired")
        }
    }
}

/// Signs and verifies session tokens with the shared secret.
public struct SessionTokens: Sendable {
    let keys: JWTKeyCollection

    public init(secret: String) async {
        let keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        self.keys = keys
    }

    public func sign(_ claims: SessionClaims) async throws -> String {
        try await keys.sign(claims, header: ["typ": "JWT"])
    }

    /// The claims of a valid, unexpired token; nil for anything else.
    public func verify(_ token: String) async -> SessionClaims? {
        try? await keys.verify(token, as: SessionClaims.self)
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
        return total == 0 ? .some(nil) : .some(Int(total))
    }
}
