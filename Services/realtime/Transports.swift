// The two Engine.IO transports: long-polling over HTTP and websocket (direct or upgraded from polling), and
// the background work of a replica (pings, its registration for the gateways).
import Foundation
import Hummingbird
import HummingbirdCore
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
        for packet in payload.split(separator: "\u{1e}", omittingEmptySubsequences: true) {
            guard await connections.receive(packet, on: session) else { break }
        }
        return Self.text("OK")
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
