// The gateway's request pipeline: timing, CORS, local routes, caller resolution, limits, forwarding.
import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Shared

struct GatewayResponder: HTTPResponder {
    typealias Context = BasicRequestContext

    let config: GatewayConfig
    let authenticator: Authenticator
    let limiter: RateLimiter
    let proxy: ServiceProxy
    let cors: CORSPolicy
    let openAPI: OpenAPIDocument
    let cache: PrincipalCache
    let realtime: RealtimeRoutes
    let activity: ActivityLog
    let webApp: WebApp
    /// `/api/changelog`, read once at start.
    let changelog: String
    let logger: Logger

    static let processTime = HTTPField.Name("X-Process-Time")!

    func respond(to request: Request, context: Context) async throws -> Response {
        let start = ContinuousClock.now
        var response: Response
        do {
            response = try await handle(request, context: context)
        } catch {
            response = ErrorMiddleware<Context>.render(
                error, request: request, logger: logger, knownRoutes: KnownRoutes([]))
        }
        cors.decorate(&response, for: request)
        response.headers[Self.processTime] = Self.seconds(ContinuousClock.now - start)
        return response
    }

    /// A duration as seconds with six decimals ("0.000412"), without Foundation's formatter.
    static func seconds(_ elapsed: Duration) -> String {
        let micros = max(0, elapsed.components.seconds * 1_000_000 + elapsed.components.attoseconds / 1_000_000_000_000)
        let fraction = String(micros % 1_000_000)
        return "\(micros / 1_000_000)." + String(repeating: "0", count: 6 - fraction.count) + fraction
    }

