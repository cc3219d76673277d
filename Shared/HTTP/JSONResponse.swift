// Builds JSON responses with the shared encoder.
import Foundation
import HTTPTypes
import Hummingbird

/// Encodes a value as the JSON body of a response.
public enum JSONResponse {
    public static func make<T: Encodable>(
        _ value: T, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]
    ) throws -> Response {
        let data = try JSONEncoder.skiff.encode(value)
        var fields = headers
        fields[.contentType] = "application/json"
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// Lets handlers return any `Encodable` API type directly.
public struct Encoded<T: Encodable & Sendable>: ResponseGenerator, Sendable {
    public var value: T
    public var status: HTTPResponse.Status
    public var headers: HTTPFields

    public init(_ value: T, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) {
        self.value = value
        self.status = status
        self.headers = headers
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        try JSONResponse.make(value, status: status, headers: headers)
    }
}

extension JSONResponse {
    /// JSON already encoded as bytes (as Postgres sent it), answered without a copy.
    public static func text(_ json: ByteBuffer, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        var fields = headers
        fields[.contentType] = "application/json"
        return Response(status: status, headers: fields, body: .init(byteBuffer: json))
    }

    /// A response whose JSON text was already built (Postgres builds list and chat bodies itself).
    public static func text(_ json: String, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        text(ByteBuffer(string: json), status: status, headers: headers)
    }
}
