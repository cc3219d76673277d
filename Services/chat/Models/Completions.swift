// `POST /api/chat/completions` (and its aliases): the model resolved and checked, the body turned into the
// provider's, and the answer passed back as JSON or as the provider's SSE stream, unbuffered. Bodies carrying a
// socket `session_id` and a chat run as background tasks (ChatTasks).
import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import Shared

/// Calls providers and relays their answers.
struct ProviderRelay: Sendable {
    let client: HTTPClient
    let usage: UsageRecorder
    let logger: Logger
    /// `AIOHTTP_CLIENT_TIMEOUT`: how long a completion may take in all (none when unset).
    let timeout: TimeAmount?

    static let connectionError = APIError(.internalServerError, "Open WebUI: Server Connection Error")

    func execute(_ request: ProviderRequest) async throws -> HTTPClientResponse {
        do {
            return try await client.execute(request.httpRequest(), timeout: timeout ?? .hours(6))
        } catch {
            logger.info("provider unreachable", metadata: ["url": "\(request.url)", "error": "\(error)"])
            throw Self.connectionError
        }
    }

    /// A provider's error answer as the original relays it: the same status and body (JSON or text); Ollama's
    /// `error` becomes the `detail`.
    static func relayError(_ response: HTTPClientResponse, body: ByteBuffer, ollama: Bool, streamed: Bool) throws -> Response {
        let status = HTTPResponse.Status(code: Int(response.status.code))
        let parsed = try? JSONDecoder().decode(JSONValue.self, from: body)
        if ollama {
            throw APIError(status, detail: parsed?["error"] ?? .string(connectionError.detail.stringValue ?? ""))
        }
        var headers: HTTPFields = [:]
        for name in ["retry-after", "retry-after-ms"] {
            if let value = response.headers.first(name: name), let field = HTTPField.Name(name) { headers[field] = value }
        }
        if parsed != nil {
            headers[.contentType] = "application/json"
            return Response(status: status, headers: headers, body: .init(byteBuffer: body))
        }
        let text = String(buffer: body)
        if streamed {
            let wrapped = OrderedJSON.object(["error": .object(["message": .string(text), "code": .int(Int(status.code))])])
            return JSONResponse.text(wrapped, status: status, headers: headers)
        }
        headers[.contentType] = "text/plain; charset=utf-8"
        return Response(status: status, headers: headers, body: .init(byteBuffer: body))
    }

    /// Sends the request and answers the client: JSON, or SSE passed through as it arrives; `sources` (JSON text)
    /// go first, as the original puts them.
    func respond(_ request: ProviderRequest, user: Identity, sources: String? = nil) async throws -> Response {
        let response = try await execute(request)
        let contentType = response.headers.first(name: "content-type") ?? ""
        if response.status.code >= 400 {
            let body = try await collect(response)
            return try Self.relayError(response, body: body, ollama: request.ollama, streamed: contentType.contains("event-stream"))
        }
        let streamed = request.ollama ? request.stream : contentType.contains("text/event-stream")
        guard streamed else {
            let body = try await collect(response)
            let parsed = try? JSONDecoder().decode(JSONValue.self, from: body)
            let reported = request.ollama ? parsed.map { OllamaFormat.usage($0).value } : parsed?["usage"]
            usage.record(user: user.userID, model: request.requestedModel, usage: reported)
            let text = request.ollama ? OllamaFormat.completion(parsed ?? .null) : String(buffer: body)
            if let sources, text.hasPrefix("{") {
                let rest = text.dropFirst().drop { $0.isWhitespace }
                return JSONResponse.text("{\"sources\":" + sources + (rest.hasPrefix("}") ? "" : ",") + rest)
            }
            if request.ollama { return JSONResponse.text(text) }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: body))
        }
        let recorder = usage
        let logger = logger
        return Response(
            status: .ok, headers: [.contentType: "text/event-stream; charset=utf-8", .cacheControl: "no-cache"],
            body: ResponseBody { writer in
                var lines = LineSplitter()
                var converter = OllamaFormat.StreamConverter()
                var lastUsage: JSONValue?
                var upstreamFailed = false
                if let sources { try await writer.write(ByteBuffer(string: "data: {\"sources\":" + sources + "}\n\n")) }
                var iterator = response.body.makeAsyncIterator()
                while true {
                    let chunk: ByteBuffer?
                    do {
                        chunk = try await iterator.next()
                    } catch {
                        logger.info("provider stream broke off", metadata: ["error": "\(error)"])
                        upstreamFailed = true
                        break
                    }
                    guard let chunk else { break }
                    if request.ollama {
                        var out = ByteBuffer()
                        for line in lines.feed(chunk) {
                            guard let value = JSONValue.parse(line), let event = converter.chunk(for: value) else { continue }
                            if let usage = event.usage { lastUsage = usage.value }
                            out.writeString(event.text)
                        }
                        if out.readableBytes > 0 { try await writer.write(out) }
                    } else {
                        for line in lines.feed(chunk) where line.contains("\"usage\"") {
                            if let usage = SSE.json(line)?["usage"], usage != .null { lastUsage = usage }
                        }
                        // The provider's bytes go out as they came, whatever the lines hold.
                        try await writer.write(chunk)
                    }
                }
                if request.ollama, !upstreamFailed { try await writer.write(ByteBuffer(string: "data: [DONE]\n\n")) }
                if upstreamFailed {
                    try await writer.write(
                        ByteBuffer(string: "\n\ndata: {\"error\": {\"message\": \"Chat completion stream failed\"}}\n\ndata: [DONE]\n\n"))
                }
                recorder.record(user: user.userID, model: request.requestedModel, usage: lastUsage)
                try await writer.finish(nil)
            })
    }

    func collect(_ response: HTTPClientResponse) async throws -> ByteBuffer {
        do {
            return try await response.body.collect(upTo: 64 << 20)
        } catch {
            throw Self.connectionError
        }
    }
}

