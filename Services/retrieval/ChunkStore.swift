// Chunks in Postgres: text with a full-text vector and, when an embedding engine is configured, a pgvector
// embedding. Search is hybrid: vector and full-text ranks fused by reciprocal rank fusion; full text alone when
// there is no engine. Scores are similarities in 0...1, higher is better, as the original reports them.
import Foundation
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
import Shared

struct Chunk: Sendable {
    var text: String
    var metadata: [String: JSONValue]
}

struct Hit: Sendable {
    var id: String
    var text: String
    var metadataText: String
    var score: Double
}

final class ChunkStore: Sendable {
    let postgres: PostgresClient
    let logger: Logger
    let settings: SettingsStore
    /// Full-text matches ranked per query at most (ranking every match of common words costs too much).
    static let candidates = 1000
    /// Dimensions that have their HNSW index.
    private let indexed = NIOLockedValueBox<Set<Int>>([])

    init(postgres: PostgresClient, logger: Logger, settings: SettingsStore) {
        self.postgres = postgres
        self.logger = logger
        self.settings = settings
    }

    static func vectorText(_ vector: [Double]) -> String {
        "[" + vector.map { String($0) }.joined(separator: ",") + "]"
    }

    /// Makes the HNSW index (cosine) for embeddings of this dimension, once. A file's own collection
    /// (`file-<id>`) stays out of it: such a collection is one document's chunks, searched exactly (through
    /// `chunks_collection`) faster than through a graph, and keeping those chunks out of the graph spares every
    /// upload the graph insert, the largest cost of ingestion. Knowledge bases and named collections are in it.
    func ensureIndex(dims: Int) async throws {
        guard dims > 0, dims <= 2000, !indexed.withLockedValue({ $0.contains(dims) }) else { return }
        try await postgres.query(
            PostgresQuery(
                unsafeSQL: """
                    CREATE INDEX IF NOT EXISTS chunks_vectors_\(dims) ON retrieval.chunks
                    USING hnsw ((embedding::vector(\(dims))) vector_cosine_ops) WITH (m = 16, ef_construction = 32)
                    WHERE dims = \(dims) AND \(Self.graphed)
                    """), logger: logger)
        indexed.withLockedValue { _ = $0.insert(dims) }
    }

    /// The HNSW indexes' predicate besides the dimension; a query repeats it word for word so the planner can
    /// use them.
    static let graphed = "collection NOT LIKE 'file-%'"

    /// Stores chunks in `collection` (their embeddings first, when there is an engine).
    func add(_ chunks: [Chunk], collection: String, fileID: String?) async throws {
        guard !chunks.isEmpty else { return }
        var vectors: [[Double]?] = chunks.map { _ in nil }
        if let embedder = try await settings.current().embedder {
            // The original embeds each chunk's text with its line breaks as spaces.
            vectors = try await embedder.embed(chunks.map { $0.text.replacingOccurrences(of: "\n", with: " ") }).map { $0 }
            if let dims = vectors.first??.count { try await ensureIndex(dims: dims) }
        }
        let ids = chunks.map { _ in UUID().uuidString.lowercased() }
        try await postgres.query(
            """
            INSERT INTO retrieval.chunks (id, collection, file_id, text, metadata, embedding, dims)
            SELECT c.id, \(collection), \(fileID), c.text, c.metadata::jsonb, NULLIF(c.embedding, '')::vector,
                NULLIF(c.dims, '')::int
            FROM unnest(\(ids)::text[], \(chunks.map(\.text))::text[], \(chunks.map { JSONValue.object($0.metadata).jsonText })::text[],
                \(vectors.map { $0.map(Self.vectorText) ?? "" })::text[], \(vectors.map { $0.map { String($0.count) } ?? "" })::text[])
                AS c(id, text, metadata, embedding, dims)
            """, logger: logger)
    }

    /// Copies the chunks of `source` into `collection` when they are exactly `pieces` (same texts in order, same
    /// metadata, which names the embedding engine and model) and each has an embedding when an engine is set.
    /// False, copying nothing, otherwise.
    func copy(from source: String, into collection: String, matching pieces: [Chunk]) async throws -> Bool {
        guard !pieces.isEmpty else { return false }
        let embedded = try await settings.current().embedder != nil
        let dims = try await postgres.withTransaction(logger: logger) { connection -> Int?? in
            var count = 0
            var same = true
            var dims: Int?
            let rows = try await connection.query(
                "SELECT text, metadata::text, dims FROM retrieval.chunks WHERE collection = \(source) ORDER BY seq",
                logger: logger)
            for try await (text, metadata, rowDims) in rows.decode((String, String, Int?).self) {
                dims = rowDims
                if count >= pieces.count || text != pieces[count].text || (rowDims != nil) != embedded
                    || JSONValue.parse(metadata) != .object(pieces[count].metadata)
                {
                    same = false
                }
                count += 1
            }
            guard same, count == pieces.count else { return .none }
            try await connection.query(
                """
                INSERT INTO retrieval.chunks (id, collection, file_id, text, metadata, embedding, dims)
                SELECT gen_random_uuid()::text, \(collection), file_id, text, metadata, embedding, dims
                FROM retrieval.chunks WHERE collection = \(source) ORDER BY seq
                """, logger: logger)
            return .some(dims)
        }
        guard let dims else { return false }
        if let dims { try await ensureIndex(dims: dims) }
        return true
    }

    func delete(collection: String, fileID: String? = nil) async throws {
        try await postgres.query(
            "DELETE FROM retrieval.chunks WHERE collection = \(collection) AND (\(fileID)::text IS NULL OR file_id = \(fileID))",
            logger: logger)
    }

