// The checks a session token passes after its signature: not revoked, its user exists, and its session stamp
// is the user's current one (a password change or sign-out-everywhere moves the stamp). The gateway and the
// realtime service both run them; each answers a failure in its own way.
import Foundation

public enum SessionCheck {
    public enum Outcome: Sendable {
        case valid(PrincipalInfo)
        /// Revoked by sign-out, or issued before the user's current session stamp.
        case revoked
        /// The token names a user that does not exist (any more).
        case unknownUser
    }

    /// Runs the checks for verified claims. Redis and the principal lookup may throw (unavailable).
    public static func run(
        _ claims: SessionClaims, redis: RedisClient, principal: (String) async throws -> PrincipalInfo?
    ) async throws -> Outcome {
        if let jti = claims.jti, try await redis.send(["EXISTS", RevokedTokens.key(jti)]).int == 1 { return .revoked }
        guard let user = try await principal(claims.id) else { return .unknownUser }
        if let stamp = claims.sessionStamp, let current = user.sessionStamp, stamp != current { return .revoked }
        return .valid(user)
    }
}
