// HTTP dates: RFC 9110's example both ways, and what is not an IMF-fixdate.
import Foundation
import Testing
@testable import Shared

@Suite struct HTTPDateTests {
    @Test func formatsAndParsesTheExample() {
        #expect(HTTPDate.format(Date(timeIntervalSince1970: 784_111_777)) == "Sun, 06 Nov 1994 08:49:37 GMT")
        #expect(HTTPDate.parse("Sun, 06 Nov 1994 08:49:37 GMT") == 784_111_777)
    }

    @Test func refusesOtherForms() {
        for text in ["", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994", "Sun, 06 Foo 1994 08:49:37 GMT",
                     "Sun, 06 Nov 1994 25:49:37 GMT", "Sun, 06 Nov 1994 08:49:37 UTC"] {
            #expect(HTTPDate.parse(text) == nil, "\(text)")
        }
    }
}
