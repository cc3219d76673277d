// The stock Open WebUI web app, served by the gateway from an unpacked 0.12.4 build (`FRONTEND_BUILD_DIR`) and
// its static folder (`STATIC_DIR`): files with ETag/Last-Modified and 304s, byte ranges, gzip when the client
// takes it (compressed once per file and kept), immutable chunks cacheable for a year, and `index.html` for every
// other path the single-page app routes itself. `/manifest.json` and `/opensearch.xml` are generated, as the
// original generates them. API paths never reach this: an unknown one stays a JSON 404.
import CZlib
import Foundation
import HTTPTypes
import Hummingbird
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Shared

struct WebApp: Sendable {
    /// `FRONTEND_BUILD_DIR`: the unpacked `open_webui/frontend` folder.
    let buildDirectory: String
    /// `STATIC_DIR`: the unpacked `open_webui/static` folder (the build's own `static/` is the fallback).
    let staticDirectory: String
    /// `WEBUI_NAME`, as the manifest and the search description show it.
    let name: String
    /// `WEBUI_URL`: the public address for the search description.
    let url: String
    /// The two roots with their links resolved, once: a served file's real path must lie below one of them.
    private let buildRoot: String
    private let staticRoot: String
    private let fileIO = FileIO(threadPool: .singleton)
    private let compressed = NIOLockedValueBox<[String: Compressed]>([:])

    /// Files larger than this are sent as they are.
    static let largestCompressed = 16 << 20

    struct Compressed: Sendable {
        let tag: String
        let bytes: ByteBuffer
    }

    init(environment env: Shared.Environment = Shared.Environment()) {
        buildDirectory = Self.trimmed(env.string("FRONTEND_BUILD_DIR", default: ".data/webui/frontend"))
        staticDirectory = Self.trimmed(env.string("STATIC_DIR", default: ".data/webui/static"))
        let name = env.string("WEBUI_NAME", default: "Open WebUI")
        self.name = name == "Open WebUI" ? name : name + " (Open WebUI)"
        url = Self.trimmed(env.string("WEBUI_URL", default: ""))
        buildRoot = Self.resolved(buildDirectory)
        staticRoot = Self.resolved(staticDirectory)
    }

    static func resolved(_ path: String) -> String { URL(fileURLWithPath: path).resolvingSymlinksInPath().path }

    static func trimmed(_ path: String) -> String { path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path }

    var available: Bool { FileManager.default.fileExists(atPath: buildDirectory + "/index.html") }

    /// Paths that belong to the API: an unknown one is a JSON 404, never the app's page.
    static func isAPI(_ path: String) -> Bool {
        for prefix in ["/api", "/openai", "/ollama", "/ws"] where path == prefix || path.hasPrefix(prefix + "/") {
            return true
        }
        return false
    }

    /// The answer for a GET or HEAD outside the API, or nil when the web app is not installed.
    func respond(to request: Request, context: some RequestContext) async throws -> Response? {
        guard request.method == .get || request.method == .head else { return nil }
        let path = request.uri.path
        switch path {
        case "/manifest.json":
            return Self.generated(manifest, type: "application/json", request: request)
        case "/opensearch.xml":
            return Self.generated(openSearch, type: "application/xml", request: request)
        default:
            break
        }
        guard available else { return nil }
        guard let relative = Self.safeRelativePath(path) else { throw APIError(.notFound, "Not Found") }
        if relative.hasPrefix("static/") {
            let name = String(relative.dropFirst("static/".count))
            for (root, base) in [(staticRoot, staticRoot), (buildRoot + "/static", buildRoot)] {
                if let file = Self.regularFile(name, in: root, below: base) {
                    return try await serve(file, path: path, request: request, context: context)
                }
            }
            throw APIError(.notFound, "Not Found")
        }
        if !relative.isEmpty, let file = Self.regularFile(relative, in: buildRoot, below: buildRoot) {
            return try await serve(file, path: path, request: request, context: context)
        }
        if !relative.isEmpty, let file = Self.regularFile(relative + "/index.html", in: buildRoot, below: buildRoot) {
            return try await serve(file, path: path + "/index.html", request: request, context: context)
        }
        // A missing script is an error, not the page (the original's rule too).
        if relative.hasSuffix(".js") { throw APIError(.notFound, "Not Found") }
        guard let index = Self.regularFile("index.html", in: buildRoot, below: buildRoot) else { return nil }
        return try await serve(index, path: "/index.html", request: request, context: context)
    }

