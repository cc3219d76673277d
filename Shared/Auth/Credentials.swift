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

    /// The SHA-256 (lower-case hex) of an API key: the only form in which keys are stored and looked up.
    /// Runs on every API-key request (the gateway's cache is keyed by it), so no per-byte `String(format:)`.
    public static func apiKeyDigest(_ key: String) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(64)
        for byte in SHA256.hash(data: Data(key.utf8)) {
            out.append(hexDigits[Int(byte >> 4)])
            out.append(hexDigits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)
}
