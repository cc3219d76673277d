// Time limits on work that might never finish on its own.
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Thrown by `withDeadline` when the time is up.
public struct DeadlineExceeded: Error, CustomStringConvertible {
    public init() {}
    public var description: String { "deadline exceeded" }
}

/// `body`'s value, or `DeadlineExceeded` once `timeout` has passed. At the deadline `body` is cancelled and
/// left to wind down on its own: the caller does not wait for it. That matters for work that ignores
/// cancellation, such as a postgres-nio query whose connection Postgres closed under it (it can wait forever;
/// postgres-nio reverted its fix, vapor/postgres-nio#501), which would otherwise hold its caller, and with it
/// a graceful shutdown, indefinitely. A cancelled caller gets `CancellationError` at once, on the same terms.
public func withDeadline<T: Sendable>(
    _ timeout: Duration, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    let work = Task { try await body() }
    let outcome = Outcome<T>()
    // A SwiftNIO timer, not `Task.sleep`: a cancelled sleep leaves its Dispatch timer queued until it would have
    // fired, and the outbox relay sets one per batch (thousands under load, each re-sorted into Dispatch's heap).
    let timer = MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: TimeAmount(timeout)) {
        outcome.resolve(.failure(DeadlineExceeded()))
    }
    Task { outcome.resolve(await work.result) }
    defer {
        timer.cancel()
        work.cancel()
    }
    return try await withTaskCancellationHandler {
        try await outcome.value()
    } onCancel: {
        outcome.resolve(.failure(CancellationError()))
    }
}

/// The first of several racing results, handed to one waiter.
private final class Outcome<T: Sendable>: Sendable {
    private struct State {
        var result: Result<T, any Error>?
        var waiter: CheckedContinuation<T, any Error>?
    }
    private let state = NIOLockedValueBox(State())

    func resolve(_ result: Result<T, any Error>) {
        let waiter = state.withLockedValue { state -> CheckedContinuation<T, any Error>? in
            guard state.result == nil else { return nil }
            state.result = result
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(with: result)
    }

    func value() async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let ready = state.withLockedValue { state -> Result<T, any Error>? in
                if let result = state.result { return result }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }
}
