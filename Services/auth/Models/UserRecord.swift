// A user row as stored and as `UserModel` is sent by the real server (same field names).
import Foundation
import Shared

/// One user; encodes to the real server's `UserModel`.
struct UserRecord: Codable, Sendable {
    var id: String
    var email: String
    var username: String?
    var role: String
    var name: String
    var profileImageURL: String
    var profileBannerImageURL: String?
    var bio: String?
    var gender: String?
    var dateOfBirth: String?
    var timezone: String?
    var presenceState: String?
    var statusEmoji: String?
    var statusMessage: String?
    var statusExpiresAt: Int?
    var info: JSONValue?
    var settings: JSONValue?
    var oauth: JSONValue?
    var scim: JSONValue?
    var lastActiveAt: Int
    var updatedAt: Int
    var createdAt: Int

    enum CodingKeys: String, CodingKey {
        case id, email, username, role, name, bio, gender, timezone, info, settings, oauth, scim
        case profileImageURL = "profile_image_url"
        case profileBannerImageURL = "profile_banner_image_url"
        case dateOfBirth = "date_of_birth"
        case presenceState = "presence_state"
        case statusEmoji = "status_emoji"
        case statusMessage = "status_message"
        case statusExpiresAt = "status_expires_at"
        case lastActiveAt = "last_active_at"
        case updatedAt = "updated_at"
        case createdAt = "created_at"
    }

    /// Optionals encode as `null`, as the real server sends them.
    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(email, forKey: .email)
        try c.encode(username, forKey: .username)
        try c.encode(role, forKey: .role)
        try c.encode(name, forKey: .name)
        try c.encode(profileImageURL.isEmpty ? "/api/v1/users/\(id)/profile/image" : profileImageURL, forKey: .profileImageURL)
        try c.encode(profileBannerImageURL, forKey: .profileBannerImageURL)
        try c.encode(bio, forKey: .bio)
        try c.encode(gender, forKey: .gender)
        try c.encode(dateOfBirth, forKey: .dateOfBirth)
        try c.encode(timezone, forKey: .timezone)
        try c.encode(presenceState, forKey: .presenceState)
        try c.encode(statusEmoji, forKey: .statusEmoji)
        try c.encode(statusMessage, forKey: .statusMessage)
        try c.encode(statusExpiresAt, forKey: .statusExpiresAt)
        try c.encode(info ?? .null, forKey: .info)
        try c.encode(settings ?? .null, forKey: .settings)
        try c.encode(oauth ?? .null, forKey: .oauth)
        try c.encode(scim ?? .null, forKey: .scim)
        try c.encode(lastActiveAt, forKey: .lastActiveAt)
        try c.encode(updatedAt, forKey: .updatedAt)
        try c.encode(createdAt, forKey: .createdAt)
    }

    /// `UserModel` plus extra top-level fields (`group_ids`, `groups`, `is_active`).
    func json(adding extra: [String: JSONValue] = [:]) -> JSONValue {
        let base = (try? JSONDecoder().decode(JSONValue.self, from: JSONEncoder.skiff.encode(self))) ?? .object([:])
        return base.merging(.object(extra))
    }

    var isActive: Bool { lastActiveAt >= Int(Date().timeIntervalSince1970) - 180 }

    /// The real server's `UserInfoResponse`.
    func info(groups: JSONValue = .array([]), active: Bool = false) -> JSONValue {
        .object([
            "status_emoji": JSONValue(statusEmoji), "status_message": JSONValue(statusMessage),
            "status_expires_at": JSONValue(statusExpiresAt),
            "id": .string(id), "name": .string(name), "email": .string(email), "role": .string(role),
            "bio": JSONValue(bio), "last_active_at": .int(lastActiveAt),
            "timezone": JSONValue(timezone), "groups": groups, "is_active": .bool(active),
        ])
    }
}
