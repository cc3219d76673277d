// The one error type handlers throw; rendered as FastAPI renders HTTPException: {"detail": ...}.
import Foundation
import HTTPTypes
import Hummingbird

/// An error with one HTTP status and one `detail`, as Open WebUI returns it.
public struct APIError: Error, Sendable {
    public var status: HTTPResponse.Status
    public var detail: JSONValue
    public var headers: HTTPFields
    /// The detail as JSON text, when its keys must keep an order (FastAPI's validation list).
    public var detailText: String?

    public init(_ status: HTTPResponse.Status, _ detail: String, headers: HTTPFields = [:]) {
        self.status = status
        self.detail = .string(detail)
        self.headers = headers
    }

    public init(_ status: HTTPResponse.Status, detail: JSONValue) {
        self.status = status
        self.detail = detail
        self.headers = [:]
    }
}

/// The `detail` texts clients compare, word for word as the real server sends them.
public enum ErrorText {
    public static let notAuthenticated = "Not authenticated"
    public static let unauthorized = "401 Unauthorized"
    public static let invalidToken = "Your session has expired or the token is invalid. Please sign in again."
    public static let accessProhibited =
        "You do not have permission to access this resource. Please contact your administrator for assistance."
    public static let notFound = "We could not find what you're looking for :/"
    public static let humanSessionRequired = "A human session is required."
    public static let rateLimited = "API rate limit exceeded"
    public static let serviceUnavailable = "Service temporarily unavailable. Please try again."
    public static let bodyTooLarge = "Request body is too large."
}

extension APIError {
    public static var notAuthenticated: APIError { APIError(.unauthorized, ErrorText.notAuthenticated) }
    public static var invalidToken: APIError { APIError(.unauthorized, ErrorText.invalidToken) }
    public static var accessProhibited: APIError { APIError(.unauthorized, ErrorText.accessProhibited) }
    public static var forbidden: APIError { APIError(.forbidden, ErrorText.accessProhibited) }
    /// 401 "401 Unauthorized": the original's answer to a caller who lacks a workspace permission.
    public static var unauthorized: APIError { APIError(.unauthorized, ErrorText.unauthorized) }
    /// 401 with the not-found text, as several of the original's plugin routes answer an unknown id.
    public static var notFoundUnauthorized: APIError { APIError(.unauthorized, ErrorText.notFound) }
    public static var notFound: APIError { APIError(.notFound, ErrorText.notFound) }
    public static var unavailable: APIError { APIError(.serviceUnavailable, ErrorText.serviceUnavailable) }
    public static var bodyTooLarge: APIError { APIError(.contentTooLarge, ErrorText.bodyTooLarge) }

    /// FastAPI's 422 for a body that fails validation: a list of `{type, loc, msg, input}`.
    public static func validation(_ items: [ValidationIssue]) -> APIError {
        var error = APIError(.unprocessableContent, detail: .array(items.map(\.json)))
        error.detailText = OrderedJSON.array(items.map(\.orderedText))
        return error
    }
}

/// One entry of FastAPI's validation error list.
public struct ValidationIssue: Sendable {
    public var type: String
    public var loc: [JSONValue]
    public var msg: String
    public var input: JSONValue
    public var ctx: JSONValue?

    public init(type: String, loc: [JSONValue], msg: String, input: JSONValue, ctx: JSONValue? = nil) {
        self.type = type
        self.loc = loc
        self.msg = msg
        self.input = input
        self.ctx = ctx
    }

    /// `{"type", "loc", "msg", "input"[, "ctx"]}` in FastAPI's order.
    var orderedText: String {
        let text = OrderedJSON.object(["type": .string(type), "loc": .array(loc), "msg": .string(msg), "input": input])
        guard let ctx else { return text }
        return String(text.dropLast()) + ",\"ctx\":" + ctx.jsonText + "}"
    }

    var json: JSONValue {
        var object: [String: JSONValue] = [
            "type": .string(type), "loc": .array(loc), "msg": .string(msg), "input": input,
        ]
        if let ctx { object["ctx"] = ctx }
        return .object(object)
    }
}
