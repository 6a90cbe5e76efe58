/// BERT's basic tokenisation, as `tokenizers`' BertNormalizer then BertPreTokenizer do it (the
/// backend of transformers' BertTokenizerFast), in one pass over the text's UTF-8 bytes:
/// 1. special tokens ([CLS], [SEP], [PAD], [UNK], [MASK] when the vocabulary has them) written in
///    the raw text are tokens of their own, as they are, case and all;
/// 2. clean: NUL, U+FFFD and control / format / private-use scalars are dropped, whitespace
///    becomes a break (UnicodeClasses.swift has the exact classes);
/// 3. CJK ideographs are words of their own;
/// 4. strip accents (NFD, nonspacing marks dropped), then lower-case, each by an option;
/// 5. split at whitespace, and at punctuation, each punctuation scalar a word of its own.
/// ASCII takes a table lookup per byte; other scalars a table (or Unicode's properties outside
/// the Basic Multilingual Plane). Words go to a `WordSink` as UTF-8 bytes in a reused buffer.
struct BasicTokenizer: Sendable {
    var lowercase: Bool
    var stripAccents: Bool

    /// What becomes of an ASCII byte: 0 a letter of a word, 1 dropped, 2 a break, 3 punctuation.
    static let asciiKinds: [UInt8] = (0..<128).map { byte in
        let kind = ScalarClass.of(UInt32(byte))
        if kind.contains(.dropped) { return 1 }
        if kind.contains(.whitespace) { return 2 }
        if kind.contains(.punctuation) { return 3 }
        return 0
    }

    /// Calls `sink` for each word and special token of `text`, in order.
    func tokenize<Sink: WordSink>(_ text: UnsafeBufferPointer<UInt8>, specials: [([UInt8], Int32)], into sink: inout Sink) {
        // The sink's buffers, moved out for the pass (no allocation per text once they have grown).
        var scratch = sink.scratch
        sink.scratch = TokenizerScratch()
        defer { sink.scratch = scratch }
        let count = text.count
        guard count > 0, let base = text.baseAddress else { return }
        let lowercase = lowercase
        let asciiKinds = Self.asciiKinds   // once, not a lazy global's check per byte
        var index = 0
        while index < count {
            let byte = base[index]
            if byte < 0x80 {
                if byte == UInt8(ascii: "["), let (length, id) = Self.special(at: index, in: text, specials) {
                    scratch.word.flush(into: &sink)
                    sink.special(id)
                    index += length
                    continue
                }
                switch asciiKinds[Int(byte)] {
                case 0:
                    scratch.word.append(lowercase && byte >= 65 && byte <= 90 ? byte | 0x20 : byte)
                case 2:
                    scratch.word.flush(into: &sink)
                case 3:
                    scratch.word.flush(into: &sink)
                    scratch.word.append(byte)
                    scratch.word.flush(into: &sink)
                default:
                    break
                }
                index += 1
                continue
            }
            let (value, length) = Self.decode(base + index, byte)
            index += length
            let kind = scalarClass(value)
            if kind.contains(.dropped) { continue }
            if kind.contains(.whitespace) { scratch.word.flush(into: &sink); continue }
            scratch.normalized.removeAll(keepingCapacity: true)
            normalize(value, into: &scratch.normalized, parts: &scratch.parts)
            if kind.contains(.ideograph) {
                scratch.word.flush(into: &sink)
                for scalar in scratch.normalized { scratch.word.append(scalar: scalar) }
                scratch.word.flush(into: &sink)
                continue
            }
            for scalar in scratch.normalized {
                if scalarClass(scalar).contains(.punctuation) {
                    scratch.word.flush(into: &sink)
                    scratch.word.append(scalar: scalar)
                    scratch.word.flush(into: &sink)
                } else {
                    scratch.word.append(scalar: scalar)
                }
            }
        }
        scratch.word.flush(into: &sink)
    }

