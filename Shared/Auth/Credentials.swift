// What a request presents to prove who it is, read the same way by the gateway and the services.
import Crypto
import Foundation
import HTTPTypes

public enum Credentials {
    /// The token of `Authorization: <scheme> <token>` (any scheme, as Open WebUI's middleware reads it),
    /// else the `token` cookie.
    public static func token(in headers: HTTPFields) -> String? {
        if let header = headers[.authorization] {
            let parts = header.split(separator: " ", maxSplits: 1)
            if parts.count == 2, !parts[1].isEmpty { return String(parts[1]) }
        }
        return Cookies.value(named: "token", in: headers)
    }

    /// The SHA-256 (hex) of an API key: the only form in which keys are stored and looked up.
    public static func apiKeyDigest(_ key: String) -> String {
        SHA256.hash(data: Data(key.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}
