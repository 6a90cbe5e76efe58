import Tensor

/// Which tokens of each sample are real (1) and which are padding (0): B x T bytes, written by
/// `BertEmbeddings` from its input and read by the attention (`SelfAttention.keyMask`) and the pooling.
/// One per encoder; valid from a forward until the next.
public final class TokenMask {
    public private(set) var pointer: UnsafeMutablePointer<UInt8>
    private var capacity: Int

    public init() {
        capacity = 0
        pointer = .allocate(capacity: 1)
    }

    deinit { pointer.deallocate() }

    /// Room for `count` bytes; reallocates (so readers must take `pointer` again) only when it grows.
    func reserve(_ count: Int) {
        guard count > capacity else { return }
        pointer.deallocate()
        pointer = .allocate(capacity: count)
        capacity = count
    }
}

/// BERT's input embeddings (Devlin et al. 2019; `BertEmbeddings` of transformers' modeling_bert.py,
/// before its LayerNorm and dropout, which are layers of their own): token t of a sample is
/// e_t = word[id_t] + position[t] + tokenType[type_t], positions counted from 0 whatever the padding.
///
/// Shapes: B batch, T tokens, D width, V vocabulary, P positions (at least T), Y token types.
/// Input row (3T floats, each an integer): [ids (T) | attention mask (T, 1 real, 0 padding) | token types (T)],
/// the three inputs of `BertModel` side by side (`BERT.row`). Output: B x (T D), token-major.
/// Tables (PyTorch's `nn.Embedding` weights): word V x D, position P x D, token type Y x D.
///
/// The ids are not differentiable: backward adds dL/de_t into the three rows each token read and
/// returns no input gradient. The padding id's row gets no gradient (`nn.Embedding(padding_idx:)`,
/// as BertModel builds it): it stays at its initial zeros.
public final class BertEmbeddings: Layer {
    public let tokens: Int, width: Int
    public let vocabularySize: Int, maximumPositions: Int, tokenTypes: Int
    public let paddingID: Int
    public let words: ParameterSlice, positions: ParameterSlice, types: ParameterSlice
    public var inputWidth: Int { 3 * tokens }
    public var outputWidth: Int { tokens * width }
    /// Always false: ids have no gradient (setting it changes nothing).
    public var computesInputGradient: Bool {
        get { false }
        set {}
    }
    /// The padding of the last forward's samples, which `attentionLayers` read.
    public let mask: TokenMask
    /// The Transformer blocks whose key mask is this input's padding (set on every forward).
    public var attentionLayers: [TransformerBlock] = []
    private let arena: ParameterArena
    private let output = ScratchBuffer()
    /// (word, type) row of every token of the last forward, B T pairs.
    private var rows: [(word: Int, type: Int)] = []

    /// Registers `<name>.word_embeddings.weight` (V x D), `<name>.position_embeddings.weight` (P x D) and
    /// `<name>.token_type_embeddings.weight` (Y x D): BertModel's names under `embeddings`.
    public init(tokens: Int, width: Int, vocabularySize: Int, maximumPositions: Int = 512, tokenTypes: Int = 2, paddingID: Int = 0,
                mask: TokenMask, name: String, arena: ParameterArena) {
        precondition(tokens >= 1 && tokens <= maximumPositions,
                     "BertEmbeddings \(name): \(tokens) tokens do not fit \(maximumPositions) positions")
        precondition(vocabularySize >= 1 && tokenTypes >= 1 && paddingID >= 0 && paddingID < vocabularySize,
                     "BertEmbeddings \(name): padding id \(paddingID) is outside the vocabulary of \(vocabularySize)")
        self.tokens = tokens
        self.width = width
        self.vocabularySize = vocabularySize
        self.maximumPositions = maximumPositions
        self.tokenTypes = tokenTypes
        self.paddingID = paddingID
        self.mask = mask
        self.arena = arena
        words = arena.allocate(name: "\(name).word_embeddings.weight", shape: [vocabularySize, width], kind: .weight)
        positions = arena.allocate(name: "\(name).position_embeddings.weight", shape: [maximumPositions, width], kind: .weight)
        types = arena.allocate(name: "\(name).token_type_embeddings.weight", shape: [tokenTypes, width], kind: .weight)
    }