/// Splits a byte stream into lines (without `\n` or `\r\n`), keeping an unfinished line's bytes for the next
/// chunk, so a character split across chunks stays whole. A line longer than `limit` bytes is dropped.
struct LineSplitter {
    var pending: [UInt8] = []
    var overflowed = false
    static let limit = 16 << 20

    mutating func feed(_ chunk: ByteBuffer) -> [String] {
        var lines: [String] = []
        chunk.withUnsafeReadableBytes { bytes in
            var start = bytes.startIndex
            for index in bytes.indices where bytes[index] == 0x0A {
                if !overflowed {
                    pending.append(contentsOf: bytes[start..<index])
                    if pending.last == 0x0D { pending.removeLast() }
                    lines.append(String(decoding: pending, as: UTF8.self))
                }
                pending.removeAll(keepingCapacity: true)
                overflowed = false
                start = index + 1
            }
            if !overflowed { pending.append(contentsOf: bytes[start..<bytes.endIndex]) }
            if pending.count > Self.limit {
                pending.removeAll()
                overflowed = true
            }
        }
        return lines
    }
}

enum SSE {
    /// The JSON of a `data: {...}` line; nil for other lines and `[DONE]`.
    static func json(_ line: String) -> JSONValue? {
        guard line.hasPrefix("data:") else { return nil }
        let payload = line.dropFirst(5).trimmingCharacters(in: .whitespaces)
        guard payload.hasPrefix("{") else { return nil }
        return JSONValue.parse(payload)
    }
}

struct CompletionsController {
    let registry: ModelRegistry
    let settings: ProviderSettingsStore
    let relay: ProviderRelay
    let tasks: ChatTasks
    let rag: RAG

    var routes: RouteCollection<ServiceRequestContext> {
        let routes = RouteCollection(context: ServiceRequestContext.self)
        routes.post("completions", use: complete)
        return routes
    }

    static let bodyLimit = 64 << 20

    /// The body as a JSON object; anything else is FastAPI's 422 for a body that is not a dict.
    static func object(_ request: Request) async throws -> [String: JSONValue] {
        try await JSONBody.object(request, limit: bodyLimit)
    }

    @Sendable func complete(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let user = try context.requireVerified()
        var body = try await Self.object(request)
        guard let modelID = body["model"]?.stringValue else { throw ModelRegistry.notFound }
        let (entry, base) = try await registry.resolve(modelID, for: user)
        let current = try await settings.current()
        if let session = body["session_id"]?.stringValue, !session.isEmpty,
            (body["chat_id"]?.stringValue.map { !$0.isEmpty } ?? false) || (body.keys.contains("parent_id") && body["parent_id"] == .null)
        {
            return try await tasks.start(body: body, entry: entry, base: base, settings: current, user: user, session: session)
        }
        if let messages = MessageReplay.messages(for: body) { body["messages"] = .array(messages) }
        let sources = await rag.sourcesOrNone(for: body, user: user)
        if let sources { RAG.apply(sources.value, to: &body) }
        let prepared = try ProviderRequest.make(body: body, entry: entry, base: base, settings: current, user: user)
        return try await relay.respond(prepared, user: user, sources: sources?.text)
    }
}
