import Config
import Foundation
import NN
import RunFiles

/// A trained model as an ONNX file (onnx.ai; docs/export.md, "ONNX"): the computation graph of
/// x to the representation h (and with `--what model` to the embedding z) with the parameters
/// inside, for onnxruntime and every other ONNX runtime.
///
/// Opset 17 (LayerNormalization is an operator there; GELU and GroupNorm are not before 20 and
/// 18, so they are written as the formulas contrast computes), IR version 8, no custom domain.
/// The protobuf is written by `ProtobufMessage`: field numbers are onnx.proto's.
///
/// Graph: input `input`, float32 [N, I] for an MLP or [N, C, H, W] for the CNN and the ViT (the
/// same numbers as contrast's NCHW rows; uint8 pixels as byte / 255), N dynamic. Outputs
/// `representation` [N, R] (h, after the adapter when there is one) and, for `.model`,
/// `embedding` [N, E] (z = u / max(|u|, 1e-12), what the loss compares). Parameters are
/// initializers under their safetensors names (`ModelExport`); GroupNorm's gamma and beta are
/// stored [C, 1, 1] to broadcast over H W. A two-tower model's pair tower is not in the file.
public enum ONNXExport {
    public static let opset = 17
    public static let irVersion = 8
    public static let inputName = "input"
    public static let representationName = "representation"
    public static let embeddingName = "embedding"

    /// The input's shape after N: [I] for an MLP encoder, [C, H, W] for the CNN and the ViT.
    public static func inputShape(_ model: ContrastiveModel) -> [Int] {
        if let stem = ModelExport.convolutionStem(model) { return [stem.inChannels, stem.height, stem.width] }
        if let patches = ModelExport.patchEmbedding(model) { return [patches.channels, patches.height, patches.imageWidth] }
        return [model.inputWidth]
    }

    /// The ONNX file of `part` of a trained model.
    /// - Throws: for a layer the graph cannot express (none of `ContrastiveModel`'s encoders).
    public static func file(_ trained: TrainedModel, part: ModelExport.Part) throws -> Data {
        let model = trained.model
        if HuggingFaceBert.Parts(model) != nil {
            throw ONNXGraph.Unsupported(description: "cannot export a BERT encoder to ONNX in contrast's exporter; use --format hf (a Hugging Face "
                              + "directory, which transformers and optimum export to ONNX) or --format safetensors")
        }
        var graph = ONNXGraph(model: model, names: try ModelExport.exportedNames(model, part: part))
        var h = try graph.lower(model.encoder, inputName)
        if let adapter = model.adapter { h = try graph.lower(adapter, h) }
        var outputs = [(representationName, model.representationWidth)]
        graph.identity(h, output: representationName)
        if part == .model {
            graph.identity(try graph.lower(model.head, h), output: embeddingName)
            outputs.append((embeddingName, model.embeddingWidth))
        }
        let pixels = inputShape(model).count == 3 ? "; images as byte / 255, NCHW" : ""
        var body = ProtobufMessage()
        for node in graph.nodes { body.message(1, node) }
        body.string(2, "contrast")
        for initializer in graph.initializers { body.message(5, initializer) }
        body.string(10, "contrast \(part.rawValue) of \(trained.source): \(inputName) float32 [N, "
                    + inputShape(model).map(String.init).joined(separator: ", ") + "]\(pixels)")
        body.message(11, valueInfo(inputName, shape: inputShape(model)))
        for (name, width) in outputs { body.message(12, valueInfo(name, shape: [width])) }

        var file = ProtobufMessage()
        file.int(1, irVersion)
        file.string(2, "contrast")
        file.string(3, contrastVersion)
        file.message(7, body)
        var opsetImport = ProtobufMessage()
        opsetImport.string(1, "")
        opsetImport.int(2, opset)
        file.message(8, opsetImport)
        for (key, value) in [("contrast_version", contrastVersion), ("contents", part.rawValue), ("source", trained.source),
                             ("config", trained.config.yaml())] {
            var entry = ProtobufMessage()
            entry.string(1, key)
            entry.string(2, value)
            file.message(14, entry)
        }
        return Data(file.bytes)
    }

