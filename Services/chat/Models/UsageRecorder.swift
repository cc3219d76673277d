// Token usage per user, model and day, from the `usage` the providers report: counted in memory and written to
// `chat.usage` every few seconds and when the service stops, so a completion never waits on it.
import Foundation
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
import ServiceLifecycle
import Shared

final class UsageRecorder: Service, Sendable {
    struct Key: Hashable {
        var user: String
        var model: String
    }

    struct Counts {
        var requests = 0
        var prompt = 0
        var completion = 0
    }

    let postgres: PostgresClient
    let logger: Logger
    private let pending = NIOLockedValueBox<[Key: Counts]>([:])

    init(postgres: PostgresClient, logger: Logger) {
        self.postgres = postgres
        self.logger = logger
    }

    /// Counts one completion; `usage` is the provider's object (OpenAI or normalised names).
    func record(user: String, model: String, usage: JSONValue?) {
        let prompt = usage?["prompt_tokens"]?.intValue ?? usage?["input_tokens"]?.intValue ?? 0
        let completion = usage?["completion_tokens"]?.intValue ?? usage?["output_tokens"]?.intValue ?? 0
        pending.withLockedValue { pending in
            pending[Key(user: user, model: model), default: Counts()].requests &+= 1
            pending[Key(user: user, model: model)]!.prompt &+= max(0, prompt)
            pending[Key(user: user, model: model)]!.completion &+= max(0, completion)
        }
    }

    func flush() async {
        let batch = pending.withLockedValue { pending in
            defer { pending = [:] }
            return pending
        }
        guard !batch.isEmpty else { return }
        let keys = Array(batch.keys)
        do {
            try await postgres.query(
                """
                INSERT INTO chat.usage (user_id, model_id, day, requests, prompt_tokens, completion_tokens)
                SELECT u, m, current_date, r, p, c
                FROM unnest(\(keys.map(\.user))::text[], \(keys.map(\.model))::text[], \(keys.map { batch[$0]!.requests })::int8[],
                    \(keys.map { batch[$0]!.prompt })::int8[], \(keys.map { batch[$0]!.completion })::int8[]) AS x(u, m, r, p, c)
                ON CONFLICT (user_id, model_id, day) DO UPDATE SET requests = usage.requests + EXCLUDED.requests,
                    prompt_tokens = usage.prompt_tokens + EXCLUDED.prompt_tokens,
                    completion_tokens = usage.completion_tokens + EXCLUDED.completion_tokens
                """, logger: logger)
        } catch {
            logger.warning("usage not saved; kept for the next try", metadata: ["error": "\(String(reflecting: error))"])
            pending.withLockedValue { pending in
                for (key, counts) in batch {
                    pending[key, default: Counts()].requests &+= counts.requests
                    pending[key]!.prompt &+= counts.prompt
                    pending[key]!.completion &+= counts.completion
                }
            }
        }
    }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(2))
                await self.flush()
            }
        }
        await flush()
    }
}
