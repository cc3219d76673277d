// Uploaded images in a replayed conversation: the web app stores an image it uploaded by its file id (or the
// file's `/api/v1/files/<id>/content` address), which no provider can read. As the original does, such a part
// becomes a data URL of the file's bytes, read from the files service as the caller (so only a file the caller may
// read is sent); a part whose file cannot be read, or is not a raster image, is left out.
import AsyncHTTPClient
import Foundation
import NIOCore
import Shared

struct ImageInliner: Sendable {
    let client: HTTPClient
    /// Where the files service is (`SKIFF_FILES_URL`).
    let baseURL: String
    let internalSecret: String
    /// Larger images are left out.
    static let largest = 20 << 20

    /// The file an image address names, when it names an uploaded file rather than a data or web URL.
    static func fileID(_ url: String) -> String? {
        var id = Substring(url)
        if id.hasPrefix("/api/v1/files/") {
            id = id.dropFirst("/api/v1/files/".count)
            if id.hasSuffix("/content") { id = id.dropLast("/content".count) }
        }
        guard !id.isEmpty, id.count <= 64, id.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }) else {
            return nil
        }
        return String(id)
    }

    /// The messages with each uploaded image as a data URL (or left out).
    func inline(_ messages: [JSONValue], user: Identity) async -> [JSONValue] {
        var result: [JSONValue] = []
        for message in messages {
            guard var object = message.objectValue, let parts = object["content"]?.arrayValue,
                parts.contains(where: { Self.fileID($0["image_url"]?["url"]?.stringValue ?? "") != nil })
            else {
                result.append(message)
                continue
            }
            var kept: [JSONValue] = []
            for part in parts {
                guard let url = part["image_url"]?["url"]?.stringValue, let id = Self.fileID(url) else {
                    kept.append(part)
                    continue
                }
                if let data = await dataURL(fileID: id, user: user) {
                    kept.append(.object(["type": .string("image_url"), "image_url": .object(["url": .string(data)])]))
                }
            }
            let images = kept.filter { $0["type"]?.stringValue == "image_url" }
            if images.isEmpty, kept.count == 1, let text = kept[0]["text"]?.stringValue {
                object["content"] = .string(text)
            } else {
                object["content"] = .array(kept)
            }
            result.append(.object(object))
        }
        return result
    }

    func dataURL(fileID: String, user: Identity) async -> String? {
        var request = HTTPClientRequest(url: baseURL + "/api/v1/files/" + fileID + "/content")
        InternalHeader.add(user, secret: internalSecret, to: &request.headers)
        guard let (response, body) = try? await BaseModelCache.fetch(request, client: client, timeout: .seconds(30), limit: Self.largest),
            response.status == .ok
        else { return nil }
        let type = (response.headers.first(name: "Content-Type") ?? "").split(separator: ";").first
            .map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
        guard MessageReplay.isRasterImage(type) else { return nil }
        return "data:" + type + ";base64," + Data(buffer: body).base64EncodedString()
    }
}