    /// A float32 tensor value of shape [N, `shape`...], N the dynamic batch.
    static func valueInfo(_ name: String, shape: [Int]) -> ProtobufMessage {
        var dimensions = ProtobufMessage()
        var batch = ProtobufMessage()
        batch.string(2, "N")
        dimensions.message(1, batch)
        for size in shape {
            var dimension = ProtobufMessage()
            dimension.int(1, size)
            dimensions.message(1, dimension)
        }
        var tensor = ProtobufMessage()
        tensor.int(1, ONNXGraph.DataType.float.rawValue)
        tensor.message(2, dimensions)
        var type = ProtobufMessage()
        type.message(1, tensor)
        var info = ProtobufMessage()
        info.string(1, name)
        info.message(2, type)
        return info
    }
}

extension ModelExport {
    /// The file name of every exported parameter, by its arena offset: the safetensors names.
    static func exportedNames(_ model: ContrastiveModel, part: Part) throws -> [Int: String] {
        var names: [Int: String] = [:]
        for tower in try towers(model, part: part) {
            for slice in tower.parameters { names[slice.offset] = slice.name }
            for (index, linear) in tower.layers.enumerated() {
                names[linear.weight.offset] = "\(tower.name).\(2 * index).weight"
                if let bias = linear.bias { names[bias.offset] = "\(tower.name).\(2 * index).bias" }
            }
        }
        return names
    }
}

/// An ONNX graph being built: nodes in topological order (each layer's after its input's) and
/// initializers. Values are named `/<op>_<k>`; parameters by `names`, constants `const_<k>`.
struct ONNXGraph {
    enum DataType: Int { case float = 1, int64 = 7 }

    enum Attribute {
        case int(String, Int)
        case ints(String, [Int])
        case float(String, Float)

        var message: ProtobufMessage {
            var message = ProtobufMessage()
            // AttributeProto: name 1, f 2, i 3, ints 8, type 20 (FLOAT 1, INT 2, INTS 7).
            switch self {
            case .int(let name, let value):
                message.string(1, name); message.int(3, value); message.int(20, 2)
            case .ints(let name, let values):
                message.string(1, name); message.packedInts(8, values); message.int(20, 7)
            case .float(let name, let value):
                message.string(1, name); message.float(2, value); message.int(20, 1)
            }
            return message
        }
    }

    let model: ContrastiveModel
    let names: [Int: String]
    private(set) var nodes: [ProtobufMessage] = []
    private(set) var initializers: [ProtobufMessage] = []
    private var written: Set<String> = []
    private var counter = 0

    init(model: ContrastiveModel, names: [Int: String]) {
        self.model = model
        self.names = names
    }

    struct Unsupported: Error, CustomStringConvertible {
        var description: String
    }

    /// Appends `op` reading `inputs`; returns its (first) output's name.
    @discardableResult
    mutating func node(_ op: String, _ inputs: [String], _ attributes: [Attribute] = [], output: String? = nil) -> String {
        counter += 1
        let name = output ?? "/\(op)_\(counter)"
        // NodeProto: input 1, output 2, name 3, op_type 4, attribute 5.
        var node = ProtobufMessage()
        for input in inputs { node.string(1, input) }
        node.string(2, name)
        node.string(3, "\(op)_\(counter)")
        node.string(4, op)
        for attribute in attributes { node.message(5, attribute.message) }
        nodes.append(node)
        return name
    }

    mutating func identity(_ value: String, output: String) { node("Identity", [value], output: output) }

    /// A tensor initializer (TensorProto: dims 1, data_type 2, float_data 4, int64_data 7, name 8, raw_data 9).
    private mutating func tensor(_ name: String, dims: [Int], type: DataType, fill: (inout ProtobufMessage) -> Void) -> String {
        guard written.insert(name).inserted else { return name }
        var tensor = ProtobufMessage()
        if !dims.isEmpty { tensor.packedInts(1, dims) }
        tensor.int(2, type.rawValue)
        fill(&tensor)
        tensor.string(8, name)
        initializers.append(tensor)
        return name
    }

