// How the I/O services use their threads: SwiftNIO's event loops run Swift concurrency's jobs too, and there
// are fewer of them than cores.
import Foundation
import NIOCore
import NIOPosix

public enum NIOExecutor {
    /// For services whose handlers only wait on I/O (gateway, chat). Call first thing in `main.swift`, on the
    /// main thread.
    ///
    /// - Swift concurrency's jobs run on SwiftNIO's singleton event loops (`SKIFF_NIO_EXECUTOR`, default true),
    ///   so a request no longer hops between the event loop that reads it and Swift's own thread pool at every
    ///   `await`. Work that blocks a thread for long (bcrypt, text extraction) would hold up every connection
    ///   of its event loop, which is why auth, files and retrieval keep Swift's pool.
    /// - `SKIFF_EVENT_LOOPS` event loops (default: half the cores, at least one). These services share the
    ///   machine with Postgres, Redis and each other; fewer threads means fewer wake-ups between them. Measured
    ///   on 2 cores (Benchmarks/README.md): one event loop instead of two lifts the proxied chat list from
    ///   about 3,500 to 4,000–4,200 requests per second. Replicas, not threads, are how a service grows.
    public static func configure(environment: [String: String] = ProcessInfo.processInfo.environment) {
        let loops = environment["SKIFF_EVENT_LOOPS"].flatMap { Int($0) }.flatMap { $0 > 0 ? $0 : nil }
        NIOSingletons.groupLoopCountSuggestion = loops ?? max(1, System.coreCount / 2)
        guard (environment["SKIFF_NIO_EXECUTOR"] ?? "true").lowercased() != "false" else { return }
        NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
    }
}
