// The hiredis-backed Redis client against a real Redis: replies, pipelining, errors and reconnecting.
import Foundation
import NIOConcurrencyHelpers
import Testing
@testable import Shared

@Suite(.timeLimit(.minutes(1))) struct RedisClientTests {
    @Test func repliesAreDecodedIntoSwiftValues() async throws {
        let redis = try TestInfrastructure.redisClient()
        let key = TestInfrastructure.uniqueName("k")
        #expect(try await redis.send("SET", key, "héllo") == .simple("OK"))
        #expect(try await redis.send("GET", key) == .bulk("héllo"))
        #expect(try await redis.send("INCR", key + "n") == .integer(1))
        #expect(try await redis.send("GET", key + "missing") == .null)
        try await redis.send("RPUSH", key + "l", "a", "b")
        #expect(try await redis.send("LRANGE", key + "l", "0", "-1") == .array([.bulk("a"), .bulk("b")]))
        await #expect(throws: RedisError.self) { try await redis.send("NOSUCHCOMMAND") }
    }

    @Test func concurrentCallersArePipelinedInOrder() async throws {
        let redis = try TestInfrastructure.redisClient()
        let key = TestInfrastructure.uniqueName("p")
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<500 {
                group.addTask {
                    let reply = try await redis.send("SET", "\(key):\(index)", String(index))
                    #expect(reply == .simple("OK"))
                    #expect(try await redis.send("GET", "\(key):\(index)") == .bulk(String(index)))
                }
            }
            try await group.waitForAll()
        }
    }

    @Test func clientReconnectsAfterRedisRestarts() async throws {
        let server = try PrivateRedis()
        let redis = try RedisClient(url: server.url)
        try await redis.send("SET", "a", "1")
        server.stop()
        await #expect(throws: (any Error).self) { try await redis.send("GET", "a") }
        try server.start()
        var reply: RESPValue?
        for _ in 0..<20 {
            reply = try? await redis.send("PING")
            if reply != nil { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(reply == .simple("PONG"))
        server.stop()
    }

    @Test func subscriberReceivesPublishedMessages() async throws {
        let address = try RedisAddress(url: "\(TestInfrastructure.redisURL)/0")
        let channel = TestInfrastructure.uniqueName("ch")
        let received = NIOLockedValueBox<[String]>([])
        let subscriber = RedisSubscriber(address: address, channels: [channel], logger: TestInfrastructure.logger) {
            message in received.withLockedValue { $0.append(message.payload) }
        }
        let task = Task { try await subscriber.run() }
        let publisher = try TestInfrastructure.redisClient(database: 0)
        for attempt in 0..<50 where received.withLockedValue({ $0.isEmpty }) {
            try await publisher.send("PUBLISH", channel, "hello \(attempt)")
            try await Task.sleep(for: .milliseconds(100))
        }
        task.cancel()
        #expect(received.withLockedValue { $0.first }?.hasPrefix("hello") == true)
    }
}