    /// A parameter of the model as an initializer under its file name, in `dims` (its own shape by default).
    mutating func parameter(_ slice: ParameterSlice, dims: [Int]? = nil) -> String {
        let name = names[slice.offset] ?? slice.name
        let values = Array(UnsafeBufferPointer(start: model.arena.parameters(slice), count: slice.count))
        return tensor(name, dims: dims ?? slice.shape, type: .float) { $0.bytes(9, ProtobufMessage.littleEndianBytes(values)) }
    }

    /// An int64 constant (a shape, axes or an index): a 1-D tensor, or a scalar when `scalar`.
    mutating func ints(_ values: [Int], scalar: Bool = false) -> String {
        counter += 1
        return tensor("const_\(counter)", dims: scalar ? [] : [values.count], type: .int64) { $0.packedInts(7, values) }
    }

    /// A float32 scalar constant.
    mutating func scalar(_ value: Float) -> String {
        counter += 1
        return tensor("const_\(counter)", dims: [], type: .float) { $0.packedFloats(4, [value]) }
    }

    /// A float32 constant of `dims`.
    mutating func floats(_ values: [Float], dims: [Int]) -> String {
        counter += 1
        return tensor("const_\(counter)", dims: dims, type: .float) { $0.bytes(9, ProtobufMessage.littleEndianBytes(values)) }
    }

    // MARK: Layers

    /// The nodes of `layer` applied to `x`; returns the output's name. Rows of 2-D layers are
    /// [N, width], convolutional maps [N, C, H, W], token sequences [N, T, D].
    mutating func lower(_ layer: Layer, _ x: String) throws -> String {
        switch layer {
        case let sequence as Sequential:
            var y = x
            for inner in sequence.layers { y = try lower(inner, y) }
            return y
        case let linear as Linear:
            let inputs = [x, parameter(linear.weight)] + (linear.bias.map { [parameter($0)] } ?? [])
            let y = node("Gemm", inputs, [.int("transB", 1)])
            return linear.activation == .relu ? node("Relu", [y]) : y
        case is ReLU: return node("Relu", [x])
        case is GELU: return gelu(x)
        // The exported network is the inference one: dropout and drop-path pass x through.
        case is Dropout, is DropPath: return x
        case is L2Normalize:
            // z = u / max(|u|, 1e-12), as Kernels.l2NormalizeRows.
            let norm = node("ReduceL2", [x], [.ints("axes", [1]), .int("keepdims", 1)])
            return node("Div", [x, node("Max", [norm, scalar(1e-12)])])
        case let conv as Conv2d: return convolution(conv, x)
        case let pool as MaxPool2d:
            // ONNX's MaxPool pads with -infinity, as MaxPool2d: padding never wins.
            let p = pool.padding
            return node("MaxPool", [x], [.ints("kernel_shape", [pool.kernel, pool.kernel]), .ints("strides", [pool.stride, pool.stride]),
                                         .ints("pads", [p, p, p, p])])
        case let norm as GroupNorm:
            // A fused ReLU (the stem's, the blocks' inner ones) is its own node, as in PyTorch's module.
            let y = groupNorm(norm, x)
            return norm.activation == .relu ? node("Relu", [y]) : y
        case let block as ResidualBlock:
            let main = try lower(block.main, x)
            let skip = block.projection.map { convolution($0, x) } ?? x
            return node("Relu", [node("Add", [main, skip])])
        case is GlobalAveragePool:
            return node("Flatten", [node("GlobalAveragePool", [x])], [.int("axis", 1)])
        case let pool as AdaptiveAveragePool: return adaptivePool(pool, x)
        case let multiScale as MultiScalePool:
            let pooled = adaptivePool(multiScale.pool, x)
            let inner = try lower(multiScale.inner, try lower(multiScale.stage, x))
            return node("Concat", [pooled, inner], [.int("axis", 1)])
        case let adapter as ResidualAdapter:
            // h' = h + up(relu(down(h))); `down` has its ReLU fused.
            return node("Add", [x, try lower(adapter.up, try lower(adapter.down, x))])
        case let patches as PatchEmbedding:
            // Conv2d(C, D, p, stride p), flatten(2).transpose(1, 2): [N, D, H/p, W/p] -> [N, N_p, D].
            let maps = node("Conv", [x, parameter(patches.weight), parameter(patches.bias)],
                            [.ints("kernel_shape", [patches.patch, patches.patch]), .ints("strides", [patches.patch, patches.patch])])
            let flat = node("Reshape", [maps, ints([0, patches.width, -1])])
            return node("Transpose", [flat], [.ints("perm", [0, 2, 1])])
        case let positions as PositionEmbedding: return positionEmbedding(positions, x)
        case let block as TransformerBlock: return try transformerBlock(block, x)
        case let perToken as PerToken:
            guard let norm = perToken.inner as? LayerNorm else { break }
            return layerNorm(norm, x)
        case let pool as TokenPool:
            switch pool.mode {
            case .classToken: return node("Gather", [x, ints([0], scalar: true)], [.int("axis", 1)])
            case .mean: return node("ReduceMean", [x], [.ints("axes", [1]), .int("keepdims", 0)])
            }
        default: break
        }
        throw Unsupported(description: "cannot export to ONNX: the \(type(of: layer)) layer has no ONNX form in contrast's exporter; "
                          + "export --format safetensors instead")
    }

