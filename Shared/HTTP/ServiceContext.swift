// The request context of every internal service: carries the identity the gateway passed.
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// Request context for services behind the gateway.
public struct ServiceRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var identity: Identity?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.identity = nil
    }

    /// The caller, or 401 "Not authenticated" when there is none.
    public func requireUser() throws -> Identity {
        guard let identity else { throw APIError.notAuthenticated }
        return identity
    }

    /// A caller with role `user` or `admin`; pending users get the real server's 401.
    public func requireVerified() throws -> Identity {
        let identity = try requireUser()
        guard identity.isVerified else { throw APIError.accessProhibited }
        return identity
    }

    /// An admin caller; others get the real server's 401.
    public func requireAdmin() throws -> Identity {
        let identity = try requireUser()
        guard identity.isAdmin else { throw APIError.accessProhibited }
        return identity
    }

    /// A caller holding a session token (not an API key), as `get_human_user` requires.
    public func requireHumanSession() throws -> Identity {
        let identity = try requireUser()
        guard identity.method == .jwt else { throw APIError(.forbidden, ErrorText.humanSessionRequired) }
        return identity
    }
}

/// Refuses requests without the internal secret and fills the context's identity.
public struct InternalAuthMiddleware: RouterMiddleware {
    public typealias Context = ServiceRequestContext
    let secret: String
    let openPaths: Set<String>

    public init(secret: String, openPaths: Set<String> = ["/health", "/health/db"]) {
        self.secret = secret
        self.openPaths = openPaths
    }

    public func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        if openPaths.contains(request.uri.path) { return try await next(request, context) }
        guard let given = request.headers[InternalHeader.secret], constantTimeEqual(given, secret) else {
            throw APIError(.forbidden, "Requests must come through the gateway.")
        }
        var context = context
        context.identity = InternalHeader.read(request.headers)
        return try await next(request, context)
    }
}

/// Compares two secrets without an early exit, so timing does not reveal a prefix.
public func constantTimeEqual(_ lhs: String, _ rhs: String) -> Bool {
    let a = Array(lhs.utf8)
    let b = Array(rhs.utf8)
    guard a.count == b.count else { return false }
    var difference: UInt8 = 0
    for index in 0..<a.count { difference |= a[index] ^ b[index] }
    return difference == 0
}