    /// BERT's initialisation (`_init_weights`): every table N(0, 0.02^2), the padding id's row 0; stream `stream`.
    public func initialise(seed: UInt64, stream: UInt64) {
        var random = RandomStream(seed: seed, stream: RandomStream.id(.initialisation, stream))
        for slice in [words, positions, types] {
            let values = arena.parameters(slice)
            for i in 0..<slice.count { values[i] = 0.02 * random.nextNormal() }
        }
        (arena.parameters(words) + paddingID * width).update(repeating: 0, count: width)
    }

    /// The integer in `value`, or a crash naming what it is: ids come from a tokenizer, and a wrong
    /// one would read another table's memory.
    @inline(__always)
    private func index(_ value: Float, below limit: Int, _ what: String) -> Int {
        let i = Int(exactly: value) ?? -1
        precondition(i >= 0 && i < limit, "BertEmbeddings: \(what) \(value) is not an integer in 0 ..< \(limit)")
        return i
    }

    public func forward(_ input: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
        let t = tokens, d = width
        let y = output.pointer(count: batch * t * d)
        mask.reserve(batch * t)
        rows.removeAll(keepingCapacity: true)
        let word = arena.parameters(words), position = arena.parameters(positions), type = arena.parameters(types)
        for b in 0..<batch {
            let row = input + b * inputWidth
            for i in 0..<t {
                let id = index(row[i], below: vocabularySize, "token id")
                let tokenType = index(row[2 * t + i], below: tokenTypes, "token type")
                mask.pointer[b * t + i] = row[t + i] != 0 ? 1 : 0
                rows.append((id, tokenType))
                let e = y + (b * t + i) * d, w = word + id * d, p = position + i * d, y0 = type + tokenType * d
                // (word + position) + type, the order of BertEmbeddings' sums.
                for c in 0..<d { e[c] = (w[c] + y0[c]) + p[c] }
            }
        }
        for block in attentionLayers { block.keyMask = UnsafePointer(mask.pointer) }
        return y
    }

    public func backward(_ outputGradient: UnsafeMutablePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float>? {
        let t = tokens, d = width
        let dWord = arena.gradients(words), dPosition = arena.gradients(positions), dType = arena.gradients(types)
        for b in 0..<batch {
            for i in 0..<t {
                let (id, tokenType) = rows[b * t + i]
                let g = outputGradient + (b * t + i) * d
                if id != paddingID { Kernels.axpy(dWord + id * d, alpha: 1, x: g, count: d) }
                Kernels.axpy(dPosition + i * d, alpha: 1, x: g, count: d)
                Kernels.axpy(dType + tokenType * d, alpha: 1, x: g, count: d)
            }
        }
        return nil
    }
}

/// The sequence's summary over its real tokens only: the mean of the states of the tokens the mask
/// marks real (sentence-transformers' mean pooling: sum_t m_t x_t / max(sum_t m_t, 1e-9)), or the
/// first token's state ([CLS]). Shapes: B x (T D) in, B x D out; mask B x T (`TokenMask`).
public final class MaskedTokenPool: Layer {
    public let tokens: Int, width: Int
    public let mode: TokenPool.Mode
    public let mask: TokenMask
    public var inputWidth: Int { tokens * width }
    public var outputWidth: Int { width }
    public var computesInputGradient = true
    private let output = ScratchBuffer()
    private let inputGradient = ScratchBuffer()

    public init(tokens: Int, width: Int, mode: TokenPool.Mode, mask: TokenMask) {
        self.tokens = tokens
        self.width = width
        self.mode = mode
        self.mask = mask
    }

    /// 1 / (real tokens of sample b), 0 for a sample without any (its mean is 0, as sentence-transformers'
    /// clamp makes it).
    private func share(_ b: Int) -> Float {
        var count = 0
        for i in 0..<tokens where mask.pointer[b * tokens + i] != 0 { count += 1 }
        return count == 0 ? 0 : 1 / Float(count)
    }

