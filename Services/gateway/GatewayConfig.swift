// Settings only the gateway reads.
import Foundation
import Shared

/// Where the services are and how the gateway guards them.
struct GatewayConfig: Sendable {
    var service: ServiceConfig
    var upstreams: [Upstream: String]
    /// `CORS_ALLOW_ORIGIN`: "*" or origins separated by ";".
    var corsAllowOrigins: [String]
    /// `SKIFF_MAX_BODY_SIZE`: largest request body in bytes.
    var maxBodySize: Int
    /// `SKIFF_RATE_LIMIT_PER_MINUTE`: requests per user per minute; 0 turns the limit off.
    var userRateLimit: Int
    /// `SKIFF_RATE_LIMIT_ADMINS`: whether admins are limited too.
    var rateLimitAdmins: Bool
    /// `SKIFF_SIGNIN_RATE_LIMIT` attempts per `SKIFF_SIGNIN_RATE_WINDOW` seconds per email.
    var signinLimit: Int
    var signinWindow: Int
    /// `SKIFF_UPSTREAM_TIMEOUT`: seconds a service may take to start its reply (503 after).
    var upstreamTimeout: Int
    /// `SKIFF_LONG_UPSTREAM_TIMEOUT`: the same for model calls and document processing.
    var longUpstreamTimeout: Int

    init(environment env: Shared.Environment = Shared.Environment()) {
        service = ServiceConfig(environment: env, defaultPort: 8080)
        upstreams = [
            .auth: env.string("SKIFF_AUTH_URL", default: "http://127.0.0.1:8081"),
            .chat: env.string("SKIFF_CHAT_URL", default: "http://127.0.0.1:8082"),
            .files: env.string("SKIFF_FILES_URL", default: "http://127.0.0.1:8083"),
            .retrieval: env.string("SKIFF_RETRIEVAL_URL", default: "http://127.0.0.1:8084"),
            .realtime: env.string("SKIFF_REALTIME_URL", default: "http://127.0.0.1:8085"),
        ].mapValues { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        corsAllowOrigins = env.string("CORS_ALLOW_ORIGIN", default: "*").split(separator: ";")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        maxBodySize = env.int("SKIFF_MAX_BODY_SIZE", default: 100 * 1024 * 1024)
        userRateLimit = env.int("SKIFF_RATE_LIMIT_PER_MINUTE", default: 600)
        rateLimitAdmins = env.bool("SKIFF_RATE_LIMIT_ADMINS", default: false)
        signinLimit = env.int("SKIFF_SIGNIN_RATE_LIMIT", default: 15)
        signinWindow = env.int("SKIFF_SIGNIN_RATE_WINDOW", default: 180)
        upstreamTimeout = env.int("SKIFF_UPSTREAM_TIMEOUT", default: 8)
        longUpstreamTimeout = env.int("SKIFF_LONG_UPSTREAM_TIMEOUT", default: 600)
    }
}

/// The services behind the gateway.
enum Upstream: String, CaseIterable, Sendable {
    case auth, chat, files, retrieval, realtime
}
