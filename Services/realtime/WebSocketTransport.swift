// The websocket transport, on the event loop: the upgrade (direct, or from polling with the 2probe/3probe/5
// exchange), frames in and out. An idle connection holds no task, only its channel and session; each burst of
// client packets is handled by one short task, in order.
import Foundation
import HummingbirdCore
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOWebSocket
import Shared

enum WebSocketTransport {
    /// Upgrades `/ws/socket.io/?EIO=4&transport=websocket[&sid=...]` that came through a gateway (it carries the
    /// internal secret); anything else goes on to the HTTP routes, which answer Engine.IO's errors.
    static func upgrader(connections: Connections, settings: EngineSettings, internalSecret: String)
        -> NIOTypedWebSocketServerUpgrader<UpgradableHTTPChannel.Outcome>
    {
        NIOTypedWebSocketServerUpgrader(
            maxFrameSize: settings.maxPayload,
            shouldUpgrade: { channel, head in
                let accepted = phase(for: head, connections: connections, internalSecret: internalSecret) != nil
                return channel.eventLoop.makeSucceededFuture(accepted ? HTTPHeaders() : nil)
            },
            upgradePipelineHandler: { channel, head in
                channel.eventLoop.makeCompletedFuture {
                    guard let phase = phase(for: head, connections: connections, internalSecret: internalSecret) else {
                        throw ChannelError.inputClosed
                    }
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.addHandler(
                        NIOWebSocketFrameAggregator(
                            minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 1024,
                            maxAccumulatedFrameSize: settings.maxPayload))
                    try pipeline.addHandler(
                        EngineWebSocketHandler(phase: phase, connections: connections, settings: settings))
                    return .upgraded
                }
            })
    }

    /// What the connection starts as: a new session, or the upgrade of a polling session this replica holds.
    static func phase(for head: HTTPRequestHead, connections: Connections, internalSecret: String)
        -> EngineWebSocketHandler.Phase?
    {
        let uri = URI(head.uri)
        guard uri.path == "/ws/socket.io" || uri.path == "/ws/socket.io/",
            let given = head.headers.first(name: InternalHeader.secret.rawName),
            constantTimeEqual(given, internalSecret)
        else { return nil }
        let query = EngineQuery(uri)
        guard query.transport == "websocket" else { return nil }
        if let sid = query.sid {
            guard let session = connections.session(sid), !session.isUpgraded else { return nil }
            return .probing(session)
        }
        return query.eio == "4" ? .fresh : nil
    }
}

/// Writes a session's packets to its websocket, in the order they were sent.
struct ChannelSink: PacketSink {
    let channel: any Channel

    func write(_ packet: String) {
        let channel = self.channel
        // Always through the loop's queue, so that a write made on the loop cannot overtake earlier ones.
        channel.eventLoop.execute {
            let frame = WebSocketFrame(fin: true, opcode: .text, data: channel.allocator.buffer(string: packet))
            channel.writeAndFlush(frame, promise: nil)
        }
    }

    func finish() {
        let channel = self.channel
        channel.eventLoop.execute {
            var code = channel.allocator.buffer(capacity: 2)
            code.write(webSocketErrorCode: .normalClosure)
            channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .connectionClose, data: code)).whenComplete { _ in
                channel.close(promise: nil)
            }
        }
    }
}

/// The client's packets of one connection, handled one after another by a task that runs only while some wait.
/// At most `limit` packets and `byteLimit` bytes wait; a client that sends more is disconnected.
final class Inbox: Sendable {
    static let limit = 1024
    static let byteLimit = 16 << 20
    private struct Queue {
        var packets: [String] = []
        var head = 0
        var bytes = 0
        var running = false
    }
    private let state = NIOLockedValueBox(Queue())

    /// Queues a packet; false when the client has sent more than the replica keeps waiting.
    func push(_ packet: String, session: EngineSession, connections: Connections) -> Bool {
        let start = state.withLockedValue { state -> Bool? in
            guard state.packets.count - state.head < Self.limit, state.bytes + packet.utf8.count <= Self.byteLimit else {
                return nil
            }
            state.packets.append(packet)
            state.bytes += packet.utf8.count
            defer { state.running = true }
            return !state.running
        }
        guard let start else { return false }
        if start {
            Task {
                while let next = take() {
                    if await !connections.receive(next[...], on: session) {
                        state.withLockedValue { $0 = Queue(running: $0.running) }
                    }
                }
            }
        }
        return true
    }

    private func take() -> String? {
        state.withLockedValue { state in
            guard state.head < state.packets.count else {
                state = Queue()
                return nil
            }
            let packet = state.packets[state.head]
            state.head += 1
            state.bytes -= packet.utf8.count
            return packet
        }
    }
}

final class EngineWebSocketHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    enum Phase {
        /// A new session, opened when the handler is added.
        case fresh
        /// A polling session being upgraded: waiting for `2probe`, then `5`.
        case probing(EngineSession)
        case attached(EngineSession)
    }

    private var phase: Phase
    private let connections: Connections
    private let settings: EngineSettings
    private let inbox = Inbox()

    init(phase: Phase, connections: Connections, settings: EngineSettings) {
        self.phase = phase
        self.connections = connections
        self.settings = settings
    }

    func handlerAdded(context: ChannelHandlerContext) {
        guard case .fresh = phase else { return }
        let session = connections.open(transport: .websocket)
        session.attachWebSocket(ChannelSink(channel: context.channel))
        session.send(settings.openPacket(sid: session.sid, upgrades: []))
        phase = .attached(session)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text:
            received(String(buffer: frame.unmaskedData), context: context)
        case .ping:
            let pong = WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case .connectionClose:
            var code = context.channel.allocator.buffer(capacity: 2)
            code.write(webSocketErrorCode: .normalClosure)
            let close = WebSocketFrame(fin: true, opcode: .connectionClose, data: code)
            context.writeAndFlush(wrapOutboundOut(close)).whenComplete { [channel = context.channel] _ in
                channel.close(promise: nil)
            }
        default:
            break  // binary (Open WebUI's clients send none), pongs
        }
    }

    private func received(_ text: String, context: ChannelHandlerContext) {
        switch phase {
        case .fresh:
            break
        case .probing(let session):
            if text == "2probe" {
                let probe = WebSocketFrame(fin: true, opcode: .text, data: context.channel.allocator.buffer(string: "3probe"))
                context.writeAndFlush(wrapOutboundOut(probe), promise: nil)
                session.releasePoll()
            } else if text == "5" {
                session.attachWebSocket(ChannelSink(channel: context.channel))
                phase = .attached(session)
            } else {
                context.close(promise: nil)
            }
        case .attached(let session):
            if !inbox.push(text, session: session, connections: connections) { context.close(promise: nil) }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        // A failed upgrade probe leaves the polling session as it was; a websocket session ends with its socket.
        if case .attached(let session) = phase {
            let connections = self.connections
            Task { await connections.end(session, reason: .transportClose, notify: false) }
        }
        context.fireChannelInactive()
    }

    /// The replica is stopping: the session ends with a close packet, so the client reconnects elsewhere.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            let connections = self.connections
            switch phase {
            case .attached(let session):
                Task { await connections.end(session, reason: .serverClose, notify: true) }  // closes the socket
            case .probing(let session):
                Task { await connections.end(session, reason: .serverClose, notify: true) }
                context.close(promise: nil)
            case .fresh:
                context.close(promise: nil)
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
