// Streams, consumer groups and the outbox against real Postgres and Redis.
import Foundation
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
import Testing
@testable import Shared

@Suite(.timeLimit(.minutes(1))) struct EventBusTests {
    @Test func unacknowledgedEntriesAreReclaimedByAnotherConsumer() async throws {
        let redis = try TestInfrastructure.redisClient()
        let stream = TestInfrastructure.uniqueName("skiff:test:stream")
        let event = Event(type: "user.deleted", actorID: "admin", data: .object(["user_id": .string("u1")]))
        let payload = String(decoding: try JSONEncoder().encode(event), as: UTF8.self)

        // The first consumer takes the entry and dies before acknowledging it (its handler fails).
        let dying = StreamConsumer(
            redis: redis, stream: stream, group: "chat", consumer: "dying", logger: TestInfrastructure.logger,
            reclaimAfter: .milliseconds(200)
        ) { _ in throw CancellationError() }
        try await dying.ensureGroup()
        try await redis.send(["XADD", stream, "*", "event", payload])
        try await dying.pollOnce(block: 100)
        let pending = try await redis.send(["XPENDING", stream, "chat"])
        #expect(pending.array?.first?.int == 1)

        // Another replica reclaims it once it has been idle long enough, handles it and acknowledges it.
        let handled = NIOLockedValueBox<[Event]>([])
        let survivor = StreamConsumer(
            redis: redis, stream: stream, group: "chat", consumer: "survivor", logger: TestInfrastructure.logger,
            reclaimAfter: .milliseconds(200)
        ) { event in handled.withLockedValue { $0.append(event) } }
        try await Task.sleep(for: .milliseconds(300))
        try await survivor.pollOnce(block: 100)
        #expect(handled.withLockedValue { $0 } == [event])
        let after = try await redis.send(["XPENDING", stream, "chat"])
        #expect(after.array?.first?.int == 0)
        try await redis.send(["DEL", stream])
    }

    @Test func outboxEventsSurviveARedisOutage() async throws {
        let server = try PrivateRedis()
        defer { server.stop() }
        let redis = try RedisClient(url: server.url)
        let schema = TestInfrastructure.uniqueName("outbox")
        try await TestInfrastructure.withPostgres { postgres in
            let runner = MigrationRunner(
                schema: schema,
                migrations: [
                    Migration(
                        version: 1, name: "001_outbox.sql",
                        sql: "CREATE TABLE outbox (id bigserial PRIMARY KEY, stream text NOT NULL, payload jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now());")
                ])
            try await runner.run(on: postgres, logger: TestInfrastructure.logger)
            let outbox = Outbox(schema: schema, stream: "skiff:events:test")
            let relay = OutboxRelay(outbox: outbox, postgres: postgres, redis: redis, logger: TestInfrastructure.logger)
            server.stop()
            let event = Event(type: "user.deleted", actorID: nil, data: .object(["user_id": .string("gone")]))
            try await postgres.withTransaction(logger: TestInfrastructure.logger) { connection in
                try await outbox.enqueue(event, on: connection, logger: TestInfrastructure.logger)
            }
            // Redis is down: relaying fails and the event stays in the outbox.
            await #expect(throws: (any Error).self) { try await relay.relayBatch() }
            try server.start()
            var sent = 0
            for _ in 0..<20 where sent == 0 {
                sent = (try? await relay.relayBatch()) ?? 0
                if sent == 0 { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(sent == 1)
            let entries = try await redis.send(["XRANGE", "skiff:events:test", "-", "+"])
            let stored = entries.array?.first?.array?.last?.array?.last?.string
            let decoded = try stored.map { try JSONDecoder().decode(Event.self, from: Data($0.utf8)) }
            #expect(decoded == event)
            try await postgres.query(PostgresQuery(unsafeSQL: "DROP SCHEMA \(schema) CASCADE"))
        }
    }

    @Test func migrationsApplyOnceEvenWhenReplicasStartTogether() async throws {
        let schema = TestInfrastructure.uniqueName("mig")
        let migrations = [
            Migration(version: 1, name: "001_a.sql", sql: "CREATE TABLE a (id int);\nINSERT INTO a VALUES (1);"),
            Migration(version: 2, name: "002_b.sql", sql: "-- second\nCREATE TABLE b (id int);"),
        ]
        try await TestInfrastructure.withPostgres { postgres in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        try await MigrationRunner(schema: schema, migrations: migrations)
                            .run(on: postgres, logger: TestInfrastructure.logger)
                    }
                }
                try await group.waitForAll()
            }
            let rows = try await postgres.query(PostgresQuery(unsafeSQL: "SELECT count(*)::bigint FROM \(schema).a"))
            var count = 0
            for try await value in rows.decode(Int.self) { count = value }
            #expect(count == 1)
            try await postgres.query(PostgresQuery(unsafeSQL: "DROP SCHEMA \(schema) CASCADE"))
        }
    }
}
