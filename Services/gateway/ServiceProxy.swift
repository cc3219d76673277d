// Forwards requests to the owning service and streams both bodies through, unbuffered.
import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import Shared

struct ServiceProxy: Sendable {
    let client: HTTPClient
    let upstreams: [Upstream: String]
    let internalSecret: String
    let maxBodySize: Int
    /// How long a service may take to start answering, and the longer allowance for model calls.
    let headTimeout: Duration
    let longHeadTimeout: Duration

    /// Headers that belong to one hop and are not forwarded.
    static let hopByHop: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "host",
    ]

    /// Bodies up to this size are read whole before forwarding (all JSON traffic); larger ones stream.
    static let bufferedBodyLimit = 8 << 20

    /// Forwards the request. A streamed body is fully handed over (or abandoned by the client) before this
    /// returns, because Hummingbird reads the connection's next request from the same stream afterwards.
    func forward(
        _ request: Request, path: String, to upstream: Upstream, identity: Identity?, body: ByteBuffer? = nil,
        baseURL: String? = nil
    ) async throws -> HTTPClientResponse {
        var body = body
        var completion: BodyCompletion?
        let length = request.headers[.contentLength].flatMap(Int.init)
        // Any method may carry a body: forward what the request has, whatever its method.
        if body == nil, (length ?? 0) > 0 || request.headers[.transferEncoding] != nil {
            if let length, length > maxBodySize { throw APIError.bodyTooLarge }
            if let length, length <= Self.bufferedBodyLimit {
                body = try await JSONBody.collect(request, limit: Self.bufferedBodyLimit)
            } else {
                completion = BodyCompletion()
            }
        }
        let response: HTTPClientResponse
        do {
            response = try await send(
                request, path: path, to: upstream, identity: identity, body: body, completion: completion, baseURL: baseURL)
        } catch {
            // A request given up on (the head timed out) may still be reading the body: let it finish first.
            if let completion { await completion.wait(upTo: .seconds(30)) }
            throw error
        }
        if let completion { await completion.wait(upTo: .seconds(30)) }
        return response
    }

    private func send(
        _ request: Request, path: String, to upstream: Upstream, identity: Identity?, body: ByteBuffer?,
        completion: BodyCompletion?, baseURL: String?
    ) async throws -> HTTPClientResponse {
        let query = request.uri.query.map { "?\($0)" } ?? ""
        var outbound = HTTPClientRequest(url: (baseURL ?? upstreams[upstream]!) + path + query)
        outbound.method = HTTPMethod(rawValue: request.method.rawValue)
        var headers = request.headers
        InternalHeader.write(identity, secret: internalSecret, into: &headers)
        for field in headers where !Self.hopByHop.contains(field.name.canonicalName) {
            outbound.headers.add(name: field.name.rawName, value: field.value)
        }
        if let body {
            outbound.headers.replaceOrAdd(name: "content-length", value: String(body.readableBytes))
            outbound.body = .bytes(body)
        } else if let completion {
            let length = request.headers[.contentLength].flatMap(Int64.init)
            outbound.body = .stream(
                LimitedBody(base: request.body, limit: maxBodySize, completion: completion),
                length: length.map { .known($0) } ?? .unknown)
        }
        let client = self.client
        let prepared = outbound
        let longRunning = RouteMap.isLongRunning(path)
        let headTimeout = longRunning ? longHeadTimeout : headTimeout
        do {
            // An ordinary route must answer within the head timeout (a service waiting on a dead database
            // answers 503 here); the client's own deadline does that without a timer task per request.
            if !longRunning {
                return try await client.execute(prepared, deadline: .now() + TimeAmount(headTimeout))
            }
            // A long-running route's head must arrive in time; its body may then stream for as long as it lasts.
            return try await withDeadline(headTimeout) { try await client.execute(prepared, deadline: .now() + .hours(2)) }
        } catch let error as APIError {
            throw error
        } catch is BodyTooLarge {
            throw APIError.bodyTooLarge
        } catch {
            throw APIError.unavailable
        }
    }

    /// Replies up to this size are read whole and sent in one write; larger ones stream.
    static let wholeReplyLimit = 256 << 10

    /// Turns an upstream reply into ours: a small reply of known length goes out in one piece, anything else
    /// streams through as it arrives.
    static func response(from upstream: HTTPClientResponse) async throws -> Response {
        var headers = HTTPFields()
        // The parsed name's canonical (lower-case) form serves the hop-by-hop check without another copy.
        for header in upstream.headers {
            guard let name = HTTPField.Name(header.name), !hopByHop.contains(name.canonicalName) else { continue }
            headers.append(HTTPField(name: name, value: header.value))
        }
        let status = HTTPResponse.Status(code: Int(upstream.status.code))
        if let length = upstream.headers.first(name: "content-length").flatMap(Int.init), length <= wholeReplyLimit {
            do {
                let body = try await upstream.body.collect(upTo: wholeReplyLimit)
                return Response(status: status, headers: headers, body: .init(byteBuffer: body))
            } catch {
                throw APIError.unavailable
            }
        }
        return Response(status: status, headers: headers, body: ResponseBody(asyncSequence: upstream.body))
    }
}

struct BodyTooLarge: Error {}

/// Signals when a streamed request body has been read to its end, failed, or been dropped.
final class BodyCompletion: Sendable {
    private let state = NIOLockedValueBox<(done: Bool, waiter: CheckedContinuation<Void, Never>?)>((false, nil))

    func finish() {
        let waiter = state.withLockedValue { state -> CheckedContinuation<Void, Never>? in
            defer { state = (true, nil) }
            return state.done ? nil : state.waiter
        }
        waiter?.resume()
    }

    func wait(upTo timeout: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withCheckedContinuation { continuation in
                    let resumeNow = self.state.withLockedValue { state -> Bool in
                        if state.done { return true }
                        state.waiter = continuation
                        return false
                    }
                    if resumeNow { continuation.resume() }
                }
            }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            self.finish()
            group.cancelAll()
        }
    }
}

/// A streamed request body that fails once more than `limit` bytes went through and reports its end.
struct LimitedBody<Base: AsyncSequence & Sendable>: AsyncSequence, Sendable where Base.Element == ByteBuffer {
    typealias Element = ByteBuffer
    let base: Base
    let limit: Int
    let completion: BodyCompletion

    struct AsyncIterator: AsyncIteratorProtocol {
        var base: Base.AsyncIterator
        let limit: Int
        let reporter: EndReporter
        var seen = 0

        mutating func next() async throws -> ByteBuffer? {
            do {
                guard let chunk = try await base.next() else {
                    reporter.completion.finish()
                    return nil
                }
                seen += chunk.readableBytes
                if seen > limit { throw BodyTooLarge() }
                return chunk
            } catch {
                reporter.completion.finish()
                throw error
            }
        }
    }

    /// Reports the end also when the HTTP client drops the iterator without reading to the end.
    final class EndReporter: Sendable {
        let completion: BodyCompletion
        init(_ completion: BodyCompletion) { self.completion = completion }
        deinit { completion.finish() }
    }

    func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: base.makeAsyncIterator(), limit: limit, reporter: EndReporter(completion))
    }
}
