// The SwiftNIO handler of one Redis connection: encodes commands with hiredis, matches replies in order.
import NIOCore

/// A command on its way to Redis, with the promise its reply fulfils (none for pub/sub subscriptions).
struct RedisRequest {
    var arguments: [String]
    var promise: EventLoopPromise<RESPValue>?
}

/// Pipelines any number of concurrent commands on one connection; replies arrive in command order.
/// Replies that no command waits for (pub/sub messages) go to `onPush`.
final class RedisConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = RedisRequest
    typealias OutboundOut = ByteBuffer

    private let reader = HiredisReader()
    private var waiting = CircularBuffer<EventLoopPromise<RESPValue>>()
    private var closed = false
    private let onPush: (@Sendable (RESPValue) -> Void)?

    init(onPush: (@Sendable (RESPValue) -> Void)?) {
        self.onPush = onPush
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        if closed {
            request.promise?.fail(RedisError("connection closed"))
            promise?.fail(RedisError("connection closed"))
            return
        }
        var buffer = context.channel.allocator.buffer(capacity: 64)
        HiredisCodec.encode(request.arguments, into: &buffer)
        if let reply = request.promise { waiting.append(reply) }
        context.write(wrapOutboundOut(buffer), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        reader.feed(unwrapInboundIn(data))
        do {
            while let value = try reader.next() {
                if let promise = waiting.popFirst() {
                    promise.succeed(value)
                } else {
                    onPush?(value)
                }
            }
        } catch {
            failAll(error)
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(RedisError("connection closed"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAll(error)
        context.close(promise: nil)
    }

    private func failAll(_ error: any Error) {
        closed = true
        while let promise = waiting.popFirst() { promise.fail(error) }
    }
}
