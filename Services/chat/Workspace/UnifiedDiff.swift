// A line diff that gives the same hunks as the original's `difflib.unified_diff` (its longest-matching-block
// algorithm, three lines of context, headers without dates), for the prompt history's `content_diff`.
import Foundation
import Shared

enum UnifiedDiff {
    /// Texts longer than this (in lines, both sides together) are not compared: the matching can take time
    /// that grows with the square of the length.
    static let maxLines = 20_000
    static let tooLong = APIError(.badRequest, "These versions are too long to compare line by line.")

    /// The diff lines of `old` against `new` (no line terminators), or nothing when their lines are equal.
    static func lines(_ old: String, _ new: String, fromFile: String, toFile: String, context: Int = 3) throws -> [String] {
        let a = splitLines(old)
        let b = splitLines(new)
        guard a.count + b.count <= maxLines else { throw tooLong }
        // Lines compare by their exact code points, as Python's strings do.
        var ids: [[UInt32]: Int] = [:]
        func id(_ line: String) -> Int {
            let key = line.unicodeScalars.map(\.value)
            if let known = ids[key] { return known }
            ids[key] = ids.count
            return ids.count - 1
        }
        let matcher = Matcher(a: a.map(id), b: b.map(id))
        var output: [String] = []
        for group in matcher.groupedOpcodes(context) {
            if output.isEmpty {
                output.append("--- " + fromFile)
                output.append("+++ " + toFile)
            }
            let first = group[0]
            let last = group[group.count - 1]
            output.append("@@ -\(range(first.i1, last.i2)) +\(range(first.j1, last.j2)) @@")
            for code in group {
                if code.tag == .equal {
                    output += a[code.i1..<code.i2].map { " " + $0 }
                    continue
                }
                if code.tag == .replace || code.tag == .delete { output += a[code.i1..<code.i2].map { "-" + $0 } }
                if code.tag == .replace || code.tag == .insert { output += b[code.j1..<code.j2].map { "+" + $0 } }
            }
        }
        return output
    }

    static func range(_ start: Int, _ stop: Int) -> String {
        let length = stop - start
        if length == 1 { return "\(start + 1)" }
        return length == 0 ? "\(start),0" : "\(start + 1),\(length)"
    }

    /// Python's `str.splitlines()`: breaks at \n, \r, \r\n, \v, \f, \x1c-\x1e, \x85, U+2028 and U+2029; no
    /// empty last line.
    static func splitLines(_ text: String) -> [String] {
        var lines: [String] = []
        var current = String.UnicodeScalarView()
        let scalars = Array(text.unicodeScalars)
        var index = 0
        while index < scalars.count {
            let scalar = scalars[index]
            switch scalar.value {
            case 0x0A, 0x0B, 0x0C, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029:
                lines.append(String(current))
                current = String.UnicodeScalarView()
            case 0x0D:
                lines.append(String(current))
                current = String.UnicodeScalarView()
                if index + 1 < scalars.count, scalars[index + 1].value == 0x0A { index += 1 }
            default:
                current.append(scalar)
            }
            index += 1
        }
        if !current.isEmpty { lines.append(String(current)) }
        return lines
    }

    enum Tag { case equal, replace, delete, insert }

    struct Opcode {
        var tag: Tag
        var i1: Int
        var i2: Int
        var j1: Int
        var j2: Int
    }

    /// The original's `SequenceMatcher` without a junk function, with its automatic junk heuristic (lines
    /// that make up more than 1% of a sequence of 200 or more are not used to anchor matches).
    struct Matcher {
        let a: [Int]
        let b: [Int]
        var positions: [Int: [Int]] = [:]

        init(a: [Int], b: [Int]) {
            self.a = a
            self.b = b
            for (j, line) in b.enumerated() { positions[line, default: []].append(j) }
            if b.count >= 200 {
                let limit = b.count / 100 + 1
                for (line, found) in positions where found.count > limit { positions[line] = nil }
            }
        }