    /// Step 4 for one scalar: its decomposition without the accents, each part lower-cased.
    @inline(__always) private func normalize(_ value: UInt32, into out: inout [UInt32], parts: inout [UInt32]) {
        if stripAccents {
            parts.removeAll(keepingCapacity: true)
            appendDecomposition(value, to: &parts)
            for part in parts where !scalarClass(part).contains(.accent) {
                if lowercase { appendLowercase(part, to: &out) } else { out.append(part) }
            }
        } else if lowercase {
            appendLowercase(value, to: &out)
        } else {
            out.append(value)
        }
    }

    /// The scalar starting with `lead` (a non-ASCII lead byte of valid UTF-8: a Swift String's).
    @inline(__always) static func decode(_ pointer: UnsafePointer<UInt8>, _ lead: UInt8) -> (UInt32, Int) {
        if lead < 0xE0 { return ((UInt32(lead & 0x1F) << 6) | UInt32(pointer[1] & 0x3F), 2) }
        if lead < 0xF0 { return ((UInt32(lead & 0x0F) << 12) | (UInt32(pointer[1] & 0x3F) << 6) | UInt32(pointer[2] & 0x3F), 3) }
        return ((UInt32(lead & 0x07) << 18) | (UInt32(pointer[1] & 0x3F) << 12) | (UInt32(pointer[2] & 0x3F) << 6) | UInt32(pointer[3] & 0x3F), 4)
    }

    /// The longest special token at `index`, as (bytes, id).
    @inline(__always) static func special(at index: Int, in text: UnsafeBufferPointer<UInt8>, _ specials: [([UInt8], Int32)]) -> (Int, Int32)? {
        for (bytes, id) in specials where index + bytes.count <= text.count {
            var matches = true
            for offset in 0..<bytes.count where text[index + offset] != bytes[offset] { matches = false; break }
            if matches { return (bytes.count, id) }
        }
        return nil
    }
}

/// Receives the basic tokenizer's output.
protocol WordSink {
    /// Buffers the tokenizer reuses from text to text.
    var scratch: TokenizerScratch { get set }
    /// A word: its UTF-8 bytes (valid only during the call) and its number of scalars.
    mutating func word(_ bytes: UnsafeBufferPointer<UInt8>, scalars: Int)
    /// A special token written in the text.
    mutating func special(_ id: Int32)
}

/// What one pass of the basic tokenizer works in.
struct TokenizerScratch {
    var word = WordBuffer()
    /// One scalar's normalised form, and its decomposition.
    var normalized: [UInt32] = []
    var parts: [UInt32] = []
}

/// The word being built, as UTF-8 bytes and a scalar count.
struct WordBuffer {
    var bytes: [UInt8] = []
    var scalars = 0

    @inline(__always) mutating func append(_ byte: UInt8) {
        bytes.append(byte)
        scalars += 1
    }

    @inline(__always) mutating func append(scalar value: UInt32) {
        if value < 0x80 {
            bytes.append(UInt8(value))
        } else if value < 0x800 {
            bytes.append(UInt8(0xC0 | (value >> 6)))
            bytes.append(UInt8(0x80 | (value & 0x3F)))
        } else if value < 0x10000 {
            bytes.append(UInt8(0xE0 | (value >> 12)))
            bytes.append(UInt8(0x80 | ((value >> 6) & 0x3F)))
            bytes.append(UInt8(0x80 | (value & 0x3F)))
        } else {
            bytes.append(UInt8(0xF0 | (value >> 18)))
            bytes.append(UInt8(0x80 | ((value >> 12) & 0x3F)))
            bytes.append(UInt8(0x80 | ((value >> 6) & 0x3F)))
            bytes.append(UInt8(0x80 | (value & 0x3F)))
        }
        scalars += 1
    }

    @inline(__always) mutating func flush<Sink: WordSink>(into sink: inout Sink) {
        guard scalars > 0 else { return }
        let scalars = scalars
        bytes.withUnsafeBufferPointer { sink.word($0, scalars: scalars) }
        bytes.removeAll(keepingCapacity: true)
        self.scalars = 0
    }
}
