// CORS as the real server answers it: the caller's origin echoed with credentials allowed.
import HTTPTypes
import Hummingbird
import NIOCore

struct CORSPolicy: Sendable {
    let allowedOrigins: [String]

    func allows(_ origin: String) -> Bool {
        allowedOrigins.contains("*") || allowedOrigins.contains(origin)
    }

    static let requestMethod = HTTPField.Name("Access-Control-Request-Method")!
    static let requestHeaders = HTTPField.Name("Access-Control-Request-Headers")!

    /// The answer to a preflight request, or nil when the request is not one.
    func preflight(_ request: Request) -> Response? {
        guard request.method == .options, let origin = request.headers[.origin],
            request.headers[Self.requestMethod] != nil
        else { return nil }
        var headers: HTTPFields = [
            .vary: "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            .contentType: "text/plain; charset=utf-8",
        ]
        guard allows(origin) else {
            return Response(status: .badRequest, headers: headers, body: .init(byteBuffer: ByteBuffer(string: "Disallowed CORS origin")))
        }
        headers[.accessControlAllowOrigin] = origin
        headers[.accessControlAllowCredentials] = "true"
        headers[.accessControlAllowMethods] = "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"
        if let asked = request.headers[Self.requestHeaders] { headers[.accessControlAllowHeaders] = asked }
        headers[.accessControlMaxAge] = "600"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: "OK")))
    }

    /// Adds the CORS headers of a simple request to its response.
    func decorate(_ response: inout Response, for request: Request) {
        guard let origin = request.headers[.origin], allows(origin) else { return }
        response.headers[.accessControlAllowOrigin] = origin
        response.headers[.accessControlAllowCredentials] = "true"
        if response.headers[.vary] == nil { response.headers[.vary] = "Origin" }
    }
}