    /// GELU in its erf form, as Kernels.gelu computes it: 0.5 x (1 + erf(x / sqrt 2)) (the kernel's erf is
    /// a rational approximation accurate to float rounding, so onnxruntime's Erf agrees to ~1e-7).
    private mutating func gelu(_ x: String) -> String {
        let erf = node("Erf", [node("Mul", [x, scalar(0.70710678118654752)])])
        return node("Mul", [node("Mul", [x, scalar(0.5)]), node("Add", [erf, scalar(1)])])
    }

    private mutating func convolution(_ conv: Conv2d, _ x: String) -> String {
        let inputs = [x, parameter(conv.weight)] + (conv.bias.map { [parameter($0)] } ?? [])
        let p = conv.padding
        return node("Conv", inputs, [.ints("kernel_shape", [conv.kernel, conv.kernel]), .ints("strides", [conv.stride, conv.stride]),
                                     .ints("pads", [p, p, p, p])])
    }

    /// GroupNormalization is opset 18: per (sample, group) of [N, G, C/G H W], (x - mean) / sqrt(var + eps)
    /// with the biased variance, then gamma and beta per channel.
    private mutating func groupNorm(_ norm: GroupNorm, _ x: String) -> String {
        let grouped = node("Reshape", [x, ints([0, norm.groups, -1])])
        let mean = node("ReduceMean", [grouped], [.ints("axes", [2]), .int("keepdims", 1)])
        let centred = node("Sub", [grouped, mean])
        let variance = node("ReduceMean", [node("Mul", [centred, centred])], [.ints("axes", [2]), .int("keepdims", 1)])
        let normalised = node("Div", [centred, node("Sqrt", [node("Add", [variance, scalar(norm.epsilon)])])])
        let maps = node("Reshape", [normalised, ints([0, norm.channels, norm.height, norm.width])])
        let perChannel = [norm.channels, 1, 1]
        return node("Add", [node("Mul", [maps, parameter(norm.scale, dims: perChannel)]), parameter(norm.shift, dims: perChannel)])
    }

