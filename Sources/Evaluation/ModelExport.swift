import RunFiles
import Config
import Data
import Foundation
import NN

/// A trained model's parameters as a safetensors file that PyTorch loads into plain modules
/// (docs/export.md).
///
/// Each tower is written as the `torch.nn.Sequential` of Linear and activation modules it is,
/// so the tensor names are that module's `state_dict` keys: Linear l of a tower is module 2 l
/// (an activation module sits between consecutive Linears) and holds `<tower>.<2l>.weight`
/// (O x I, PyTorch's row-major layout, which `Linear` stores too) and `<tower>.<2l>.bias` (O).
/// Towers: `encoder` (x to h), `projection` (h to the unnormalised embedding; z is its L2
/// normalisation), and for two-tower (CLIP) models `pair_encoder` and `pair_projection`.
///
/// The convolutional encoder (`model.encoder: cnn`) is no Sequential of Linears: its tensors keep
/// contrast's parameter names (`encoder.stem.weight`, `encoder.stage1.conv2.weight`, ...), which
/// are the `state_dict` keys of the module docs/export.md describes, and the metadata carries its
/// shape. So is the Vision Transformer (`model.encoder: vit`): timm's names under `encoder.`
/// (`encoder.patch_embed.proj.weight`, `encoder.blocks.0.attn.qkv.weight`, ...), the `state_dict`
/// keys of tools/vit.py's module, with its shape in the metadata. The ResNet (`model.encoder: resnet`) keeps
/// contrast's names too, torchvision's (`encoder.conv1.weight`, `encoder.layer2.0.conv1.weight`, ...; GroupNorm
/// as `norm1` where torchvision has `bn1`, the skip's 1x1 convolution as `projection`), tools/resnet.py's keys. A residual adapter (`model.adapter`) is written as `adapter.down.*` and `adapter.up.*`:
/// h' = h + up(relu(down(h))). The BERT encoder (`model.encoder: bert`) keeps contrast's names too
/// (`encoder.embeddings.word_embeddings.weight`, `encoder.layer.0.attn.qkv.weight`, ...); `--format hf` writes it
/// under BertModel's (docs/text.md).
public enum ModelExport {
    /// How much of the model to write.
    public enum Part: String, Sendable, CaseIterable {
        /// The encoder alone: its output is the representation h.
        case encoder
        /// Encoder and projection head: the embedding z = g(h) / |g(h)|.
        case model
    }

    /// One tower: its name in the file and its Linear layers in order, or (the CNN encoder, the
    /// adapter) its parameters under their own names.
    struct Tower {
        var name: String
        var layers: [Linear]
        /// Written under the arena's names when `layers` is empty.
        var parameters: [ParameterSlice] = []
        /// [I, H1, ..., O]: the input width, then every Linear's output width (Sequential towers).
        var widths: [Int] { layers.isEmpty ? [] : [layers[0].inputWidth] + layers.map(\.outputWidth) }
    }

    /// The convolutional encoder's stem, when the encoder is one (`CNN.make` puts it first).
    static func convolutionStem(_ model: ContrastiveModel) -> Conv2d? { model.encoder.flattened.first as? Conv2d }

    /// The Vision Transformer's patch embedding, when the encoder is one (`VisionTransformer.make` puts it first).
    static func patchEmbedding(_ model: ContrastiveModel) -> PatchEmbedding? { model.encoder.flattened.first as? PatchEmbedding }

