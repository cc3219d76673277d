// The two Engine.IO transports: long-polling over HTTP and websocket (direct or upgraded from polling), and
// the background work of a replica (pings, its registration for the gateways).
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import Logging
import NIOCore
import ServiceLifecycle
import Shared

/// Query parameters of an Engine.IO request.
struct EngineQuery {
    var eio: String?
    var transport: String
    var sid: String?

    init(_ uri: URI) {
        let parameters = uri.queryParameters
        eio = parameters["EIO"].map(String.init)
        transport = parameters["transport"].map(String.init) ?? "polling"
        sid = parameters["sid"].flatMap { $0.isEmpty ? nil : String($0) }
    }
}

struct PollingTransport: Sendable {
    let connections: Connections
    let settings: EngineSettings

    static func text(_ body: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(
            status: status, headers: [.contentType: "text/plain; charset=UTF-8"],
            body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    /// python-engineio's errors: 400 with a JSON string.
    static func error(_ message: String) -> Response {
        text(JSONValue.string(message).jsonText, status: .badRequest)
    }

    static let unsupportedVersion =
        "The client is using an unsupported version of the Socket.IO or Engine.IO protocols"

    @Sendable func handle(_ request: Request, context: ServiceRequestContext) async throws -> Response {
        let query = EngineQuery(request.uri)
        guard query.transport == "polling", settings.allowPolling else { return Self.error("Invalid transport") }
        guard let sid = query.sid else {
            guard query.eio == "4" else { return Self.error(Self.unsupportedVersion) }
            guard request.method == .get else { return Self.error("Bad Request") }
            let session = connections.open(transport: .polling)
            return Self.text(settings.openPacket(sid: session.sid, upgrades: ["websocket"]))
        }
        guard let session = connections.session(sid) else { return Self.error("Invalid session \(sid)") }
        if request.method == .get {
            switch await session.poll() {
            case .packets(let packets): return Self.text(packets.joined(separator: "\u{1e}"))
            case .closed: return Self.error("Invalid session \(sid)")
            case .upgraded: return Self.error("Unexpected HTTP request")
            }
        }
        guard !session.isUpgraded else { return Self.error("Unexpected HTTP request") }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: settings.maxPayload)
        } catch {
            await connections.end(session, reason: .transportClose, notify: true)
            return Self.error("Bad Request")
        }
        let payload = String(buffer: body)
        for packet in payload.split(separator: "\u{1e}", omittingEmptySubsequences: true).prefix(16) {
            guard await connections.receive(packet, on: session) else { break }
        }
        return Self.text("OK")
    }
}

struct WebSocketTransport: Sendable {
    let connections: Connections
    let settings: EngineSettings
    let internalSecret: String

    /// Upgrades `/ws/socket.io/?EIO=4&transport=websocket[&sid=...]` that came through a gateway; anything
    /// else goes on to the HTTP routes (which answer the Engine.IO errors).
    func shouldUpgrade(_ head: HTTPRequest) -> ShouldUpgradeResult<WebSocketDataHandler<HTTP1WebSocketUpgradeChannel.Context>> {
        let uri = URI(head.path ?? "")
        guard uri.path == "/ws/socket.io" || uri.path == "/ws/socket.io/",
            let given = head.headerFields[InternalHeader.secret], constantTimeEqual(given, internalSecret)
        else { return .dontUpgrade }
        let query = EngineQuery(uri)
        guard query.transport == "websocket" else { return .dontUpgrade }
        let connections = self.connections
        let settings = self.settings
        if let sid = query.sid {
            guard let session = connections.session(sid), !session.isUpgraded else { return .dontUpgrade }
            return .upgrade([:]) { inbound, outbound, _ in
                try await Self.upgrade(session, inbound, outbound, connections: connections, settings: settings)
            }
        }
        guard query.eio == "4" else { return .dontUpgrade }
        return .upgrade([:]) { inbound, outbound, _ in
            let session = connections.open(transport: .websocket)
            let stream = session.attachWebSocket()
            session.send(settings.openPacket(sid: session.sid, upgrades: []))
            try await Self.run(
                session, stream, inbound.messages(maxSize: settings.maxPayload).makeAsyncIterator(), outbound,
                connections: connections)
        }
    }

    /// The polling-to-websocket upgrade: `2probe` answered with `3probe`, then `5` moves the session over.
    static func upgrade(
        _ session: EngineSession, _ inbound: WebSocketInboundStream, _ outbound: WebSocketOutboundWriter,
        connections: Connections, settings: EngineSettings
    ) async throws {
        var messages = inbound.messages(maxSize: settings.maxPayload).makeAsyncIterator()
        guard case .text("2probe")? = try await messages.next() else { return }
        try await outbound.write(.text("3probe"))
        session.releasePoll()
        guard case .text("5")? = try await messages.next() else { return }
        let stream = session.attachWebSocket()
        try await run(session, stream, messages, outbound, connections: connections)
    }

    /// Writes the session's packets and reads the client's until either side ends.
    static func run(
        _ session: EngineSession, _ stream: AsyncStream<String>,
        _ messages: WebSocketInboundMessageStream.AsyncIterator, _ outbound: WebSocketOutboundWriter,
        connections: Connections
    ) async throws {
        // The writer sends what the session queues; when the session ends (ping timeout, server close) it
        // closes the websocket, which ends the reading loop below.
        let writer = Task {
            for await packet in stream {
                do { try await outbound.write(.text(packet)) } catch { break }
            }
            try? await outbound.close(.normalClosure, reason: nil)
        }
        var messages = messages
        while let message = try? await messages.next() {
            guard case .text(let text) = message else { continue }
            if await !connections.receive(text[...], on: session) { break }
        }
        await connections.end(session, reason: .transportClose, notify: false)
        writer.cancel()
        await writer.value
    }
}

/// Sends the server's pings; on shutdown tells every client to go, so they reconnect to another replica.
struct PingService: Service {
    let connections: Connections

    func run() async throws {
        await cancelWhenGracefulShutdown { await connections.runPings() }
        await connections.closeAll()
    }
}

/// Keeps this replica in the gateways' registry while it runs.
struct ReplicaRegistration: Service {
    let redis: RedisClient
    let replicaID: String
    let url: String
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    _ = try await redis.send(["HSET", RealtimeReplicas.key, replicaID, RealtimeReplicas.entry(url: url)])
                } catch {
                    logger.warning("replica registration failed", metadata: ["error": "\(error)"])
                }
                try? await Task.sleep(for: .seconds(5))
            }
        }
        _ = try? await redis.send(["HDEL", RealtimeReplicas.key, replicaID])
    }
}