    // MARK: Files

    struct File: Sendable {
        let path: String
        let size: Int
        let modified: Date
    }

    /// A regular file at `relative` in `root` whose real path (links resolved) is still below `base` (resolved).
    static func regularFile(_ relative: String, in root: String, below base: String) -> File? {
        let path = resolved(root + "/" + relative)
        guard path.hasPrefix(base + "/"),
            let attributes = try? FileManager.default.attributesOfItem(atPath: path),
            attributes[.type] as? FileAttributeType == .typeRegular
        else { return nil }
        return File(
            path: path, size: (attributes[.size] as? NSNumber)?.intValue ?? 0,
            modified: attributes[.modificationDate] as? Date ?? Date(timeIntervalSince1970: 0))
    }

    /// The request path as a path below the root: percent-decoded, cut at every `/` byte (whatever follows it), no
    /// empty, `.` or `..` segments, no NUL or backslash.
    static func safeRelativePath(_ path: String) -> String? {
        guard let decoded = path.removingPercentEncoding, !decoded.utf8.contains(0), !decoded.utf8.contains(UInt8(ascii: "\\"))
        else { return nil }
        let segments = decoded.utf8.split(separator: UInt8(ascii: "/")).map { Array($0) }
        guard !segments.contains(where: { $0 == Array("..".utf8) || $0 == Array(".".utf8) }) else { return nil }
        return segments.map { String(decoding: $0, as: UTF8.self) }.joined(separator: "/")
    }

    static let types: [String: String] = [
        "html": "text/html; charset=utf-8", "js": "text/javascript", "mjs": "text/javascript", "css": "text/css",
        "json": "application/json", "map": "application/json", "webmanifest": "application/manifest+json",
        "svg": "image/svg+xml", "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif",
        "webp": "image/webp", "ico": "image/x-icon", "woff2": "font/woff2", "woff": "font/woff", "ttf": "font/ttf",
        "otf": "font/otf", "mp3": "audio/mpeg", "wav": "audio/wav", "mp4": "video/mp4", "webm": "video/webm",
        "wasm": "application/wasm", "txt": "text/plain; charset=utf-8", "md": "text/markdown; charset=utf-8",
        "xml": "application/xml", "csv": "text/csv; charset=utf-8", "pdf": "application/pdf", "zip": "application/zip",
    ]

    static func contentType(of path: String) -> String {
        let name = path.split(separator: "/").last ?? ""
        guard let dot = name.lastIndex(of: ".") else { return "application/octet-stream" }
        return types[name[name.index(after: dot)...].lowercased()] ?? "application/octet-stream"
    }

    static func compressible(_ type: String) -> Bool {
        type.hasPrefix("text/") || type.hasPrefix("application/json") || type.hasPrefix("application/manifest")
            || type == "application/xml" || type == "image/svg+xml" || type == "application/wasm" || type == "font/ttf"
            || type == "font/otf" || type == "image/x-icon"
    }

    static let acceptRanges = HTTPField.Name("Accept-Ranges")!
    static let contentRange = HTTPField.Name("Content-Range")!
    static let vary = HTTPField.Name("Vary")!

