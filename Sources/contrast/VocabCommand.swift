import ArgumentParser
import Data
import Foundation
import Text

/// `contrast vocab`: learn a WordPiece vocab.txt from text, so no model hub is needed (docs/text.md).
struct VocabCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "vocab",
        abstract: "Learn a WordPiece vocabulary (BERT's vocab.txt) from text files or prepared text data sets.",
        discussion: """
            Each FILE is a UTF-8 text file (one text a line) or a folder of `contrast prepare text` shards (every \
            text field of its training split). Words are BERT's basic tokens under the same options the tokenizer \
            will use; the vocabulary holds [PAD] [UNK] [CLS] [SEP] [MASK], the alphabet (each scalar as a word start \
            and as a ## continuation), then byte-pair merges of the most frequent adjacent pieces until it has --size \
            tokens or no pair occurs --min-frequency times. The result depends only on the texts and the options.
            """)

    @Option(help: "Tokens in the vocabulary, special tokens and alphabet included.") var size: Int
    @Option(help: ArgumentHelp("The vocab.txt to write (atomically).", valueName: "path")) var out: String
    @Flag(help: "Keep case (BERT's cased vocabularies); the default lower-cases, as do_lower_case=True.") var cased = false
    @Flag(inversion: .prefixedNo, help: "Strip accents (NFD, nonspacing marks dropped); the default follows lower-casing.")
    var stripAccents: Bool?
    @Option(help: "Merge a pair only if it occurs at least this often.") var minFrequency = 2
    @Option(help: "At most this many scalars in the alphabet, the most frequent; rarer ones tokenize as [UNK].") var limitAlphabet = 1000
    @Argument(help: ArgumentHelp("Text files (one text a line) or prepared text data set folders.", valueName: "FILE")) var files: [String]

    func validate() throws {
        if files.isEmpty { throw ValidationError("give at least one text file or prepared data set to learn from") }
        if size < 1 { throw ValidationError("--size must be positive, got \(size)") }
        if minFrequency < 1 { throw ValidationError("--min-frequency must be at least 1, got \(minFrequency)") }
        if limitAlphabet < 1 { throw ValidationError("--limit-alphabet must be at least 1, got \(limitAlphabet)") }
    }

    func run() throws {
        try reportingErrors {
            var trainer = VocabularyTrainer(size: size, options: TokenizerOptions(lowercase: !cased, stripAccents: stripAccents),
                                            minFrequency: minFrequency, limitAlphabet: limitAlphabet)
            for file in files {
                var isDirectory: ObjCBool = false
                if FileManager.default.fileExists(atPath: file, isDirectory: &isDirectory), isDirectory.boolValue {
                    try ShardedDataset(directory: ShardedDataset.splits(of: file).train).forEachText { trainer.add($0) }
                } else {
                    try trainer.add(file: file)
                }
            }
            let (vocabulary, summary) = try trainer.train(source: out)
            try vocabulary.write(to: out)
            say("\(out): \(vocabulary.count) tokens (5 special, \(2 * summary.alphabet) alphabet, \(vocabulary.count - 5 - 2 * summary.alphabet) merged pieces) from "
                + "\(summary.texts) texts, \(summary.distinctWords) distinct words"
                + (vocabulary.count < size ? "; fewer than --size \(size), as no other pair occurs --min-frequency \(minFrequency) times" : ""))
        }
    }
}
