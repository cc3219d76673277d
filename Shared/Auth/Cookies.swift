// Reads cookies from request headers.
import Foundation
import HTTPTypes

/// Cookie lookup over every `Cookie` header of a request.
public enum Cookies {
    public static func value(named name: String, in headers: HTTPFields) -> String? {
        for header in headers[values: .cookie] {
            for pair in header.split(separator: ";") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                if parts.count == 2, parts[0].trimmingCharacters(in: .whitespaces) == name {
                    let value = parts[1].trimmingCharacters(in: .whitespaces)
                    return value.isEmpty ? nil : value
                }
            }
        }
        return nil
    }
}

/// Redis keys of signed-out tokens, shared by every gateway replica until the token would expire anyway.
public enum RevokedTokens {
    public static func key(_ tokenID: String) -> String { "skiff:revoked:\(tokenID)" }
}
