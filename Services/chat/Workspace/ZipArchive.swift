// Zip archives as skills travel in (`.zip`, `.skill`): written with deflate, read when stored or deflated, with
// limits on entries and sizes so an archive cannot exhaust memory. zlib does the compression and CRC-32.
import CZlib
import Foundation

enum ZipArchive {
    struct Entry: Sendable {
        var path: String
        var data: [UInt8]
    }

    struct Invalid: Error {
        var reason: String
    }

    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBufferPointer { buffer in
            UInt32(CZlib.crc32(0, buffer.baseAddress, uInt(buffer.count)))
        }
    }

    // MARK: Writing

    /// A zip of `entries` (paths with `/`), each deflated.
    static func write(_ entries: [Entry]) throws -> [UInt8] {
        guard entries.count < 65_535, entries.allSatisfy({ $0.path.utf8.count < 65_535 && $0.data.count < Int(UInt32.max) }) else {
            throw Invalid(reason: "Too many or too large files for one archive")
        }
        var out: [UInt8] = []
        var central: [UInt8] = []
        for entry in entries {
            let name = Array(entry.path.utf8)
            let compressed = try deflateRaw(entry.data)
            let crc = crc32(entry.data)
            let offset = UInt32(out.count)
            var local: [UInt8] = []
            local.append(le32: 0x0403_4B50)
            local.append(le16: 20)  // version needed
            local.append(le16: 0x0800)  // UTF-8 names
            local.append(le16: 8)  // deflate
            local.append(le16: 0)  // time
            local.append(le16: 0x21)  // date: 1980-01-01
            local.append(le32: crc)
            local.append(le32: UInt32(compressed.count))
            local.append(le32: UInt32(entry.data.count))
            local.append(le16: UInt16(name.count))
            local.append(le16: 0)
            out += local + name + compressed
            central.append(le32: 0x0201_4B50)
            central.append(le16: 20)
            central += local[4..<30]  // version needed ... name and extra lengths
            central.append(le16: 0)  // comment
            central.append(le16: 0)  // disk
            central.append(le16: 0)  // internal attributes
            central.append(le32: 0)  // external attributes
            central.append(le32: offset)
            central += name
        }
        let centralOffset = UInt32(out.count)
        out += central
        out.append(le32: 0x0605_4B50)
        out.append(le16: 0)
        out.append(le16: 0)
        out.append(le16: UInt16(entries.count))
        out.append(le16: UInt16(entries.count))
        out.append(le32: UInt32(central.count))
        out.append(le32: centralOffset)
        out.append(le16: 0)
        return out
    }

    static func deflateRaw(_ input: [UInt8]) throws -> [UInt8] {
        var stream = z_stream()
        guard deflateInit2_(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK
        else { throw Invalid(reason: "deflate unavailable") }
        defer { deflateEnd(&stream) }
        var output = [UInt8](repeating: 0, count: Int(deflateBound(&stream, uLong(input.count))) + 16)
        var input = input
        let produced: Int = input.withUnsafeMutableBufferPointer { source in
            output.withUnsafeMutableBufferPointer { target in
                stream.next_in = source.baseAddress
                stream.avail_in = uInt(source.count)
                stream.next_out = target.baseAddress
                stream.avail_out = uInt(target.count)
                _ = CZlib.deflate(&stream, Z_FINISH)
                return target.count - Int(stream.avail_out)
            }
        }
        return Array(output.prefix(produced))
    }

    // MARK: Reading

    /// The files of a zip (directories left out), each at most `maxEntrySize` bytes and `maxTotal` in all.
    static func read(_ data: [UInt8], maxEntries: Int = 10_000, maxEntrySize: Int = 50 << 20, maxTotal: Int = 200 << 20) throws
        -> [Entry]
    {
        // The end of central directory record: the last signature within the final 64 KiB + 22 bytes.
        guard data.count >= 22 else { throw Invalid(reason: "Not a zip archive") }
        var end = -1
        var index = data.count - 22
        while index >= max(0, data.count - 22 - 0xFFFF) {
            if data.le32(at: index) == 0x0605_4B50 {
                end = index
                break
            }
            index -= 1
        }
        guard end >= 0 else { throw Invalid(reason: "Not a zip archive") }
        let count = Int(data.le16(at: end + 10))
        var position = Int(data.le32(at: end + 16))
        guard count <= maxEntries else { throw Invalid(reason: "Archive has too many files") }
        var entries: [Entry] = []
        var total = 0
        for _ in 0..<count {
            guard position + 46 <= data.count, data.le32(at: position) == 0x0201_4B50 else {
                throw Invalid(reason: "Damaged zip archive")
            }
            let method = data.le16(at: position + 10)
            let compressedSize = Int(data.le32(at: position + 20))
            let size = Int(data.le32(at: position + 24))
            let nameLength = Int(data.le16(at: position + 28))
            let extraLength = Int(data.le16(at: position + 30))
            let commentLength = Int(data.le16(at: position + 32))
            let localOffset = Int(data.le32(at: position + 42))
            guard position + 46 + nameLength <= data.count else { throw Invalid(reason: "Damaged zip archive") }
            let name = String(decoding: data[(position + 46)..<(position + 46 + nameLength)], as: UTF8.self)
            position += 46 + nameLength + extraLength + commentLength
            if name.hasSuffix("/") { continue }
            guard size <= maxEntrySize, compressedSize <= maxEntrySize else {
                throw Invalid(reason: "Archive exceeds import limits")
            }
            total += size + compressedSize
            guard total <= maxTotal else { throw Invalid(reason: "Archive is too large") }
            guard localOffset + 30 <= data.count, data.le32(at: localOffset) == 0x0403_4B50 else {
                throw Invalid(reason: "Damaged zip archive")
            }
            let start = localOffset + 30 + Int(data.le16(at: localOffset + 26)) + Int(data.le16(at: localOffset + 28))
            guard start + compressedSize <= data.count else { throw Invalid(reason: "Damaged zip archive") }
            let raw = Array(data[start..<(start + compressedSize)])
            let content: [UInt8]
            switch method {
            case 0: content = raw
            case 8: content = try inflateRaw(raw, expected: size)
            default: throw Invalid(reason: "Unsupported compression in the archive")
            }
            guard content.count == size else { throw Invalid(reason: "Damaged zip archive") }
            entries.append(Entry(path: name, data: content))
        }
        return entries
    }

    static func inflateRaw(_ input: [UInt8], expected: Int) throws -> [UInt8] {
        var stream = z_stream()
        guard inflateInit2_(&stream, -15, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw Invalid(reason: "inflate unavailable")
        }
        defer { inflateEnd(&stream) }
        var output = [UInt8](repeating: 0, count: expected + 1)
        var input = input
        let (status, produced): (Int32, Int) = input.withUnsafeMutableBufferPointer { source in
            output.withUnsafeMutableBufferPointer { target in
                stream.next_in = source.baseAddress
                stream.avail_in = uInt(source.count)
                stream.next_out = target.baseAddress
                stream.avail_out = uInt(target.count)
                let status = CZlib.inflate(&stream, Z_FINISH)
                return (status, target.count - Int(stream.avail_out))
            }
        }
        guard status == Z_STREAM_END else {
            throw Invalid(reason: "Damaged zip archive")
        }
        return Array(output.prefix(produced))
    }
}

extension Array where Element == UInt8 {
    mutating func append(le16 value: UInt16) {
        append(UInt8(value & 0xFF))
        append(UInt8(value >> 8))
    }

    mutating func append(le32 value: UInt32) {
        for shift in stride(from: 0, to: 32, by: 8) { append(UInt8((value >> UInt32(shift)) & 0xFF)) }
    }

    func le16(at index: Int) -> UInt16 {
        guard index + 2 <= count else { return 0 }
        return UInt16(self[index]) | UInt16(self[index + 1]) << 8
    }

    func le32(at index: Int) -> UInt32 {
        guard index + 4 <= count else { return 0 }
        return (0..<4).reduce(UInt32(0)) { $0 | UInt32(self[index + $1]) << UInt32(8 * $1) }
    }
}