    public func forward(_ input: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
        let y = output.pointer(count: batch * width)
        for b in 0..<batch {
            let row = y + b * width, x = input + b * inputWidth
            switch mode {
            case .classToken: row.update(from: x, count: width)
            case .mean:
                row.update(repeating: 0, count: width)
                for i in 0..<tokens where mask.pointer[b * tokens + i] != 0 { Kernels.axpy(row, alpha: 1, x: x + i * width, count: width) }
                Kernels.scale(row, by: share(b), count: width)
            }
        }
        return y
    }

    public func backward(_ outputGradient: UnsafeMutablePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float>? {
        guard computesInputGradient else { return nil }
        let dx = inputGradient.pointer(count: batch * inputWidth)
        dx.update(repeating: 0, count: batch * inputWidth)
        for b in 0..<batch {
            let dy = outputGradient + b * width, row = dx + b * inputWidth
            switch mode {
            case .classToken: row.update(from: dy, count: width)
            case .mean:
                let share = share(b)
                for i in 0..<tokens where mask.pointer[b * tokens + i] != 0 {
                    for c in 0..<width { row[i * width + c] = dy[c] * share }
                }
            }
        }
        return dx
    }
}

/// The BERT text encoder (Devlin et al. 2019) as transformers' `BertModel` computes it, without its
/// pooler (sentence embeddings pool the last hidden states instead).
public enum BERT {
    /// An encoder's shape.
    public struct Shape: Sendable, Equatable {
        /// L, Transformer layers.
        public var layers: Int
        /// D, the hidden size.
        public var width: Int
        public var heads: Int
        /// The MLP's (intermediate) width.
        public var feedForward: Int
        /// T, tokens a sample holds (padded or truncated to it).
        public var tokens: Int
        /// V, the vocabulary's size.
        public var vocabularySize: Int
        /// P, positions the table has (max_position_embeddings; at least T).
        public var maximumPositions: Int
        public var tokenTypes: Int
        public var paddingID: Int
        public var pool: TokenPool.Mode
        public var attention: SelfAttention.Mode
        /// hidden_dropout_prob: after the embeddings, the attention's output and the MLP's output; training only.
        public var dropout: Float
        /// attention_probs_dropout_prob; training only.
        public var attentionDropout: Float
        /// layer_norm_eps.
        public var epsilon: Float

        public init(layers: Int, width: Int, heads: Int, feedForward: Int, tokens: Int, vocabularySize: Int,
                    maximumPositions: Int = 512, tokenTypes: Int = 2, paddingID: Int = 0, pool: TokenPool.Mode = .mean,
                    attention: SelfAttention.Mode = .plain, dropout: Float = 0, attentionDropout: Float = 0, epsilon: Float = 1e-12) {
            self.layers = layers
            self.width = width
            self.heads = heads
            self.feedForward = feedForward
            self.tokens = tokens
            self.vocabularySize = vocabularySize
            self.maximumPositions = maximumPositions
            self.tokenTypes = tokenTypes
            self.paddingID = paddingID
            self.pool = pool
            self.attention = attention
            self.dropout = dropout
            self.attentionDropout = attentionDropout
            self.epsilon = epsilon
        }

        /// The input row's width: ids, attention mask and token types, T each.
        public var inputWidth: Int { 3 * tokens }
    }

    /// Named shapes (`model.bert.preset`): (layers, width, heads, feed-forward width).
    public static let presets: [(name: String, layers: Int, width: Int, heads: Int, feedForward: Int)] = [
        ("tiny", 2, 128, 2, 512), ("mini", 4, 256, 4, 1024), ("small", 4, 512, 8, 2048),
    ]