    func serve(_ file: File, path: String, request: Request, context: some RequestContext) async throws -> Response {
        let type = Self.contentType(of: file.path)
        let modified = Int(file.modified.timeIntervalSince1970)
        let tag = "\"" + String(file.size, radix: 16) + "-" + String(modified, radix: 16) + "\""
        var headers: HTTPFields = [
            .contentType: type, .eTag: tag, .lastModified: HTTPDate.format(file.modified), Self.acceptRanges: "bytes",
        ]
        headers[.cacheControl] = path.hasPrefix("/_app/immutable/") ? "public, max-age=31536000, immutable" : "no-cache"
        let canCompress = Self.compressible(type) && file.size > 256 && file.size <= Self.largestCompressed
        if canCompress { headers[Self.vary] = "Accept-Encoding" }

        if let match = request.headers[.ifNoneMatch] {
            let tags = match.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            if tags.contains("*") || tags.contains(where: { Self.sameTag($0, tag) }) {
                return Response(status: .notModified, headers: headers)
            }
        } else if let since = request.headers[.ifModifiedSince].flatMap(HTTPDate.parse), modified <= since {
            return Response(status: .notModified, headers: headers)
        }

        if let rangeText = request.headers[.range], file.size > 0 {
            guard let range = Self.byteRange(rangeText, size: file.size) else {
                headers[Self.contentRange] = "bytes */\(file.size)"
                headers[.contentType] = "application/json"
                return Response(
                    status: .rangeNotSatisfiable, headers: headers,
                    body: .init(byteBuffer: ByteBuffer(string: #"{"detail":"Requested Range Not Satisfiable"}"#)))
            }
            headers[Self.contentRange] = "bytes \(range.lowerBound)-\(range.upperBound)/\(file.size)"
            headers[.contentLength] = String(range.count)
            if request.method == .head { return Response(status: .partialContent, headers: headers) }
            let body = try await fileIO.loadFile(path: file.path, range: range, context: context)
            return Response(status: .partialContent, headers: headers, body: body)
        }

        if canCompress, Self.acceptsGzip(request.headers[.acceptEncoding]) {
            let gzipped = try await gzip(file, tag: tag)
            headers[.contentEncoding] = "gzip"
            headers[.eTag] = String(tag.dropLast()) + "-gz\""
            headers[.contentLength] = String(gzipped.readableBytes)
            if request.method == .head { return Response(status: .ok, headers: headers) }
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: gzipped))
        }
        headers[.contentLength] = String(file.size)
        if request.method == .head || file.size == 0 { return Response(status: .ok, headers: headers) }
        return Response(status: .ok, headers: headers, body: try await fileIO.loadFile(path: file.path, context: context))
    }

    /// Tags compare without the weak marker and without the `-gz` of the compressed form.
    static func sameTag(_ given: String, _ tag: String) -> Bool {
        var given = given.hasPrefix("W/") ? String(given.dropFirst(2)) : given
        if given.hasSuffix("-gz\"") { given = String(given.dropLast(4)) + "\"" }
        return given == tag
    }

    /// Whether `Accept-Encoding` takes gzip (named or `*`, without `q=0`).
    static func acceptsGzip(_ header: String?) -> Bool {
        for part in (header ?? "").split(separator: ",") {
            let pieces = part.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            guard pieces.first == "gzip" || pieces.first == "*" else { continue }
            let quality = pieces.dropFirst().first { $0.hasPrefix("q=") }.flatMap { Double($0.dropFirst(2)) } ?? 1
            return quality > 0
        }
        return false
    }

    /// One `bytes=` range (`a-b`, `a-`, `-n`) within the file, or nil when it is malformed or outside it.
    static func byteRange(_ header: String, size: Int) -> ClosedRange<Int>? {
        guard header.hasPrefix("bytes="), !header.contains(",") else { return nil }
        let spec = header.dropFirst("bytes=".count).trimmingCharacters(in: .whitespaces)
        guard let dash = spec.firstIndex(of: "-") else { return nil }
        let first = spec[..<dash], last = spec[spec.index(after: dash)...]
        if first.isEmpty {
            guard let suffix = Int(last), suffix > 0 else { return nil }
            return max(0, size - suffix)...(size - 1)
        }
        guard let start = Int(first), start >= 0, start < size else { return nil }
        if last.isEmpty { return start...(size - 1) }
        guard let end = Int(last), end >= start else { return nil }
        return start...min(end, size - 1)
    }

    /// The file gzipped, compressed once per version of the file and kept.
    func gzip(_ file: File, tag: String) async throws -> ByteBuffer {
        if let kept = compressed.withLockedValue({ $0[file.path] }), kept.tag == tag { return kept.bytes }
        let bytes = try await NIOThreadPool.singleton.runIfActive { () throws -> ByteBuffer in
            let data = try Data(contentsOf: URL(fileURLWithPath: file.path))
            return ByteBuffer(bytes: try Self.gzip(data))
        }
        compressed.withLockedValue { $0[file.path] = Compressed(tag: tag, bytes: bytes) }
        return bytes
    }

    struct CompressionFailed: Error {}

    static func gzip(_ data: Data) throws -> [UInt8] {
        var stream = z_stream()
        // 31: a gzip wrapper around deflate; level 9, files are compressed once.
        guard deflateInit2_(&stream, 9, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw CompressionFailed()
        }
        defer { deflateEnd(&stream) }
        var output = [UInt8](repeating: 0, count: Int(deflateBound(&stream, uLong(data.count))) + 32)
        let status = data.withUnsafeBytes { (input: UnsafeRawBufferPointer) -> Int32 in
            output.withUnsafeMutableBytes { (out: UnsafeMutableRawBufferPointer) -> Int32 in
                stream.next_in = UnsafeMutablePointer(mutating: input.bindMemory(to: Bytef.self).baseAddress)
                stream.avail_in = uInt(input.count)
                stream.next_out = out.bindMemory(to: Bytef.self).baseAddress
                stream.avail_out = uInt(out.count)
                return deflate(&stream, Z_FINISH)
            }
        }
        guard status == Z_STREAM_END else { throw CompressionFailed() }
        return Array(output.prefix(Int(stream.total_out)))
    }

    // MARK: Generated files

    static func generated(_ text: String, type: String, request: Request) -> Response {
        let headers: HTTPFields = [.contentType: type, .cacheControl: "no-cache", .contentLength: String(text.utf8.count)]
        if request.method == .head { return Response(status: .ok, headers: headers) }
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    /// The original's web manifest (name from `WEBUI_NAME`), keys in its order.
    var manifest: String {
        let description = JSONValue.string(name + " is an open, extensible, user-friendly interface for AI that adapts to your workflow.").jsonText
        let name = JSONValue.string(name).jsonText
        let icons = ["any", "maskable"].map {
            #"{"src":"/static/logo.png","type":"image/png","sizes":"500x500","purpose":"\#($0)"}"#
        }
        return ##"{"name":\##(name),"short_name":\##(name),"description":\##(description),"start_url":"/","display":"standalone","background_color":"#343541","icons":[\##(icons.joined(separator: ","))],"share_target":{"action":"/","method":"GET","params":{"text":"shared"}}}"##
    }

    /// The original's OpenSearch description (addresses from `WEBUI_URL`).
    var openSearch: String {
        func escaped(_ text: String) -> String {
            text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
                .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
        }
        let name = escaped(self.name), url = escaped(self.url)
        return """
            <OpenSearchDescription xmlns="http://a9.com/-/spec/opensearch/1.1/" xmlns:moz="http://www.mozilla.org/2006/browser/search/">
            <ShortName>\(name)</ShortName>
            <Description>Search \(name)</Description>
            <InputEncoding>UTF-8</InputEncoding>
            <Image width="16" height="16" type="image/x-icon">\(url)/static/favicon.png</Image>
            <Url type="text/html" method="get" template="\(url)/?q={searchTerms}"/>
            <moz:SearchForm>\(url)</moz:SearchForm>
            </OpenSearchDescription>
            """
    }
}