    func deleteFile(_ fileID: String) async throws {
        try await postgres.query("DELETE FROM retrieval.chunks WHERE file_id = \(fileID)", logger: logger)
    }

    func exists(collection: String) async throws -> Bool {
        for try await found in try await postgres.query(
            "SELECT EXISTS (SELECT 1 FROM retrieval.chunks WHERE collection = \(collection))", logger: logger
        ).decode(Bool.self) { return found }
        return false
    }

    /// Whether another file's chunks in the collection carry the same text hash.
    func duplicate(hash: String, collection: String, fileID: String) async throws -> Bool {
        for try await found in try await postgres.query(
            """
            SELECT EXISTS (SELECT 1 FROM retrieval.chunks WHERE collection = \(collection) AND metadata ->> 'hash' = \(hash)
                AND file_id IS DISTINCT FROM \(fileID))
            """, logger: logger
        ).decode(Bool.self) { return found }
        return false
    }

    /// The `limit` chunks of `collections` nearest to `vector`, by cosine similarity.
    func nearest(_ vector: [Double], collections: [String], predicate: String, limit: Int) async throws -> [Hit] {
        let dims = vector.count
        let rows = try await postgres.query(
            PostgresQuery(
                unsafeSQL: """
                    SELECT id, text, metadata::text, 1 - ((embedding::vector(\(dims))) <=> $1::vector(\(dims))) / 2
                    FROM retrieval.chunks WHERE collection = ANY($2) AND dims = \(dims) AND \(predicate)
                    ORDER BY (embedding::vector(\(dims))) <=> $1::vector(\(dims)) LIMIT \(limit)
                    """,
                binds: {
                    var binds = PostgresBindings()
                    binds.append(Self.vectorText(vector))
                    binds.append(collections)
                    return binds
                }()), logger: logger)
        var hits: [Hit] = []
        for try await (id, text, metadata, score) in rows.decode((String, String, String, Double).self) {
            hits.append(Hit(id: id, text: text, metadataText: metadata, score: score))
        }
        return hits
    }

    /// The best `k` chunks of the collections for `query`.
    func search(_ query: String, collections: [String], k: Int) async throws -> [Hit] {
        let limit = max(1, min(k, 1000))
        var vectorHits: [Hit] = []
        if let embedder = try await settings.current().embedder, let vector = try await embedder.embed([query]).first, !vector.isEmpty {
            // Files' own collections exactly, the others through their HNSW index; one ranking.
            let files = collections.filter { $0.hasPrefix("file-") }
            let others = collections.filter { !$0.hasPrefix("file-") }
            for (group, predicate) in [(files, "TRUE"), (others, Self.graphed)] where !group.isEmpty {
                vectorHits += try await nearest(vector, collections: group, predicate: predicate, limit: limit)
            }
            if !files.isEmpty && !others.isEmpty {
                vectorHits = Array(vectorHits.sorted { $0.score > $1.score }.prefix(limit))
            }
        }
        var textHits: [Hit] = []
        // Chunks holding all of the query's words first; when they are too few, chunks holding any of them (as BM25
        // scores them), ranked among at most `candidates` matches so a query of common words stays fast.
        // Words of letters and digits only (by code point), so nothing the query holds reaches `to_tsquery` as syntax.
        var found = Set<String>()
        var word = String.UnicodeScalarView()
        for scalar in query.lowercased().unicodeScalars + [" "] {
            if scalar.properties.isAlphabetic || scalar.properties.numericType != nil {
                word.append(scalar)
            } else if !word.isEmpty {
                found.insert(String(word))
                word = String.UnicodeScalarView()
            }
        }
        let words = found.sorted()
        for joiner in [" & ", " | "] where !words.isEmpty && textHits.count < limit {
            let rows = try await postgres.query(
                """
                WITH q AS (SELECT to_tsquery('simple', \(words.joined(separator: joiner))) AS q),
                matched AS (SELECT c.id, c.text, c.metadata, c.tsv, c.seq FROM retrieval.chunks c, q
                    WHERE c.collection = ANY(\(collections)) AND c.tsv @@ q.q LIMIT \(Self.candidates))
                SELECT m.id, m.text, m.metadata::text, ts_rank(m.tsv, q.q) FROM matched m, q
                ORDER BY ts_rank(m.tsv, q.q) DESC, m.seq LIMIT \(limit)
                """, logger: logger)
            var found: [Hit] = []
            for try await (id, text, metadata, rank) in rows.decode((String, String, String, Float).self) {
                // Full-text rank folded into 0...1.
                found.append(Hit(id: id, text: text, metadataText: metadata, score: Double(rank) / (Double(rank) + 0.1)))
            }
            if found.count > textHits.count { textHits = found }
        }
        guard !vectorHits.isEmpty else { return textHits }
        // Reciprocal rank fusion decides the order; the score shown is the vector similarity where there is one.
        var fused: [String: (hit: Hit, value: Double)] = [:]
        for (rank, hit) in vectorHits.enumerated() { fused[hit.id] = (hit, 1 / Double(60 + rank + 1)) }
        for (rank, hit) in textHits.enumerated() {
            if let existing = fused[hit.id] {
                fused[hit.id] = (existing.hit, existing.value + 1 / Double(60 + rank + 1))
            } else {
                fused[hit.id] = (hit, 1 / Double(60 + rank + 1))
            }
        }
        return fused.values.sorted { $0.value > $1.value }.prefix(limit).map(\.hit)
    }
}
