// Which service owns a path, which paths need no caller, and the /api aliases of /api/v1 routes.
import Foundation
import HTTPTypes

enum RouteMap {
    /// Path prefixes and their owners; none lies below another, so at most one matches.
    static let prefixes: [(prefix: String, upstream: Upstream)] = [
        ("/api/v1/auths", .auth), ("/api/v1/users", .auth), ("/api/v1/groups", .auth), ("/api/config", .auth), ("/api/v1/configs", .auth),
        ("/api/v1/chats", .chat), ("/api/v1/folders", .chat), ("/api/v1/models", .chat), ("/api/models", .chat),
        ("/api/chat", .chat), ("/api/v1/chat", .chat), ("/api/openai", .chat), ("/api/v1/prompts", .chat), ("/api/v1/skills", .chat), ("/api/v1/tools", .chat), ("/api/v1/functions", .chat),
        ("/api/v1/tasks", .chat), ("/api/tasks", .chat), ("/api/v1/memories", .chat), ("/api/v1/notes", .chat),
        ("/api/v1/channels", .chat), ("/api/v1/evaluations", .chat), ("/api/embeddings", .chat),
        ("/api/v1/messages", .chat), ("/api/usage", .chat), ("/openai", .chat), ("/ollama", .chat),
        ("/api/v1/files", .files),
        ("/api/v1/knowledge", .retrieval), ("/api/v1/retrieval", .retrieval),
        ("/ws", .realtime),
    ]

    /// `/api/<router>/...` as the seed documents write it means `/api/v1/<router>/...`.
    static let aliased: Set<String> = [
        "auths", "users", "groups", "chats", "folders", "files", "knowledge", "retrieval", "prompts", "tools",
        "functions", "skills", "memories", "notes", "channels", "evaluations", "configs", "utils",
    ]

    static func canonical(_ path: String) -> String {
        guard path.hasPrefix("/api/"), !path.hasPrefix("/api/v1/") else { return path }
        let rest = path.dropFirst(5)
        let first = rest.prefix { $0 != "/" }
        return aliased.contains(String(first)) ? "/api/v1/" + rest : path
    }

    static func upstream(for path: String) -> Upstream? {
        for (prefix, upstream) in prefixes where isAt(path, orBelow: prefix) {
            return upstream
        }
        return nil
    }

    /// Whether `path` is `prefix` or lies below it. This runs for every prefix on every request, so the
    /// cheap `hasPrefix` turns away the non-matching ones before `prefix + "/"` is built.
    static func isAt(_ path: String, orBelow prefix: String) -> Bool {
        path.hasPrefix(prefix) && (path == prefix || path.hasPrefix(prefix + "/"))
    }

    /// Routes whose replies wait for a language model or document processing.
    static let longRunningPrefixes = [
        "/api/chat", "/api/v1/chat", "/api/openai", "/openai", "/ollama", "/api/v1/messages", "/api/embeddings", "/api/v1/tasks", "/api/v1/retrieval",
        "/api/v1/files", "/api/v1/knowledge", "/ws",
    ]

    static func isLongRunning(_ path: String) -> Bool {
        longRunningPrefixes.contains { isAt(path, orBelow: $0) }
    }

    /// Routes a caller may reach without credentials (bad credentials there count as none).
    static func isPublic(_ method: HTTPRequest.Method, _ path: String) -> Bool {
        switch path {
        case "/api/v1/auths/signin", "/api/v1/auths/signup", "/api/v1/auths/signout", "/api/config", "/api/config/":
            return true
        default:
            return isAt(path, orBelow: "/ws")
        }
    }
}
