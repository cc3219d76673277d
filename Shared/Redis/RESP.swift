// Redis replies as a Sendable Swift value, and the hiredis codec that produces and consumes the wire bytes.
import CHiredis
import Foundation
import NIOCore

/// One Redis reply.
public enum RESPValue: Sendable, Equatable {
    case simple(String)
    case error(String)
    case integer(Int)
    case bulk(String)
    case null
    case array([RESPValue])

    /// The text of a simple or bulk string.
    public var string: String? {
        switch self {
        case .simple(let value), .bulk(let value): return value
        case .integer(let value): return String(value)
        default: return nil
        }
    }

    public var int: Int? {
        switch self {
        case .integer(let value): return value
        case .bulk(let value), .simple(let value): return Int(value)
        default: return nil
        }
    }

    public var array: [RESPValue]? {
        if case .array(let values) = self { return values }
        return nil
    }

    public var isNull: Bool { self == .null }
}

/// A reply of type error, thrown to the caller.
public struct RedisError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var description: String { "Redis: \(message)" }
    public init(_ message: String) { self.message = message }
}

/// hiredis as codec: `redisFormatCommandArgv` encodes, a `redisReader` decodes.
enum HiredisCodec {
    /// Encodes one command in RESP.
    static func encode(_ arguments: [String], into buffer: inout ByteBuffer) {
        var lengths = arguments.map { $0.utf8.count }
        let cStrings = arguments.map { strdup($0) }
        defer { cStrings.forEach { free($0) } }
        var pointers = cStrings.map { UnsafePointer<CChar>($0) }
        var target: UnsafeMutablePointer<CChar>?
        let length = pointers.withUnsafeMutableBufferPointer { argv in
            lengths.withUnsafeMutableBufferPointer { argvlen in
                redisFormatCommandArgv(&target, Int32(arguments.count), argv.baseAddress, argvlen.baseAddress)
            }
        }
        guard length > 0, let target else { return }
        defer { free(target) }
        target.withMemoryRebound(to: UInt8.self, capacity: Int(length)) { bytes in
            buffer.writeBytes(UnsafeBufferPointer(start: bytes, count: Int(length)))
        }
    }

    /// Converts a hiredis reply tree into a Swift value (the caller frees the reply).
    static func convert(_ reply: UnsafeMutablePointer<redisReply>) -> RESPValue {
        let value = reply.pointee
        func text() -> String {
            guard let str = value.str else { return "" }
            return str.withMemoryRebound(to: UInt8.self, capacity: value.len) {
                String(decoding: UnsafeBufferPointer(start: $0, count: value.len), as: UTF8.self)
            }
        }
        switch value.type {
        case REDIS_REPLY_STRING: return .bulk(text())
        case REDIS_REPLY_STATUS: return .simple(text())
        case REDIS_REPLY_ERROR: return .error(text())
        case REDIS_REPLY_INTEGER: return .integer(Int(value.integer))
        case REDIS_REPLY_NIL: return .null
        case REDIS_REPLY_ARRAY:
            var items: [RESPValue] = []
            items.reserveCapacity(value.elements)
            for index in 0..<value.elements {
                if let element = value.element[index] { items.append(convert(element)) }
            }
            return .array(items)
        default: return .null
        }
    }
}

/// Incremental reply parser over a hiredis reader; one per connection, used only on its event loop.
final class HiredisReader {
    private let reader: UnsafeMutablePointer<redisReader>

    init() {
        reader = redisReaderCreate()
    }

    deinit {
        redisReaderFree(reader)
    }

    func feed(_ buffer: ByteBuffer) {
        buffer.withUnsafeReadableBytes { bytes in
            guard let base = bytes.baseAddress else { return }
            _ = redisReaderFeed(reader, base.assumingMemoryBound(to: CChar.self), bytes.count)
        }
    }

    /// The next complete reply, nil when more bytes are needed.
    func next() throws -> RESPValue? {
        var raw: UnsafeMutableRawPointer?
        guard redisReaderGetReply(reader, &raw) == REDIS_OK else {
            throw RedisError("protocol error")
        }
        guard let raw else { return nil }
        let reply = raw.assumingMemoryBound(to: redisReply.self)
        defer { freeReplyObject(raw) }
        return HiredisCodec.convert(reply)
    }
}
