// Short-lived caches of what auth knows about callers; emptied at once by auth events.
import Foundation
import NIOConcurrencyHelpers
import Shared

/// Users by id, API-key owners by key hash, and the API-key policy, each kept for a few seconds.
final class PrincipalCache: Sendable {
    struct Entry<Value: Sendable>: Sendable {
        var value: Value
        var storedAt: ContinuousClock.Instant
    }

    private let users = NIOLockedValueBox<[String: Entry<PrincipalInfo?>]>([:])
    private let apiKeys = NIOLockedValueBox<[String: Entry<PrincipalInfo?>]>([:])
    private let policy = NIOLockedValueBox<Entry<GatewayPolicy>?>(nil)
    private let verifiedTokens = NIOLockedValueBox<[String: SessionClaims]>([:])
    let lifetime: Duration
    /// Verified tokens kept to skip the signature check on repeat requests (expiry is still checked).
    static let verifiedTokenLimit = 10_000

    init(lifetime: Duration = .seconds(30)) {
        self.lifetime = lifetime
    }

    private func isFresh<V>(_ entry: Entry<V>) -> Bool {
        ContinuousClock.now - entry.storedAt < lifetime
    }

    func user(_ id: String) -> PrincipalInfo?? {
        guard let entry = users.withLockedValue({ $0[id] }), isFresh(entry) else { return nil }
        return .some(entry.value)
    }
    func storeUser(_ id: String, _ value: PrincipalInfo?) {
        users.withLockedValue { $0[id] = Entry(value: value, storedAt: .now) }
    }

    func apiKey(_ hash: String) -> PrincipalInfo?? {
        guard let entry = apiKeys.withLockedValue({ $0[hash] }), isFresh(entry) else { return nil }
        return .some(entry.value)
    }
    func storeAPIKey(_ hash: String, _ value: PrincipalInfo?) {
        apiKeys.withLockedValue { $0[hash] = Entry(value: value, storedAt: .now) }
    }

    func currentPolicy() -> GatewayPolicy? {
        guard let entry = policy.withLockedValue({ $0 }), isFresh(entry) else { return nil }
        return entry.value
    }
    func storePolicy(_ value: GatewayPolicy) { policy.withLockedValue { $0 = Entry(value: value, storedAt: .now) } }

    func verifiedClaims(_ token: String) -> SessionClaims? {
        guard let claims = verifiedTokens.withLockedValue({ $0[token] }), !claims.isExpired else { return nil }
        return claims
    }

    func storeVerified(_ token: String, _ claims: SessionClaims) {
        verifiedTokens.withLockedValue { tokens in
            if tokens.count >= Self.verifiedTokenLimit { tokens.removeAll(keepingCapacity: true) }
            tokens[token] = claims
        }
    }

    /// Forgets a user and every API key resolved to them.
    func invalidateUser(_ id: String) {
        users.withLockedValue { $0[id] = nil }
        apiKeys.withLockedValue { keys in keys = keys.filter { $0.value.value?.id != id } }
    }

    func invalidateAll() {
        users.withLockedValue { $0 = [:] }
        apiKeys.withLockedValue { $0 = [:] }
        policy.withLockedValue { $0 = nil }
    }

    /// Applies an invalidation hint: `user:<id>`, `config` or `all`.
    func apply(hint: String) {
        if hint.hasPrefix("user:") {
            invalidateUser(String(hint.dropFirst(5)))
        } else if hint == "config" {
            policy.withLockedValue { $0 = nil }
        } else {
            invalidateAll()
        }
    }

    /// Reacts to an auth event from the stream (every gateway replica follows it).
    func apply(event: Event) {
        switch event.type {
        case "config.updated":
            invalidateAll()
        case let type where type.hasPrefix("group."):
            invalidateAll()
        default:
            if let id = event.data["user_id"]?.stringValue {
                invalidateUser(id)
            } else {
                invalidateAll()
            }
        }
    }
}