    /// AdaptiveAvgPool2d((G, G)) with contrast's (possibly overlapping) bins, as one MatMul of the
    /// [N, C, H W] maps with the [H W, G G] matrix of 1/|cell| over each cell's pixels, then [N, C G G].
    private mutating func adaptivePool(_ pool: AdaptiveAveragePool, _ x: String) -> String {
        let hw = pool.height * pool.width, gg = pool.cells * pool.cells
        var weights = [Float](repeating: 0, count: hw * gg)
        for u in 0..<pool.cells {
            for v in 0..<pool.cells {
                let share = 1 / Float(pool.rows[u].count * pool.columns[v].count)
                for h in pool.rows[u] { for w in pool.columns[v] { weights[(h * pool.width + w) * gg + u * pool.cells + v] = share } }
            }
        }
        let flat = node("Reshape", [x, ints([0, pool.channels, hw])])
        let cells = node("MatMul", [flat, floats(weights, dims: [hw, gg])])
        return node("Reshape", [cells, ints([0, pool.channels * gg])])
    }

    private mutating func layerNorm(_ norm: LayerNorm, _ x: String) -> String {
        node("LayerNormalization", [x, parameter(norm.scale), parameter(norm.shift)], [.int("axis", -1), .float("epsilon", norm.epsilon)])
    }

    /// A Linear on [N, T, I] tokens: MatMul with W^T (a Transpose of the stored [O, I] weight) and the bias added.
    private mutating func tokenLinear(_ linear: Linear, _ x: String) -> String {
        let product = node("MatMul", [x, node("Transpose", [parameter(linear.weight)], [.ints("perm", [1, 0])])])
        return linear.bias.map { node("Add", [product, parameter($0)]) } ?? product
    }

    /// [CLS] (expanded to [N, 1, D]) before the tokens, then the position embedding added.
    private mutating func positionEmbedding(_ positions: PositionEmbedding, _ x: String) -> String {
        var tokens = x
        if let classToken = positions.classToken {
            let batch = node("Gather", [node("Shape", [x]), ints([0])], [.int("axis", 0)])
            let shape = node("Concat", [batch, ints([1, positions.width])], [.int("axis", 0)])
            tokens = node("Concat", [node("Expand", [parameter(classToken), shape]), x], [.int("axis", 1)])
        }
        return node("Add", [tokens, parameter(positions.positions)])
    }

    /// A pre-LN block: u = x + proj(attn(qkv(LN1(x)))), y = u + fc2(gelu(fc1(LN2(u)))).
    private mutating func transformerBlock(_ block: TransformerBlock, _ x: String) throws -> String {
        guard block.placement == .pre else {
            throw Unsupported(description: "cannot export to ONNX: post-LN Transformer blocks have no ONNX form in contrast's exporter yet; "
                              + "export --format safetensors instead")
        }
        let u = node("Add", [x, attention(block, layerNorm(block.norm1, x))])
        let hidden = gelu(tokenLinear(block.expand, layerNorm(block.norm2, u)))
        return node("Add", [u, tokenLinear(block.contract, hidden)])
    }

    /// Multi-head self-attention of `SelfAttention` (no mask: every image token is real):
    /// qkv [N, T, 3D] -> [3, N, H, T, E]; softmax(q k^T / sqrt(E)) v per head; heads side by side; proj.
    private mutating func attention(_ block: TransformerBlock, _ x: String) -> String {
        let heads = block.attention.heads, e = block.attention.headWidth
        let qkv = node("Reshape", [tokenLinear(block.queryKeyValue, x), ints([0, 0, 3, heads, e])])
        let split = node("Transpose", [qkv], [.ints("perm", [2, 0, 3, 1, 4])])
        let part = { (graph: inout ONNXGraph, index: Int) in graph.node("Gather", [split, graph.ints([index], scalar: true)], [.int("axis", 0)]) }
        let q = part(&self, 0), k = part(&self, 1), v = part(&self, 2)
        let keys = node("Transpose", [k], [.ints("perm", [0, 1, 3, 2])])
        let scores = node("Mul", [node("MatMul", [q, keys]), scalar(1 / Float(e).squareRoot())])
        let weighted = node("MatMul", [node("Softmax", [scores], [.int("axis", -1)]), v])
        let merged = node("Reshape", [node("Transpose", [weighted], [.ints("perm", [0, 2, 1, 3])]), ints([0, 0, block.width])])
        return tokenLinear(block.projection, merged)
    }
}
