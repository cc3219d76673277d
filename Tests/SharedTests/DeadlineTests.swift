// withDeadline: the value in time, DeadlineExceeded after, and no wait on work that ignores cancellation.
import Foundation
import NIOConcurrencyHelpers
import Testing
@testable import Shared

@Suite(.timeLimit(.minutes(1))) struct DeadlineTests {
    @Test func returnsTheValueInTime() async throws {
        let value = try await withDeadline(.seconds(5)) { 42 }
        #expect(value == 42)
    }

    @Test func passesTheBodysErrorOn() async throws {
        struct Boom: Error {}
        await #expect(throws: Boom.self) { try await withDeadline(.seconds(5)) { throw Boom() } }
    }

    /// The shape of a postgres-nio query whose connection closed under it: it never ends and ignores
    /// cancellation. Without the abandoning deadline this test would hang (and hit the suite's time limit).
    @Test func givesUpOnWorkThatIgnoresCancellation() async throws {
        let parked = NIOLockedValueBox<CheckedContinuation<Void, Never>?>(nil)
        await #expect(throws: DeadlineExceeded.self) {
            try await withDeadline(.milliseconds(200)) {
                await withCheckedContinuation { continuation in parked.withLockedValue { $0 = continuation } }
                return 1
            }
        }
        parked.withLockedValue { $0?.resume() }
    }

    @Test func aCancelledCallerStopsWaiting() async throws {
        let parked = NIOLockedValueBox<CheckedContinuation<Void, Never>?>(nil)
        let caller = Task {
            try await withDeadline(.seconds(30)) {
                await withCheckedContinuation { continuation in parked.withLockedValue { $0 = continuation } }
                return 1
            }
        }
        try await Task.sleep(for: .milliseconds(100))
        caller.cancel()
        await #expect(throws: CancellationError.self) { try await caller.value }
        parked.withLockedValue { $0?.resume() }
    }
}
