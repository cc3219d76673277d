// Error shapes, body decoding, durations and the API-key path rule.
import Foundation
import HTTPTypes
import Hummingbird
import Testing
@testable import Shared

@Suite(.timeLimit(.minutes(1))) struct HTTPSharedTests {
    struct Form: Decodable {
        var chat: [String: String]
        var count: Int?
    }

    @Test func missingFieldGivesFastAPIValidationList() throws {
        #expect {
            _ = try JSONBody.decode(Form.self, from: Data("{}".utf8))
        } throws: { error in
            guard let error = error as? APIError, error.status == .unprocessableContent,
                case .array(let items) = error.detail, let first = items.first
            else { return false }
            return first["type"] == .string("missing") && first["loc"] == .array([.string("body"), .string("chat")])
                && first["msg"] == .string("Field required")
        }
    }

    @Test func malformedJSONGivesJSONInvalid() throws {
        #expect {
            _ = try JSONBody.decode(Form.self, from: Data(#"{"chat": "#.utf8))
        } throws: { error in
            guard let error = error as? APIError, case .array(let items) = error.detail else { return false }
            return items.first?["type"] == .string("json_invalid")
        }
    }

    @Test func wrongTypeNamesTheField() throws {
        #expect {
            _ = try JSONBody.decode(Form.self, from: Data(#"{"chat": {}, "count": "x"}"#.utf8))
        } throws: { error in
            guard let error = error as? APIError, case .array(let items) = error.detail else { return false }
            return items.first?["loc"] == .array([.string("body"), .string("count")])
                && items.first?["type"] == .string("int_type")
        }
    }

    @Test func durationsParseAsOpenWebUIParsesThem() {
        #expect(TokenLifetime.seconds("4w") == .some(2_419_200))
        #expect(TokenLifetime.seconds("1h30m") == .some(5400))
        #expect(TokenLifetime.seconds("-1") == .some(nil))
        #expect(TokenLifetime.seconds("0") == .some(nil))
        #expect(TokenLifetime.seconds("soon") == nil)
        #expect(TokenLifetime.seconds("99999999999999999w") == .some(.some(100_000_000_000)))
    }

    @Test func endpointRestrictionsMatchPathOrBelow() {
        let policy = GatewayPolicy(enableAPIKeys: true, endpointRestrictions: true, allowedEndpoints: "/api/models, /api/chat/completions")
        #expect(policy.allows(path: "/api/models"))
        #expect(policy.allows(path: "/api/models/base"))
        #expect(!policy.allows(path: "/api/modelsx"))
        #expect(!policy.allows(path: "/api/v1/chats/"))
    }

    @Test func knownPathWithOtherMethodIsMethodNotAllowed() {
        let routes = KnownRoutes([(.post, "/api/v1/auths/signin"), (.get, "/api/v1/users/:user_id")])
        #expect(routes.hasOtherMethod(path: "/api/v1/auths/signin", than: .delete))
        #expect(routes.hasOtherMethod(path: "/api/v1/users/abc", than: .post))
        #expect(!routes.hasOtherMethod(path: "/api/v1/nope", than: .get))
    }

    @Test func sessionTokensRoundTripAndExpire() async throws {
        let tokens = SessionTokens(secret: "secret")
        let claims = SessionClaims(userID: "u1", sessionStamp: "s1", lifetime: 60)
        let token = try tokens.sign(claims)
        #expect(tokens.verify(token)?.id == "u1")
        #expect(SessionTokens(secret: "other").verify(token) == nil)
        let expired = SessionClaims(userID: "u1", sessionStamp: "s1", lifetime: 10, now: Int(Date().timeIntervalSince1970) - 100)
        #expect(tokens.verify(try tokens.sign(expired)) == nil)
    }

    @Test func identityHeadersCarryAnyNameAndEmail() {
        let identity = Identity(
            userID: "u1", role: "user", method: .jwt, name: "Zoë O'Brien, 李 % 100+ \"x\"", email: "a+b@exämple.com",
            groupIDs: ["g1", "g2"])
        var headers = HTTPFields()
        InternalHeader.write(identity, secret: "s", into: &headers)
        for field in headers { #expect(field.value.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F }) }
        #expect(InternalHeader.read(headers) == identity)
        #expect(InternalHeader.encode("plain42") == "plain42")
        #expect(InternalHeader.decode("100%") == "100%")
        #expect(InternalHeader.decode("%4") == "%4")
        #expect(InternalHeader.decode("a%2Bb%zz") == "a+b%zz")
    }
}

@Suite struct QueryDecodingTests {
    @Test func plainPlusAndEscapes() {
        #expect(Request.formDecoded("page"[...].utf8[...]) == "page")
        #expect(Request.formDecoded("tag%3Awork+plan"[...].utf8[...]) == "tag:work plan")
        #expect(Request.formDecoded("50%"[...].utf8[...]) == nil)
    }
}
