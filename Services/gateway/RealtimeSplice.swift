// Socket.IO over websocket through the gateway, as a reverse proxy does it: the client's upgrade request goes to
// the realtime replica that holds (or will hold) the session; when the replica switches protocols, its 101
// answer goes back to the client and from then on the two connections are joined byte for byte on one event
// loop. No frame is parsed and no task is kept per connection.
import Crypto
import Foundation
import HummingbirdCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import Shared

final class RealtimeSplice: NIOTypedHTTPServerProtocolUpgrader, Sendable {
    typealias UpgradeResult = UpgradableHTTPChannel.Outcome

    let supportedProtocol = "websocket"
    let requiredUpgradeHeaders: [String] = []

    let realtime: RealtimeRoutes
    let internalSecret: String
    let logger: Logger
    /// The replica connection, between its 101 and the splice (one upgrader per client connection); nil when
    /// no replica took the websocket.
    private let upstream = NIOLockedValueBox<(any Channel)?>(nil)

    init(realtime: RealtimeRoutes, internalSecret: String, logger: Logger) {
        self.realtime = realtime
        self.internalSecret = internalSecret
        self.logger = logger
    }

    struct Refused: Error {}

    func buildUpgradeResponse(channel: any Channel, upgradeRequest: HTTPRequestHead, initialResponseHeaders: HTTPHeaders)
        -> EventLoopFuture<HTTPHeaders>
    {
        let uri = URI(upgradeRequest.uri)
        guard uri.path == "/ws/socket.io" || uri.path == "/ws/socket.io/",
            uri.queryParameters["transport"].map(String.init) == "websocket"
        else { return channel.eventLoop.makeFailedFuture(Refused()) }
        let sid = uri.queryParameters["sid"].map(String.init).flatMap { $0.isEmpty ? nil : $0 }
        let request = forwardedHead(upgradeRequest, uri: uri, channel: channel)
        let promise = channel.eventLoop.makePromise(of: HTTPHeaders.self)
        promise.completeWithTask { [self] in
            if let headers = await connectReplica(
                sid: sid, request: request, channel: channel, initialResponseHeaders: initialResponseHeaders)
            {
                return headers
            }
            // No replica took it (an unknown session, none reachable). NIO cannot hand a refused upgrade back to
            // the HTTP side in this pipeline, so the websocket is accepted and closed at once: Socket.IO clients
            // take that as a lost transport and reconnect, as after python-engineio's 400.
            var headers = initialResponseHeaders
            headers.add(name: "sec-websocket-accept", value: Self.accept(key: upgradeRequest.headers.first(name: "sec-websocket-key") ?? ""))
            return headers
        }
        return promise.futureResult
    }

    /// Sends the upgrade to the replica for the session (or the next live one) and returns the headers of its
    /// 101; nil when none switched protocols.
    private func connectReplica(
        sid: String?, request: HTTPRequestHead, channel: any Channel, initialResponseHeaders: HTTPHeaders
    ) async -> HTTPHeaders? {
        let candidates: [String]
        if let sid {
            guard let url = await realtime.url(forSession: sid) else {
                logger.debug("websocket for an unknown session", metadata: ["sid": "\(sid)"])
                return nil
            }
            candidates = [url]
        } else {
            candidates = await realtime.handshakeURLs()
        }
        for replica in candidates {
            let connection: (any Channel, HTTPResponseHead)
            do {
                connection = try await Self.open(replica, request: request, on: channel.eventLoop)
            } catch {
                realtime.markUnreachable(replica)
                logger.debug("realtime replica unreachable", metadata: ["replica": "\(replica)", "error": "\(error)"])
                continue
            }
            let (upstreamChannel, head) = connection
            guard head.status == .switchingProtocols else {
                // The replica refused (an ended session, say).
                upstreamChannel.close(promise: nil)
                return nil
            }
            upstream.withLockedValue { $0 = upstreamChannel }
            // A client that goes before the splice takes the replica connection with it.
            channel.closeFuture.whenComplete { _ in upstreamChannel.close(promise: nil) }
            var headers = initialResponseHeaders
            for name in ["sec-websocket-accept", "sec-websocket-extensions", "sec-websocket-protocol"] {
                for value in head.headers[name] { headers.add(name: name, value: value) }
            }
            return headers
        }
        return nil
    }

