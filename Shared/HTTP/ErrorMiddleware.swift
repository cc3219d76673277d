// Renders every error as {"detail": ...}: our APIError, Hummingbird's own errors, and anything unexpected.
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import PostgresNIO
import NIOConcurrencyHelpers

/// Turns thrown errors into the real server's error shape; 404 on a known path with another method is 405.
public struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let routeTable: RouteTable

    /// `routeTable` is filled once all routes are added (middleware must be added before them).
    public init(routeTable: RouteTable = RouteTable()) {
        self.routeTable = routeTable
    }

    public func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            return Self.render(error, request: request, logger: context.logger, knownRoutes: routeTable.routes)
        }
    }

    public static func render(
        _ error: any Error, request: Request, logger: Logger, knownRoutes: KnownRoutes
    ) -> Response {
        let apiError: APIError
        switch error {
        case let error as PostgresTransactionError where error.closureError != nil:
            // A transaction's body threw: that error is the answer, the rollback is routine.
            return render(error.closureError!, request: request, logger: logger, knownRoutes: knownRoutes)
        case let error as APIError:
            apiError = error
        case let error as PSQLError where ["22021", "22P05"].contains(error.serverInfo?[.sqlState] ?? ""):
            // Postgres refuses NUL characters in text and JSON: the client sent them, so it is the client's error.
            apiError = APIError(.badRequest, "Text must not contain NUL (\\u0000) characters.")
        case let error as HTTPError:
            switch error.status {
            case .notFound where knownRoutes.hasOtherMethod(path: request.uri.path, than: request.method):
                apiError = APIError(.methodNotAllowed, "Method Not Allowed")
            case .notFound:
                apiError = APIError(.notFound, "Not Found")
            case .contentTooLarge:
                apiError = .bodyTooLarge
            default:
                apiError = APIError(error.status, error.body ?? error.status.reasonPhrase)
            }
        case is CancellationError:
            apiError = .unavailable
        default:
            logger.error("request failed", metadata: ["error": "\(String(reflecting: error))"])
            apiError = .unavailable
        }
        var headers = apiError.headers
        headers[.contentType] = "application/json"
        let body = apiError.detailText.map { "{\"detail\":\($0)}" } ?? JSONValue.object(["detail": apiError.detail]).jsonText
        return Response(status: apiError.status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: body)))
    }
}

/// Holds the routes of a router once they are all added.
public final class RouteTable: Sendable {
    private let box = NIOLockedValueBox(KnownRoutes([]))

    public init() {}

    public var routes: KnownRoutes { box.withLockedValue { $0 } }

    public func record<Context>(_ router: Router<Context>) {
        let routes = KnownRoutes(router: router)
        box.withLockedValue { $0 = routes }
    }
}

/// The method and path patterns a router serves, used to tell 405 from 404.
public struct KnownRoutes: Sendable {
    let routes: [(method: HTTPRequest.Method, components: [Substring])]

    public init(_ routes: [(method: HTTPRequest.Method, path: String)]) {
        self.routes = routes.map { ($0.method, $0.path.split(separator: "/")) }
    }

    public init<Context>(router: Router<Context>) {
        self.init(router.routes.map { ($0.method, $0.path.description) })
    }

    public var all: [(method: HTTPRequest.Method, path: String)] {
        routes.map { ($0.method, "/" + $0.components.joined(separator: "/")) }
    }

    func hasOtherMethod(path: String, than method: HTTPRequest.Method) -> Bool {
        let parts = path.split(separator: "/")
        return routes.contains { route in
            route.method != method && route.components.count == parts.count
                && zip(route.components, parts).allSatisfy { pattern, part in
                    pattern == part || pattern.hasPrefix(":") || pattern.hasPrefix("{") || pattern == "*"
                }
        }
    }
}
