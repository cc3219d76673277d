// Pub/sub on a dedicated connection, resubscribing after every reconnect.
import Foundation
import Logging
import NIOCore
import ServiceLifecycle

/// One message received on a subscribed channel.
public struct PubSubMessage: Sendable {
    public var channel: String
    public var payload: String
}

/// Subscribes to channels and delivers their messages to `handler`, for as long as the service runs.
public struct RedisSubscriber: Service {
    let address: RedisAddress
    let channels: [String]
    let logger: Logger
    let handler: @Sendable (PubSubMessage) async -> Void

    public init(
        address: RedisAddress, channels: [String], logger: Logger,
        handler: @escaping @Sendable (PubSubMessage) async -> Void
    ) {
        self.address = address
        self.channels = channels
        self.logger = logger
        self.handler = handler
    }

    public func run() async throws {
        let (stream, continuation) = AsyncStream.makeStream(of: PubSubMessage.self, bufferingPolicy: .bufferingNewest(10_000))
        let handler = self.handler
        async let delivery: Void = {
            for await message in stream { await handler(message) }
        }()
        let client = RedisClient(address: address) { value in
            guard let parts = value.array, parts.count == 3, parts[0].string == "message",
                let channel = parts[1].string, let payload = parts[2].string
            else { return }
            continuation.yield(PubSubMessage(channel: channel, payload: payload))
        }
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                while !Task.isShuttingDownGracefully && !Task.isCancelled {
                    do {
                        try await client.sendWithoutReply(["SUBSCRIBE"] + channels)
                        try await client.waitUntilClosed()
                    } catch {
                        logger.debug("pub/sub connection lost", metadata: ["error": "\(error)"])
                    }
                    try? await Task.sleep(for: .milliseconds(500))
                }
            } onGracefulShutdown: {
                Task { await client.close() }
            }
        } onCancel: {
            Task { await client.close() }
        }
        continuation.finish()
        await delivery
    }
}