    /// The towers of `part`. Throws for a layer the file cannot describe: the mapping holds for
    /// MLPs (Linear, fused or separate ReLU, GELU; dropout, the identity outside training), the head's final L2 normalisation, the CNN
    /// encoder of `CNN.make`, the ResNet of `ResNet.make`, the ViT of `VisionTransformer.make` and the residual adapter.
    static func towers(_ model: ContrastiveModel, part: Part) throws -> [Tower] {
        func tower(_ name: String, _ sequence: Sequential) throws -> Tower {
            for layer in sequence.flattened where !(layer is Linear || layer is ReLU || layer is GELU || layer is L2Normalize || layer is Dropout) {
                throw RunDirectory.Failure(description: "cannot export \(name): its \(type(of: layer)) layer has no place in the "
                                       + "safetensors layout of docs/export.md (Linear, ReLU, GELU, L2 normalisation)")
            }
            return Tower(name: name, layers: sequence.flattened.compactMap { $0 as? Linear })
        }
        /// The arena's parameters under `prefix.`, in their order.
        func named(_ name: String) -> Tower {
            Tower(name: name, layers: [], parameters: model.arena.slices.filter { $0.name.hasPrefix(name + ".") })
        }
        let ownNames = convolutionStem(model) != nil || patchEmbedding(model) != nil || HuggingFaceBert.Parts(model) != nil
        var towers = [ownNames ? named("encoder") : try tower("encoder", model.encoder)]
        if model.adapter != nil { towers.append(named("adapter")) }
        if part == .model { towers.append(try tower("projection", model.head)) }
        if let pairEncoder = model.pairEncoder, let pairHead = model.pairHead {
            towers.append(try tower("pair_encoder", pairEncoder))
            if part == .model { towers.append(try tower("pair_projection", pairHead)) }
        }
        return towers
    }

    /// The tensors of `part`, named as in the `torch.nn.Sequential` of each tower.
    public static func tensors(_ model: ContrastiveModel, part: Part) throws -> [Safetensors.NamedTensor] {
        let arena = model.arena
        func values(_ slice: ParameterSlice) -> [Float] { Array(UnsafeBufferPointer(start: arena.parameters(slice), count: slice.count)) }
        return try towers(model, part: part).flatMap { tower in
            tower.parameters.map { Safetensors.NamedTensor(name: $0.name, shape: $0.shape, values: values($0)) }
            + tower.layers.enumerated().flatMap { index, linear -> [Safetensors.NamedTensor] in
                let prefix = "\(tower.name).\(2 * index)"
                var tensors = [Safetensors.NamedTensor(name: prefix + ".weight", shape: linear.weight.shape, values: values(linear.weight))]
                if let bias = linear.bias {
                    tensors.append(Safetensors.NamedTensor(name: prefix + ".bias", shape: bias.shape, values: values(bias)))
                }
                return tensors
            }
        }
    }

