// An HTTP/1.1 server channel for Hummingbird that can hand a connection over to another protocol (websocket)
// whose handlers then run on the event loop alone: no task stays attached to an upgraded connection, which is
// what keeps an idle websocket to a few kilobytes. Requests that are not upgraded (or whose upgrade the
// upgrader refuses) go to the ordinary Hummingbird responder.
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

    /// The builder to pass as `server:` to Hummingbird's `Application`.
    public static func builder(
        configuration: HTTP1Channel.Configuration = .init(), upgraders: @escaping Upgraders
    ) -> HTTPServerBuilder {
        HTTPServerBuilder { responder in
            UpgradableHTTPChannel(responder: responder, upgraders: upgraders, configuration: configuration)
        }
    }

    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let configuration = self.configuration
            let upgrade = NIOTypedHTTPServerUpgradeConfiguration<Outcome>(
                upgraders: upgraders(channel),
                notUpgradingCompletionHandler: { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let pipeline = channel.pipeline.syncOperations
                        try pipeline.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                        try pipeline.addHandlers(configuration.additionalChannelHandlers())
                        try pipeline.addHandler(
                            HTTPConnectionStateHandler(idleTimeout: configuration.idleTimeout.map { .init($0) }, logger: logger))
                        return .http(
                            try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                                wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true)))
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
            }
        } catch {
            logger.debug("connection ended before its first request", metadata: ["error": "\(error)"])
        }
    }
}
