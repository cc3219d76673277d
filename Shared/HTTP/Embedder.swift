// The configured embedding engine (the original's `RAG_EMBEDDING_ENGINE`): an OpenAI-compatible
// `/embeddings` endpoint or Ollama's `/api/embed`. Nil when none is configured; memories then rank by full text.
import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

public struct Embedder: Sendable {
    public enum Engine: String, Sendable { case openai, ollama }

    public let engine: Engine
    public let model: String
    public let baseURL: String
    public let apiKey: String
    public let batchSize: Int
    public let client: HTTPClient
    public let logger: Logger

    /// From `RAG_EMBEDDING_ENGINE`, `RAG_EMBEDDING_MODEL`, `RAG_OPENAI_API_BASE_URL`, `RAG_OPENAI_API_KEY`,
    /// `RAG_OLLAMA_BASE_URL` (or `OLLAMA_BASE_URL`) and `RAG_EMBEDDING_BATCH_SIZE`.
    public static func configured(_ environment: Environment, client: HTTPClient, logger: Logger) -> Embedder? {
        guard let engine = Engine(rawValue: environment.string("RAG_EMBEDDING_ENGINE", default: "").lowercased()) else {
            return nil
        }
        let base: String =
            switch engine {
            case .openai: environment.string("RAG_OPENAI_API_BASE_URL", default: environment.string("OPENAI_API_BASE_URL", default: "https://api.openai.com/v1"))
            case .ollama: environment.string("RAG_OLLAMA_BASE_URL", default: environment.string("OLLAMA_BASE_URL", default: "http://localhost:11434"))
            }
        return Embedder(
            engine: engine,
            model: environment.string(
                "RAG_EMBEDDING_MODEL", default: engine == .openai ? "text-embedding-3-small" : "nomic-embed-text"),
            baseURL: base.hasSuffix("/") ? String(base.dropLast()) : base,
            apiKey: environment.string("RAG_OPENAI_API_KEY", default: environment.string("OPENAI_API_KEY", default: "")),
            batchSize: max(1, environment.int("RAG_EMBEDDING_BATCH_SIZE", default: 1)), client: client, logger: logger)
    }

    /// The engine could not be reached or gave no usable answer: the request cannot be served now.
    public static let failed = APIError(.serviceUnavailable, "The embedding engine could not embed the text.")

    /// One vector per text, in order.
    public func embed(_ texts: [String]) async throws -> [[Double]] {
        var vectors: [[Double]] = []
        var start = 0
        while start < texts.count {
            let batch = Array(texts[start..<min(texts.count, start + batchSize)])
            vectors += try await embedBatch(batch)
            start += batchSize
        }
        return vectors
    }

    private func embedBatch(_ texts: [String]) async throws -> [[Double]] {
        let url = engine == .openai ? baseURL + "/embeddings" : baseURL + "/api/embed"
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if engine == .openai, !apiKey.isEmpty { request.headers.add(name: "Authorization", value: "Bearer \(apiKey)") }
        let body = OrderedJSON.object([("input", .array(texts.map(JSONValue.string))), ("model", .string(model))])
        request.body = .bytes(ByteBuffer(string: body))
        let status: HTTPResponseStatus
        let data: ByteBuffer
        do {
            let response = try await client.execute(request, timeout: .seconds(30))
            status = response.status
            data = try await response.body.collect(upTo: 64 << 20)
        } catch {
            logger.warning("embedding request failed", metadata: ["url": "\(url)", "error": "\(error)"])
            throw Self.failed
        }
        // Decoded straight into numbers: a general JSON value per number cost more than the request itself.
        let decoded: [[Double]]?
        if status == .ok {
            switch engine {
            case .openai:
                decoded = (try? JSONDecoder().decode(OpenAIEmbeddings.self, from: Data(buffer: data)))
                    .map { body in body.data.enumerated().sorted { ($0.element.index ?? $0.offset) < ($1.element.index ?? $1.offset) }.map(\.element.embedding) }
            case .ollama:
                decoded = (try? JSONDecoder().decode(OllamaEmbeddings.self, from: Data(buffer: data)))?.embeddings
            }
        } else {
            decoded = nil
        }
        guard let result = decoded else {
            logger.warning(
                "embedding engine refused", metadata: ["url": "\(url)", "status": "\(status.code)", "body": "\(String(buffer: data).prefix(200))"])
            throw Self.failed
        }
        guard result.count == texts.count, result.allSatisfy({ !$0.isEmpty }) else { throw Self.failed }
        return result
    }
}

private struct OpenAIEmbeddings: Decodable {
    struct Item: Decodable {
        var embedding: [Double]
        var index: Int?
    }
    var data: [Item]
}

private struct OllamaEmbeddings: Decodable {
    var embeddings: [[Double]]
}