    /// The `Sec-WebSocket-Accept` answer to a key (RFC 6455).
    static func accept(key: String) -> String {
        let digest = Insecure.SHA1.hash(data: Data((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").utf8))
        return Data(digest).base64EncodedString()
    }

    func upgrade(channel: any Channel, upgradeRequest: HTTPRequestHead) -> EventLoopFuture<UpgradeResult> {
        let taken = upstream.withLockedValue { stored -> (any Channel)? in
            defer { stored = nil }
            return stored
        }
        guard let upstreamChannel = taken else {
            // Accepted only to be closed: a close frame (1000), then the connection goes.
            let close = channel.allocator.buffer(bytes: [0x88, 0x02, 0x03, 0xE8])
            channel.writeAndFlush(close).whenComplete { _ in channel.close(promise: nil) }
            return channel.eventLoop.makeSucceededFuture(.upgraded)
        }
        return channel.eventLoop.makeCompletedFuture {
            let (client, replica) = SpliceHandler.pair()
            try channel.pipeline.syncOperations.addHandler(client)
            // The replica's pipeline: the splice goes last, then the HTTP handlers go; the decoder passes on
            // whatever the replica sent after its 101 as it leaves.
            let pipeline = upstreamChannel.pipeline.syncOperations
            try pipeline.addHandler(replica)
            guard upstreamChannel.isActive else { throw ChannelError.ioOnClosedChannel }
            for name in [ResponseHead.name, "encoder", "decoder"] { _ = pipeline.removeHandler(name: name) }
            return .upgraded
        }
    }

    /// The request for the replica: the client's, with the gateway's secret and none of its internal headers.
    private func forwardedHead(_ request: HTTPRequestHead, uri: URI, channel: any Channel) -> HTTPRequestHead {
        var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/ws/socket.io/" + (uri.query.map { "?\($0)" } ?? ""))
        for (name, value) in request.headers where !name.lowercased().hasPrefix("x-skiff-") && name.lowercased() != "host" {
            head.headers.add(name: name, value: value)
        }
        head.headers.replaceOrAdd(name: InternalHeader.secret.rawName, value: internalSecret)
        if let address = channel.remoteAddress?.ipAddress { head.headers.add(name: "X-Forwarded-For", value: address) }
        return head
    }

    /// Connects to a replica on the client's event loop and sends it the upgrade request; returns the channel
    /// and the replica's answer.
    static func open(_ base: String, request: HTTPRequestHead, on loop: any EventLoop) async throws
        -> (any Channel, HTTPResponseHead)
    {
        guard let url = URL(string: base), let host = url.host else { throw Refused() }
        let port = url.port ?? 80
        let answer = loop.makePromise(of: HTTPResponseHead.self)
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(.seconds(2))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.addHandler(HTTPRequestEncoder(), name: "encoder")
                    try pipeline.addHandler(
                        ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .forwardBytes)), name: "decoder")
                    try pipeline.addHandler(ResponseHead(answer: answer), name: ResponseHead.name)
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: host, port: port).get()
        } catch {
            answer.fail(error)
            throw error
        }
        var head = request
        head.headers.replaceOrAdd(name: "Host", value: "\(host):\(port)")
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        let timeout = loop.scheduleTask(in: .seconds(5)) { channel.close(promise: nil) }
        do {
            let response = try await answer.futureResult.get()
            timeout.cancel()
            return (channel, response)
        } catch {
            channel.close(promise: nil)
            throw error
        }
    }
}

/// Catches the replica's response head; the replica's channel closing first fails the wait.
final class ResponseHead: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    static let name = "response-head"
    let answer: EventLoopPromise<HTTPResponseHead>
    private var answered = false

    init(answer: EventLoopPromise<HTTPResponseHead>) { self.answer = answer }

    private func complete(_ result: Result<HTTPResponseHead, any Error>) {
        guard !answered else { return }
        answered = true
        answer.completeWith(result)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let head) = unwrapInboundIn(data) { complete(.success(head)) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        complete(.failure(ChannelError.ioOnClosedChannel))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        complete(.failure(error))
        context.close(promise: nil)
    }
}

/// One end of a splice: what one connection reads, the other writes. Reading pauses while the other side
/// cannot take more (backpressure); either side closing closes both.
final class SpliceHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var partner: SpliceHandler?
    private var context: ChannelHandlerContext?
    private var readPending = false

    static func pair() -> (SpliceHandler, SpliceHandler) {
        let first = SpliceHandler()
        let second = SpliceHandler()
        first.partner = second
        second.partner = first
        return (first, second)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partner = nil
    }

    /// Written and flushed at once: one read is one buffer, and what the replica's HTTP decoder passes on as
    /// it leaves (its first frames) arrives outside any read, with no read-complete to flush it.
    private func partnerWrite(_ data: NIOAny) { partner?.context?.writeAndFlush(data, promise: nil) }
    private var partnerWritable: Bool { partner?.context?.channel.isWritable ?? false }

    private func partnerClose() {
        let other = partner
        partner = nil
        other?.partner = nil
        other?.context?.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) { partnerWrite(data) }

    func channelInactive(context: ChannelHandlerContext) {
        partnerClose()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    /// The gateway is stopping: the websocket goes (its client reconnects through another gateway).
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent { context.close(promise: nil) }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.resumeRead() }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if partner == nil || partnerWritable { context.read() } else { readPending = true }
    }

    private func resumeRead() {
        guard readPending, let context else { return }
        readPending = false
        context.read()
    }
}
