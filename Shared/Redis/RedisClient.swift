// A Redis client over one pipelined connection that reconnects by itself after Redis restarts.
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Where Redis is: parsed from `REDIS_URL` (`redis://[:password@]host[:port][/db]`).
public struct RedisAddress: Sendable {
    public var host: String
    public var port: Int
    public var database: Int
    public var password: String?

    public init(url: String) throws {
        guard let components = URLComponents(string: url), components.scheme == "redis" else {
            throw ConfigurationError("REDIS_URL must be a redis:// URL")
        }
        host = components.host ?? "127.0.0.1"
        port = components.port ?? 6379
        database = Int(components.path.trimmingCharacters(in: CharacterSet(charactersIn: "/"))) ?? 0
        password = components.password?.removingPercentEncoding
    }
}

/// Sends commands to Redis. Concurrent callers share one connection, pipelined; a lost connection is
/// replaced on the next command, so the client recovers once Redis is back.
public final class RedisClient: Sendable {
    public let address: RedisAddress
    private let group: any EventLoopGroup
    private let onPush: (@Sendable (RESPValue) -> Void)?
    private let channel = NIOLockedValueBox<EventLoopFuture<any Channel>?>(nil)

    public init(
        address: RedisAddress, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        onPush: (@Sendable (RESPValue) -> Void)? = nil
    ) {
        self.address = address
        self.group = group
        self.onPush = onPush
    }

    public convenience init(url: String, onPush: (@Sendable (RESPValue) -> Void)? = nil) throws {
        self.init(address: try RedisAddress(url: url), onPush: onPush)
    }

    /// Sends one command and returns its reply; an error reply throws `RedisError`.
    /// A command that gets no reply within `timeout` closes the connection and throws.
    @discardableResult
    public func send(_ arguments: [String], timeout: TimeAmount = .seconds(5)) async throws -> RESPValue {
        let channel = try await currentChannel().get()
        let promise = channel.eventLoop.makePromise(of: RESPValue.self)
        let deadline = channel.eventLoop.scheduleTask(in: timeout) {
            // A later completion of an already failed promise is ignored by NIO, so both are safe.
            promise.fail(RedisError("no reply within the timeout"))
            channel.close(promise: nil)
        }
        promise.futureResult.whenComplete { _ in deadline.cancel() }
        // A write on a channel that already closed never reaches our handler: fail the reply then too.
        channel.writeAndFlush(RedisRequest(arguments: arguments, promise: promise)).whenFailure { error in
            promise.fail(error)
        }
        let value = try await promise.futureResult.get()
        if case .error(let message) = value { throw RedisError(message) }
        return value
    }

    @discardableResult
    public func send(_ arguments: String...) async throws -> RESPValue {
        try await send(arguments)
    }

    /// Sends a command whose replies arrive as pushes (SUBSCRIBE), without waiting for them.
    public func sendWithoutReply(_ arguments: [String]) async throws {
        let channel = try await currentChannel().get()
        try await channel.writeAndFlush(RedisRequest(arguments: arguments, promise: nil))
    }

    /// Waits until the current connection closes (used by the pub/sub subscriber to resubscribe).
    public func waitUntilClosed() async throws {
        let channel = try await currentChannel().get()
        try await channel.closeFuture.get()
    }

    /// Closes the connection; the next command opens a new one.
    public func close() async {
        let current = channel.withLockedValue { value -> EventLoopFuture<any Channel>? in
            defer { value = nil }
            return value
        }
        if let channel = try? await current?.get() { try? await channel.close() }
    }

    private func currentChannel() -> EventLoopFuture<any Channel> {
        channel.withLockedValue { current in
            if let current { return current }
            let future = connect()
            current = future
            future.whenComplete { [weak self] result in
                switch result {
                case .success(let channel):
                    channel.closeFuture.whenComplete { _ in self?.forget(future) }
                case .failure:
                    self?.forget(future)
                }
            }
            return future
        }
    }

    private func forget(_ future: EventLoopFuture<any Channel>) {
        channel.withLockedValue { current in
            if current === future { current = nil }
        }
    }

    private func connect() -> EventLoopFuture<any Channel> {
        let onPush = self.onPush
        let address = self.address
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(.seconds(2))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RedisConnectionHandler(onPush: onPush))
                }
            }
        return bootstrap.connect(host: address.host, port: address.port).flatMap { channel in
            var setup: [[String]] = []
            if let password = address.password { setup.append(["AUTH", password]) }
            if address.database != 0 { setup.append(["SELECT", String(address.database)]) }
            let replies = setup.map { arguments -> EventLoopFuture<RESPValue> in
                let promise = channel.eventLoop.makePromise(of: RESPValue.self)
                channel.writeAndFlush(RedisRequest(arguments: arguments, promise: promise), promise: nil)
                return promise.futureResult
            }
            return EventLoopFuture.whenAllSucceed(replies, on: channel.eventLoop).flatMapThrowing { values in
                for case .error(let message) in values {
                    channel.close(promise: nil)
                    throw RedisError(message)
                }
                return channel
            }
        }
    }
}

extension EventLoopFuture {
    fileprivate static func === (lhs: EventLoopFuture, rhs: EventLoopFuture) -> Bool {
        ObjectIdentifier(lhs) == ObjectIdentifier(rhs)
    }
}
