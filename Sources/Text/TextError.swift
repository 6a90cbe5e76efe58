/// A mistake in a vocabulary or a text to encode: one line naming the file (and line), or the text,
/// and the fix.
public enum TextError: Error, CustomStringConvertible, Equatable, Sendable {
    /// A vocabulary or text file cannot be read.
    case unreadable(path: String, reason: String)
    /// A line of the vocabulary is not a usable token (empty, not UTF-8, a carriage return).
    case badToken(path: String, line: Int, problem: String)
    /// The same token on two lines: ids would be ambiguous.
    case duplicateToken(path: String, line: Int, firstLine: Int, token: String)
    /// One of the special tokens BERT needs is not in the vocabulary.
    case missingSpecialToken(path: String, token: String)
    /// A text (or pair) has more tokens than `maxLength` and truncation is off.
    case textTooLong(index: Int, tokens: Int, maxLength: Int)
    /// `maxLength` leaves no room for the special tokens.
    case maxLengthTooSmall(maxLength: Int, minimum: Int)
    /// `contrast vocab` was asked for something it cannot make.
    case badVocabularyRequest(String)

    public var description: String {
        switch self {
        case let .unreadable(path, reason):
            return "\(path): cannot read it: \(reason); check the path"
        case let .badToken(path, line, problem):
            return "\(path) line \(line): \(problem); a vocab.txt holds one token a line, UTF-8, \\n line ends, no empty lines"
        case let .duplicateToken(path, line, firstLine, token):
            return "\(path) line \(line): token '\(token)' is already on line \(firstLine); remove one of them (each token needs one id)"
        case let .missingSpecialToken(path, token):
            return "\(path): no line holds \(token); a BERT vocabulary needs [PAD], [UNK], [CLS] and [SEP], one a line: add it, or make a vocabulary with `contrast vocab`"
        case let .textTooLong(index, tokens, maxLength):
            return "text \(index + 1) has \(tokens) tokens with [CLS] and [SEP], more than max_length \(maxLength); shorten it, raise max_length, or let long texts be truncated"
        case let .maxLengthTooSmall(maxLength, minimum):
            return "max_length \(maxLength) leaves no room for the text; it must be at least \(minimum) ([CLS], [SEP] and one token)"
        case let .badVocabularyRequest(problem):
            return problem
        }
    }
}