    /// What a loader needs besides the tensors: the activation between Linears, every
    /// tower's widths (a JSON list as a string), the final normalisation, and provenance.
    public static func metadata(_ trained: TrainedModel, part: Part) throws -> [(key: String, value: String)] {
        let model = trained.model
        var metadata: [(key: String, value: String)] = [
            ("format", "pt"),
            ("contrast_version", contrastVersion),
            ("contents", part.rawValue),
            ("activation", trained.config.model.activation.rawValue),
        ]
        func list(_ values: [Int]) -> String { "[" + values.map(String.init).joined(separator: ", ") + "]" }
        for tower in try towers(model, part: part) where !tower.widths.isEmpty {
            metadata.append((tower.name + "_widths", list(tower.widths)))
        }
        if trained.config.model.encoder == .resnet, let stem = convolutionStem(model) {
            // What tools/resnet.py needs to rebuild ResNet.make; the widths are in the tensors' shapes.
            let section = trained.config.model, resnet = section.resnet
            let epsilon = model.encoder.flattened.compactMap { $0 as? GroupNorm }.first?.epsilon ?? 1e-5
            metadata += [
                ("encoder_kind", "resnet"),
                ("image_shape", list([stem.height, stem.width])),
                ("image_channels", String(stem.inChannels)),
                ("stem", resnet.resolvedStem.rawValue),
                ("block", resnet.block.rawValue),
                ("expansion", String(resnet.expansion)),
                ("stages", "[" + resnet.resolvedStages.map(list).joined(separator: ", ") + "]"),
                ("pool_cells", String(section.poolCells)),
                ("pool_stages", String(section.poolStages)),
                ("encoder_fc", section.representation > 0 ? "true" : "false"),
                ("norm_eps", String(epsilon)),
                ("norm_groups_max", String(ResNet.groupLimit)),
            ]
        } else if let stem = convolutionStem(model) {
            // What the module of docs/export.md needs to rebuild CNN.make; the rest is in the tensors' shapes.
            let section = trained.config.model
            let epsilon = model.encoder.flattened.compactMap { $0 as? GroupNorm }.first?.epsilon ?? 1e-5
            metadata += [
                ("encoder_kind", "cnn"),
                ("encoder_channels", list(section.channels)),
                ("encoder_groups", list(section.channels.map(CNN.groups(for:)))),
                ("image_shape", list([stem.height, stem.width])),
                ("pool_cells", String(section.poolCells)),
                ("pool_stages", String(section.poolStages)),
                ("encoder_fc", section.representation > 0 ? "true" : "false"),
                ("norm_eps", String(epsilon)),
            ]
        } else if let patches = patchEmbedding(model) {
            // What tools/vit.py needs to rebuild VisionTransformer.make.
            let layers = model.encoder.flattened
            let blocks = layers.compactMap { $0 as? TransformerBlock }
            let pool = layers.compactMap { $0 as? TokenPool }.first!
            let finalNorm = layers.compactMap { ($0 as? PerToken)?.inner as? LayerNorm }.first!
            metadata += [
                ("encoder_kind", "vit"),
                ("image_shape", list([patches.height, patches.imageWidth])),
                ("image_channels", String(patches.channels)),
                ("patch", String(patches.patch)),
                ("dim", String(patches.width)),
                ("depth", String(blocks.count)),
                ("heads", String(blocks.first?.attention.heads ?? 1)),
                ("mlp_width", String(blocks.first?.expand.outputWidth ?? 0)),
                ("pool", pool.mode.rawValue),
                ("encoder_fc", layers.last is Linear ? "true" : "false"),
                ("norm_eps", String(finalNorm.epsilon)),
            ]
        } else if let bert = HuggingFaceBert.Parts(model) {
            // The shape; BertModel's own names are `contrast export --format hf`'s (docs/text.md).
            let e = bert.embeddings, first = bert.blocks.first
            metadata += [
                ("encoder_kind", "bert"),
                ("layers", String(bert.blocks.count)),
                ("width", String(e.width)),
                ("heads", String(first?.attention.heads ?? 1)),
                ("ffn", String(first?.expand.outputWidth ?? 0)),
                ("max_length", String(e.tokens)),
                ("max_position", String(e.maximumPositions)),
                ("vocab_size", String(e.vocabularySize)),
                ("pool", bert.pool.mode.rawValue),
                ("encoder_fc", bert.fc == nil ? "false" : "true"),
                ("norm_eps", String(first?.norm1.epsilon ?? 1e-12)),
            ]
        } else {
            metadata.append(("encoder_kind", "mlp"))
        }
        if let adapter = model.adapter { metadata.append(("adapter_width", String(adapter.down.outputWidth))) }
        metadata.append(("representation_width", String(model.representationWidth)))
        if part == .model { metadata.append(("embedding_width", String(model.embeddingWidth))) }
        metadata += [
            // z = projection(h) / max(|projection(h)|, 1e-12): torch.nn.functional.normalize's default.
            ("normalize", part == .model ? "l2" : "none"),
            ("source", trained.source),
            ("config", trained.config.yaml()),
        ]
        return metadata
    }

    /// The safetensors file of `part` of a trained model.
    public static func safetensors(_ trained: TrainedModel, part: Part) throws -> Data {
        Safetensors.encode(try tensors(trained.model, part: part), metadata: try metadata(trained, part: part))
    }
}