        func longestMatch(_ alo: Int, _ ahi: Int, _ blo: Int, _ bhi: Int) -> (Int, Int, Int) {
            var (besti, bestj, bestSize) = (alo, blo, 0)
            var lengths: [Int: Int] = [:]
            for i in alo..<ahi {
                var next: [Int: Int] = [:]
                for j in positions[a[i]] ?? [] {
                    if j < blo { continue }
                    if j >= bhi { break }
                    let k = (lengths[j - 1] ?? 0) + 1
                    next[j] = k
                    if k > bestSize { (besti, bestj, bestSize) = (i - k + 1, j - k + 1, k) }
                }
                lengths = next
            }
            while besti > alo, bestj > blo, a[besti - 1] == b[bestj - 1] {
                (besti, bestj, bestSize) = (besti - 1, bestj - 1, bestSize + 1)
            }
            while besti + bestSize < ahi, bestj + bestSize < bhi, a[besti + bestSize] == b[bestj + bestSize] {
                bestSize += 1
            }
            return (besti, bestj, bestSize)
        }

        func matchingBlocks() -> [(Int, Int, Int)] {
            var queue = [(0, a.count, 0, b.count)]
            var blocks: [(Int, Int, Int)] = []
            while let (alo, ahi, blo, bhi) = queue.popLast() {
                let (i, j, k) = longestMatch(alo, ahi, blo, bhi)
                guard k > 0 else { continue }
                blocks.append((i, j, k))
                if alo < i, blo < j { queue.append((alo, i, blo, j)) }
                if i + k < ahi, j + k < bhi { queue.append((i + k, ahi, j + k, bhi)) }
            }
            blocks.sort { ($0.0, $0.1, $0.2) < ($1.0, $1.1, $1.2) }
            var merged: [(Int, Int, Int)] = []
            var (i1, j1, k1) = (0, 0, 0)
            for (i2, j2, k2) in blocks {
                if i1 + k1 == i2, j1 + k1 == j2 {
                    k1 += k2
                } else {
                    if k1 > 0 { merged.append((i1, j1, k1)) }
                    (i1, j1, k1) = (i2, j2, k2)
                }
            }
            if k1 > 0 { merged.append((i1, j1, k1)) }
            merged.append((a.count, b.count, 0))
            return merged
        }

        func opcodes() -> [Opcode] {
            var (i, j) = (0, 0)
            var codes: [Opcode] = []
            for (ai, bj, size) in matchingBlocks() {
                let tag: Tag? = i < ai && j < bj ? .replace : i < ai ? .delete : j < bj ? .insert : nil
                if let tag { codes.append(Opcode(tag: tag, i1: i, i2: ai, j1: j, j2: bj)) }
                (i, j) = (ai + size, bj + size)
                if size > 0 { codes.append(Opcode(tag: .equal, i1: ai, i2: i, j1: bj, j2: j)) }
            }
            return codes
        }

        func groupedOpcodes(_ n: Int) -> [[Opcode]] {
            var codes = opcodes()
            if codes.isEmpty { codes = [Opcode(tag: .equal, i1: 0, i2: 1, j1: 0, j2: 1)] }
            if codes[0].tag == .equal {
                let c = codes[0]
                codes[0] = Opcode(tag: .equal, i1: max(c.i1, c.i2 - n), i2: c.i2, j1: max(c.j1, c.j2 - n), j2: c.j2)
            }
            if codes[codes.count - 1].tag == .equal {
                let c = codes[codes.count - 1]
                codes[codes.count - 1] = Opcode(
                    tag: .equal, i1: c.i1, i2: min(c.i2, c.i1 + n), j1: c.j1, j2: min(c.j2, c.j1 + n))
            }
            var groups: [[Opcode]] = []
            var group: [Opcode] = []
            for var code in codes {
                if code.tag == .equal, code.i2 - code.i1 > 2 * n {
                    group.append(
                        Opcode(
                            tag: .equal, i1: code.i1, i2: min(code.i2, code.i1 + n), j1: code.j1,
                            j2: min(code.j2, code.j1 + n)))
                    groups.append(group)
                    group = []
                    (code.i1, code.j1) = (max(code.i1, code.i2 - n), max(code.j1, code.j2 - n))
                }
                group.append(code)
            }
            if !group.isEmpty, !(group.count == 1 && group[0].tag == .equal) { groups.append(group) }
            return groups
        }
    }
}