    private func handle(_ request: Request, context: Context) async throws -> Response {
        if let preflight = cors.preflight(request) { return preflight }
        let path = RouteMap.canonical(request.uri.path)
        switch (request.method, path) {
        case (.get, "/health"), (.head, "/health"):
            return try JSONResponse.make(["status": true])
        case (.get, "/health/db"):
            return try await ServiceProxy.response(from: try await proxy.forward(request, path: path, to: .auth, identity: nil))
        case (.get, "/api/version"):
            return try JSONResponse.make(["version": SkiffVersion.openWebUI, "deployment_id": ""])
        case (.get, "/openapi.json"):
            return try JSONResponse.make(await openAPI.build())
        case (.get, "/api/changelog"):
            return JSONResponse.text(changelog)
        case (.get, "/api/version/updates"), (.get, "/api/v1/terminals"), (.get, "/api/v1/terminals/"):
            // Routes no service owns, for signed-in, verified callers: no update check (ENABLE_VERSION_UPDATE_CHECK
            // is off) and no terminal servers.
            guard let caller = try await authenticator.identify(request, path: path) else { throw APIError.notAuthenticated }
            guard caller.isVerified else { throw APIError.accessProhibited }
            if path == "/api/version/updates" {
                return try JSONResponse.make(["current": SkiffVersion.openWebUI, "latest": SkiffVersion.openWebUI])
            }
            return JSONResponse.text("[]")
        case (.get, "/docs"):
            return Response(
                status: .ok, headers: [.contentType: "text/html; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: OpenAPIDocument.docsPage)))
        default:
            break
        }
        guard let upstream = RouteMap.upstream(for: path) else {
            if !WebApp.isAPI(path), let page = try await webApp.respond(to: request, context: context) { return page }
            throw APIError(.notFound, "Not Found")
        }
        if let length = request.headers[.contentLength].flatMap(Int.init), length > config.maxBodySize {
            throw APIError.bodyTooLarge
        }
        // Socket.IO carries its own authentication (the connect payload, `user-join`): its requests are neither
        // identified nor counted against the caller's rate limit here.
        if upstream == .realtime { return try await realtimeRequest(request, path: path) }

        let identity: Identity?
        if RouteMap.isPublic(request.method, path) {
            identity = try? await authenticator.identify(request, path: path)
        } else {
            guard let caller = try await authenticator.identify(request, path: path) else {
                throw APIError.notAuthenticated
            }
            identity = caller
        }
        if let identity { activity.record(identity.userID) }

        // Sign-in bodies are read here for the per-email limit, then forwarded as read.
        var body: ByteBuffer?
        if request.method == .post && path == "/api/v1/auths/signin" {
            let signin = try await JSONBody.collect(request)
            try await limitSignin(signin)
            body = signin
        }

        var limitHeaders = HTTPFields()
        if let identity, config.userRateLimit > 0, !identity.isAdmin || config.rateLimitAdmins {
            let (count, reset) = try await limiter.hit(key: RateLimiter.userKey(identity.userID), window: 60)
            limitHeaders[RateLimitHeader.limit] = String(config.userRateLimit)
            limitHeaders[RateLimitHeader.remaining] = String(max(0, config.userRateLimit - count))
            limitHeaders[RateLimitHeader.reset] = String(reset)
            if count > config.userRateLimit {
                var error = APIError(.tooManyRequests, ErrorText.rateLimited)
                error.headers = limitHeaders
                error.headers[.retryAfter] = String(reset)
                throw error
            }
        }

        let upstreamResponse = try await proxy.forward(request, path: path, to: upstream, identity: identity, body: body)
        var response = try await ServiceProxy.response(from: upstreamResponse)
        if let hint = response.headers[InternalHeader.invalidate] {
            cache.apply(hint: hint)
            response.headers[InternalHeader.invalidate] = nil
        }
        for field in limitHeaders { response.headers[field.name] = field.value }
        return response
    }

    /// Engine.IO's own error form (a JSON string as plain text), which Socket.IO clients expect.
    static func invalidSession(_ sid: String) -> Response {
        Response(
            status: .badRequest, headers: [.contentType: "text/plain; charset=UTF-8"],
            body: .init(byteBuffer: ByteBuffer(string: JSONValue.string("Invalid session \(sid)").jsonText)))
    }

    /// A Socket.IO request goes to the replica holding its session (a session none holds is unknown); a new
    /// session to the next live replica that answers.
    private func realtimeRequest(_ request: Request, path: String) async throws -> Response {
        if let sid = request.uri.queryParameters["sid"].map(String.init), !sid.isEmpty {
            guard let url = await realtime.url(forSession: sid) else { return Self.invalidSession(sid) }
            do {
                return try await ServiceProxy.response(
                    from: try await proxy.forward(request, path: path, to: .realtime, identity: nil, baseURL: url))
            } catch let error as APIError where error.status == .serviceUnavailable {
                // The replica holding the session is gone: so is the session. (The client's own errors, such as
                // a body over the limit, are answered as they are and say nothing about the replica.)
                realtime.markUnreachable(url)
                return Self.invalidSession(sid)
            }
        }
        // The body is read once: each replica tried is sent the same.
        var body: ByteBuffer?
        if request.headers[.contentLength].flatMap(Int.init) ?? 0 > 0 || request.headers[.transferEncoding] != nil {
            body = try await JSONBody.collect(request, limit: ServiceProxy.bufferedBodyLimit)
        }
        var failure: Error = APIError.unavailable
        for url in await realtime.handshakeURLs() {
            do {
                return try await ServiceProxy.response(
                    from: try await proxy.forward(
                        request, path: path, to: .realtime, identity: nil, body: body, baseURL: url))
            } catch let error as APIError where error.status == .serviceUnavailable {
                realtime.markUnreachable(url)
                failure = error
            }
        }
        throw failure
    }

    /// Sign-in attempts per lower-cased email; every attempt counts, as in the real server.
    private func limitSignin(_ body: ByteBuffer) async throws {
        guard let object = try? JSONDecoder().decode(JSONValue.self, from: Data(buffer: body)),
            let email = object["email"]?.stringValue
        else { return }
        let (count, _) = try await limiter.hit(key: RateLimiter.signinKey(email: email), window: config.signinWindow)
        if count > config.signinLimit { throw APIError(.tooManyRequests, ErrorText.rateLimited) }
    }
}
