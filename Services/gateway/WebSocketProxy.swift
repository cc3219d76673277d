// Socket.IO over websocket: the gateway accepts the client's upgrade, opens a websocket to the realtime replica
// that holds (or will hold) the session, and relays messages both ways until either side ends.
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdWSClient
import HummingbirdWebSocket
import Logging
import NIOConcurrencyHelpers
import NIOCore
import Shared

struct WebSocketProxy: Sendable {
    typealias Handler = WebSocketDataHandler<HTTP1WebSocketUpgradeChannel.Context>

    let realtime: RealtimeRoutes
    let internalSecret: String
    /// The largest message relayed, as the replicas' Engine.IO `maxPayload`.
    let maxMessageSize: Int
    let logger: Logger

    /// Upgrades `/ws/socket.io/?EIO=4&transport=websocket[&sid=...]`. A session id no live replica holds is not
    /// upgraded (the client gets a 400, as for any refused upgrade).
    func shouldUpgrade(_ head: HTTPRequest) async -> ShouldUpgradeResult<Handler> {
        let uri = URI(head.path ?? "")
        guard uri.path == "/ws/socket.io" || uri.path == "/ws/socket.io/",
            uri.queryParameters["transport"].map(String.init) == "websocket"
        else { return .dontUpgrade }
        let candidates: [String]
        if let sid = uri.queryParameters["sid"].map(String.init), !sid.isEmpty {
            guard let url = await realtime.url(forSession: sid) else { return .dontUpgrade }
            candidates = [url]
        } else {
            candidates = await realtime.handshakeURLs()
        }
        let target = "/ws/socket.io/" + (uri.query.map { "?\($0)" } ?? "")
        let proxy = self
        return .upgrade([:]) { inbound, outbound, _ in
            await proxy.relay(inbound, outbound, replicas: candidates, target: target)
        }
    }

    static func webSocketURL(_ base: String) -> String {
        if base.hasPrefix("https://") { return "wss://" + base.dropFirst(8) }
        if base.hasPrefix("http://") { return "ws://" + base.dropFirst(7) }
        return base
    }

    /// Connects to the first replica that accepts and relays; when none does, the client's socket is closed
    /// (Socket.IO clients then reconnect).
    private func relay(
        _ inbound: WebSocketInboundStream, _ outbound: WebSocketOutboundWriter, replicas: [String], target: String
    ) async {
        var headers = HTTPFields()
        headers[InternalHeader.secret] = internalSecret
        let configuration = WebSocketClientConfiguration(
            maxFrameSize: maxMessageSize, additionalHeaders: headers, closeTimeout: .seconds(5))
        for replica in replicas {
            let connected = NIOLockedValueBox(false)
            do {
                let url = Self.webSocketURL(replica) + target
                try await WebSocketClient.connect(url: url, configuration: configuration, logger: logger) {
                    upstreamInbound, upstreamOutbound, _ in
                    connected.withLockedValue { $0 = true }
                    await Self.pipe(
                        client: (inbound, outbound), upstream: (upstreamInbound, upstreamOutbound),
                        maxMessageSize: maxMessageSize)
                }
            } catch {
                if !connected.withLockedValue({ $0 }) {
                    // A refused upgrade (an ended session) says nothing about the replica; no connection does.
                    if !(error is WebSocketClientError) { realtime.markUnreachable(replica) }
                    logger.debug("realtime replica refused the websocket", metadata: ["error": "\(error)"])
                    continue
                }
            }
            if connected.withLockedValue({ $0 }) { break }
        }
        try? await outbound.close(.goingAway, reason: nil)
    }

    /// Copies messages each way. When one side ends, the other is closed, which ends its stream in turn.
    private static func pipe(
        client: (WebSocketInboundStream, WebSocketOutboundWriter),
        upstream: (WebSocketInboundStream, WebSocketOutboundWriter), maxMessageSize: Int
    ) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await copy(from: client.0, to: upstream.1, maxMessageSize: maxMessageSize)
                try? await upstream.1.close(.normalClosure, reason: nil)
            }
            group.addTask {
                await copy(from: upstream.0, to: client.1, maxMessageSize: maxMessageSize)
                try? await client.1.close(.goingAway, reason: nil)
            }
            await group.next()
            // The other direction ends when its peer answers the close; give up on it after a while.
            group.addTask { try? await Task.sleep(for: .seconds(10)) }
            await group.next()
            group.cancelAll()
        }
    }

    private static func copy(from inbound: WebSocketInboundStream, to outbound: WebSocketOutboundWriter, maxMessageSize: Int)
        async
    {
        do {
            for try await message in inbound.messages(maxSize: maxMessageSize) {
                switch message {
                case .text(let text): try await outbound.write(.text(text))
                case .binary(let bytes): try await outbound.write(.binary(bytes))
                }
            }
        } catch {
            // A reset connection or an oversized message ends the relay like a close.
        }
    }
}
