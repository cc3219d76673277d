// An HTTP/1.1 server channel for Hummingbird that can hand a connection over to another protocol (websocket)
// whose handlers then run on the event loop alone: no task stays attached to an upgraded connection, which is
// what keeps an idle websocket to a few kilobytes. Requests that ask for no upgrade go to the ordinary
// Hummingbird responder; an upgrade an upgrader refuses gets a fixed answer (see `Outcome.refused`).
import HTTPTypes
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1

public struct UpgradableHTTPChannel: ServerChildChannel, HTTPChannelHandler {
    /// What became of a connection: handed over to its upgrader's handlers, or ordinary HTTP.
    public enum Outcome: Sendable {
        case upgraded
        case http(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        /// An upgrader was asked and refused: NIO does not pass such a request on to the HTTP side intact, so it
        /// gets `refusal` and the connection closes.
        case refused(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
    }

    /// The answer to a refused upgrade.
    public struct Refusal: Sendable {
        public var status: HTTPResponse.Status
        public var contentType: String
        public var body: String

        public init(status: HTTPResponse.Status = .badRequest, contentType: String, body: String) {
            self.status = status
            self.contentType = contentType
            self.body = body
        }
    }

    public struct Value: ServerChildChannelValue {
        let outcome: EventLoopFuture<Outcome>
        public let channel: any Channel
    }

    /// Makes the upgraders offered on a new connection.
    public typealias Upgraders = @Sendable (any Channel) -> [any NIOTypedHTTPServerProtocolUpgrader<Outcome>]

    public let responder: HTTPChannelHandler.Responder
    let upgraders: Upgraders
    let configuration: HTTP1Channel.Configuration
    let refusal: Refusal

    /// The builder to pass as `server:` to Hummingbird's `Application`.
    public static func builder(
        configuration: HTTP1Channel.Configuration = .init(), refusal: Refusal, upgraders: @escaping Upgraders
    ) -> HTTPServerBuilder {
        HTTPServerBuilder { responder in
            UpgradableHTTPChannel(responder: responder, upgraders: upgraders, configuration: configuration, refusal: refusal)
        }
    }

    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let configuration = self.configuration
            let attempted = NIOLoopBoundBox(false, eventLoop: channel.eventLoop)
            let upgrade = NIOTypedHTTPServerUpgradeConfiguration<Outcome>(
                upgraders: upgraders(channel).map { Tracked(inner: $0, attempted: attempted) },
                notUpgradingCompletionHandler: { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let pipeline = channel.pipeline.syncOperations
                        try pipeline.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                        try pipeline.addHandlers(configuration.additionalChannelHandlers())
                        try pipeline.addHandler(
                            HTTPConnectionStateHandler(idleTimeout: configuration.idleTimeout.map { .init($0) }, logger: logger))
                        let http = try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                            wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
                        return attempted.value ? .refused(http) : .http(http)
                    }
                })
            var pipelineConfiguration = NIOUpgradableHTTPServerPipelineConfiguration<Outcome>(upgradeConfiguration: upgrade)
            pipelineConfiguration.enablePipelining = false  // NIOAsyncChannel takes one request at a time
            pipelineConfiguration.enableErrorHandling = false  // Hummingbird answers errors
            pipelineConfiguration.enableResponseHeaderValidation = false  // HTTPTypes validated them
            pipelineConfiguration.decoderConfiguration.maxHeaderFieldSize = configuration.httpDecoder.maxHeaderFieldSize
            pipelineConfiguration.decoderConfiguration.maxHeaderListSize = configuration.httpDecoder.maxHeaderListSize
            pipelineConfiguration.decoderConfiguration.maxHeaderFieldCount = configuration.httpDecoder.maxHeaderFieldCount
            let outcome = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(
                configuration: pipelineConfiguration)
            return Value(outcome: outcome, channel: channel)
        }
    }

    public func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.outcome.get() {
            case .http(let channel): await handleHTTP(asyncChannel: channel, logger: logger)
            case .upgraded: break  // the upgrader's handlers own the connection from here
            case .refused(let channel):
                try await channel.executeThenClose { _, outbound in
                    let body = ByteBuffer(string: refusal.body)
                    let head = HTTPResponse(
                        status: refusal.status,
                        headerFields: [
                            .contentType: refusal.contentType, .contentLength: String(body.readableBytes), .connection: "close",
                        ])
                    try await outbound.write(contentsOf: [.head(head), .body(body), .end(nil)])
                }
            }
        } catch {
            logger.debug("connection ended before its first request", metadata: ["error": "\(error)"])
        }
    }
}

/// An upgrader that notes it was asked, so that a refusal can be told from a plain HTTP request.
private struct Tracked: NIOTypedHTTPServerProtocolUpgrader {
    typealias UpgradeResult = UpgradableHTTPChannel.Outcome
    let inner: any NIOTypedHTTPServerProtocolUpgrader<UpgradableHTTPChannel.Outcome>
    let attempted: NIOLoopBoundBox<Bool>

    var supportedProtocol: String { inner.supportedProtocol }
    var requiredUpgradeHeaders: [String] { inner.requiredUpgradeHeaders }

    func buildUpgradeResponse(channel: any Channel, upgradeRequest: HTTPRequestHead, initialResponseHeaders: HTTPHeaders)
        -> EventLoopFuture<HTTPHeaders>
    {
        attempted.value = true
        return inner.buildUpgradeResponse(
            channel: channel, upgradeRequest: upgradeRequest, initialResponseHeaders: initialResponseHeaders)
    }

    func upgrade(channel: any Channel, upgradeRequest: HTTPRequestHead) -> EventLoopFuture<UpgradableHTTPChannel.Outcome> {
        inner.upgrade(channel: channel, upgradeRequest: upgradeRequest)
    }
}
