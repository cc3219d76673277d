// `multipart/form-data` read as it arrives: a part's bytes are handed on chunk by chunk, so an upload of any size
// goes to disk without being held in memory.
import Foundation

public struct MultipartStream: Sendable {
    public enum Event: Sendable, Equatable {
        /// A part begins: its field name, file name and content type.
        case part(name: String, filename: String?, contentType: String?)
        case data([UInt8])
        case partEnd
    }

    public struct Malformed: Error {}

    enum State { case preamble, headers, body, done }

    let delimiter: [UInt8]
    /// The delimiter as it appears after a part's bytes.
    let separator: [UInt8]
    var state = State.preamble
    var buffer: [UInt8] = []
    public private(set) var finished = false

    public init(boundary: String) {
        delimiter = Array(("--" + boundary).utf8)
        separator = [0x0D, 0x0A] + delimiter
    }

    /// Events for the next bytes of the body.
    public mutating func feed(_ bytes: some Sequence<UInt8>) throws -> [Event] {
        buffer.append(contentsOf: bytes)
        var events: [Event] = []
        while true {
            switch state {
            case .done:
                buffer.removeAll()
                return events
            case .preamble:
                guard let start = Multipart.find(delimiter, in: buffer, from: 0) else {
                    // Keep only what could still begin the delimiter.
                    if buffer.count > delimiter.count { buffer.removeFirst(buffer.count - delimiter.count) }
                    return events
                }
                let after = start + delimiter.count
                guard buffer.count >= after + 2 else { return events }
                if buffer[after] == 0x2D, buffer[after + 1] == 0x2D {
                    state = .done
                    finished = true
                    continue
                }
                guard buffer[after] == 0x0D, buffer[after + 1] == 0x0A else { throw Malformed() }
                buffer.removeFirst(after + 2)
                state = .headers
            case .headers:
                guard let end = Multipart.find([0x0D, 0x0A, 0x0D, 0x0A], in: buffer, from: 0) else {
                    if buffer.count > 16 << 10 { throw Malformed() }
                    return events
                }
                let text = String(decoding: buffer[0..<end], as: UTF8.self)
                buffer.removeFirst(end + 4)
                var name = ""
                var filename: String?
                var contentType: String?
                for line in text.components(separatedBy: "\r\n") {
                    let pair = line.split(separator: ":", maxSplits: 1)
                    guard pair.count == 2 else { continue }
                    let value = pair[1].trimmingCharacters(in: .whitespaces)
                    switch pair[0].lowercased() {
                    case "content-disposition":
                        name = Multipart.parameter("name", in: value) ?? ""
                        filename = Multipart.parameter("filename", in: value)
                    case "content-type":
                        contentType = value
                    default:
                        break
                    }
                }
                events.append(.part(name: name, filename: filename, contentType: contentType))
                state = .body
            case .body:
                if let end = Multipart.find(separator, in: buffer, from: 0) {
                    if end > 0 { events.append(.data(Array(buffer[0..<end]))) }
                    events.append(.partEnd)
                    // What follows is the delimiter again: the preamble state reads it and what comes after.
                    buffer.removeFirst(end + 2)
                    state = .preamble
                    continue
                }
                // Everything but a tail that could be the start of the separator is the part's.
                let safe = buffer.count - separator.count
                if safe > 0 {
                    events.append(.data(Array(buffer[0..<safe])))
                    buffer.removeFirst(safe)
                }
                return events
            }
        }
    }
}