    /// The model's input row of one sample: T ids, T mask values, T token types (all 0 when nil), as floats.
    public static func row(ids: [Int], mask: [Int], types: [Int]? = nil) -> [Float] {
        precondition(ids.count == mask.count && (types?.count ?? ids.count) == ids.count, "BERT.row: ids, mask and types differ in length")
        return ids.map(Float.init) + mask.map(Float.init) + (types ?? [Int](repeating: 0, count: ids.count)).map(Float.init)
    }

    /// embeddings -> LayerNorm -> dropout -> L post-LN blocks (attention, dropout, add, LayerNorm; GELU MLP,
    /// dropout, add, LayerNorm), the padding masked from every attention -> pool (mask-aware mean or [CLS])
    /// -> Linear to `representation` (0: none, h is the pooled D-wide state).
    /// Names under `name`: embeddings.{word_embeddings, position_embeddings, token_type_embeddings, LayerNorm},
    /// layer.<i>.{attn.qkv, attn.proj, norm1, mlp.fc1, mlp.fc2, norm2} (the block's names; `BERT.huggingFaceName`
    /// maps them to BertModel's), then fc. Input B x 3T, output B x representation (or D).
    public static func make(_ shape: Shape, representation: Int, key: DropoutKey = DropoutKey(), name: String,
                            arena: ParameterArena) -> Sequential {
        let d = shape.width, t = shape.tokens, mask = TokenMask()
        let embeddings = BertEmbeddings(tokens: t, width: d, vocabularySize: shape.vocabularySize, maximumPositions: shape.maximumPositions,
                                        tokenTypes: shape.tokenTypes, paddingID: shape.paddingID, mask: mask,
                                        name: "\(name).embeddings", arena: arena)
        var layers: [Layer] = [
            embeddings,
            PerToken(LayerNorm(width: d, epsilon: shape.epsilon, name: "\(name).embeddings.LayerNorm", arena: arena), tokens: t),
            Dropout(width: t * d, probability: shape.dropout, key: key),
        ]
        for i in 0..<shape.layers {
            let block = TransformerBlock(tokens: t, width: d, heads: shape.heads, mlpWidth: shape.feedForward, placement: .post,
                                         attention: shape.attention, epsilon: shape.epsilon, dropout: shape.dropout, hiddenDropout: 0,
                                         attentionDropout: shape.attentionDropout, key: key, name: "\(name).layer.\(i)", arena: arena)
            block.initialStandardDeviation = 0.02
            embeddings.attentionLayers.append(block)
            layers.append(block)
        }
        layers.append(MaskedTokenPool(tokens: t, width: d, mode: shape.pool, mask: mask))
        if representation > 0 {
            let fc = Linear(inputDimensions: d, outputDimensions: representation, name: "\(name).fc", arena: arena)
            layers.append(fc)
        }
        return Sequential(layers)
    }

    /// BertModel's name (transformers' `state_dict` key, without a `bert.` prefix) of the tensor that a
    /// parameter of `make` named `name` (without its prefix) holds, and which third of it: the block's
    /// stacked q, k, v rows are BertModel's three Linears query, key and value. nil: no BertModel tensor
    /// (the fc after pooling).
    public static func huggingFaceNames(_ name: String) -> [String]? {
        if name.hasPrefix("embeddings.") { return [name] }
        let parts = name.split(separator: ".", maxSplits: 2).map(String.init)
        guard parts.count == 3, parts[0] == "layer" else { return nil }
        let layer = "encoder.layer.\(parts[1])", rest = parts[2]
        let suffix = rest.hasSuffix(".weight") ? "weight" : "bias"
        switch rest.dropLast(suffix.count + 1) {
        case "attn.qkv": return ["query", "key", "value"].map { "\(layer).attention.self.\($0).\(suffix)" }
        case "attn.proj": return ["\(layer).attention.output.dense.\(suffix)"]
        case "norm1": return ["\(layer).attention.output.LayerNorm.\(suffix)"]
        case "mlp.fc1": return ["\(layer).intermediate.dense.\(suffix)"]
        case "mlp.fc2": return ["\(layer).output.dense.\(suffix)"]
        case "norm2": return ["\(layer).output.LayerNorm.\(suffix)"]
        default: return nil
        }
    }
}
