import Config
import NN

extension ContrastiveModel {
    /// The model a config's `model` section describes.
    /// `imageShape` ([height, width], or [channels, height, width] for resnet and vit) is needed by
    /// `encoder: cnn`, `encoder: resnet` and `encoder: vit`.
    /// `learnableTemperature` adds the logit scale (loss.temperature_mode learnable), `learnableBias` the logit
    /// bias (loss.kind siglip), `reconstruction` the
    /// decoder of `section.decoder` (loss.reconstruction_weight > 0).
    public convenience init(_ section: ModelSection, inputWidth: Int, pairInputWidth: Int = 0, imageShape: [Int]? = nil,
                            learnableTemperature: Bool = false, learnableBias: Bool = false, reconstruction: Bool = false) {
        let activation: MLP.Activation = switch section.activation {
        case .relu: .relu
        case .gelu: .gelu
        }
        self.init(inputWidth: inputWidth, hidden: section.hidden, representation: section.representation,
                  projection: section.projection, activation: activation,
                  pairInputWidth: pairInputWidth, pairHidden: section.pairHidden,
                  convolution: section.encoder == .cnn ? (section.channels, imageShape ?? [], section.poolCells, section.poolStages) : nil,
                  transformer: section.encoder == .vit ? Self.visionTransformer(section.vit, imageShape: imageShape ?? [],
                                                                                               dropout: section.dropout, attentionDropout: section.attentionDropout,
                                                                                               dropPath: section.dropPath) : nil,
                  resnet: section.encoder == .resnet ? Self.resnet(section, imageShape: imageShape ?? []) : nil,
                  text: section.encoder == .bert ? Self.bert(section.bert) : nil,
                  pairText: section.pairEncoder == .bert && pairInputWidth > 0 ? Self.bert(section.bert) : nil,
                  learnableTemperature: learnableTemperature, learnableBias: learnableBias, adapter: section.adapter,
                  decoderHidden: reconstruction ? section.decoder : nil, dropout: section.dropout, dropPath: section.dropPath)
    }

    /// The ResNet of `model.resnet` (validated: stages of three positive numbers) on grey [height, width] or
    /// [channels, height, width] images. (Data sets hold grey images today; `bench step --synthetic-images`
    /// makes the others.)
    static func resnet(_ section: ModelSection, imageShape: [Int]) -> ResNet.Shape {
        precondition(imageShape.count == 2 || imageShape.count == 3,
                     "the ResNet encoder needs the [height, width] or [channels, height, width] of the images, got \(imageShape)")
        let resnet = section.resnet, (channels, height, width) = Self.channelsAndSides(imageShape)
        return ResNet.Shape(channels: channels, height: height, width: width,
                            stem: resnet.resolvedStem == .imagenet ? .imagenet : .small,
                            block: resnet.block == .basic ? .basic : .bottleneck(expansion: resnet.expansion),
                            stages: resnet.resolvedStages.map { ResNet.Stage(channels: $0[0], blocks: $0[1], stride: $0[2]) },
                            poolCells: section.poolCells, poolStages: section.poolStages, dropPath: section.dropPath)
    }

    /// The ViT of `model.vit` (validated: a shape for every key, heads dividing dim) on grey [height, width] or
    /// [channels, height, width] images.
    static func visionTransformer(_ section: ViTSection, imageShape: [Int], dropout: Float = 0, attentionDropout: Float = 0,
                                  dropPath: Float = 0) -> VisionTransformer.Shape {
        precondition(imageShape.count == 2 || imageShape.count == 3,
                     "the ViT encoder needs the [height, width] or [channels, height, width] of the images, got \(imageShape)")
        let shape = section.resolved, (channels, height, width) = Self.channelsAndSides(imageShape)
        return VisionTransformer.Shape(channels: channels, height: height, width: width, patch: shape.patch, dim: shape.dim,
                                       depth: shape.depth, heads: shape.heads, mlpRatio: shape.mlpRatio,
                                       pool: section.pool == .cls ? .classToken : .mean,
                                       attention: section.attentionTile > 0 ? .tiled(section.attentionTile) : .plain,
                                       dropout: dropout, attentionDropout: attentionDropout, dropPath: dropPath)
    }

    /// The BERT encoder of `model.bert` (validated: a shape for every key, heads dividing width, a vocabulary size);
    /// its rows are 3 x max_length wide (`BERT.Shape.inputWidth`).
    public static func bert(_ section: BertSection) -> BERT.Shape {
        let shape = section.resolved
        return BERT.Shape(layers: shape.layers, width: shape.width, heads: shape.heads, feedForward: shape.ffn, tokens: section.maxLength,
                          vocabularySize: section.vocabSize, maximumPositions: section.maxPosition,
                          pool: section.pooling == .cls ? .classToken : .mean,
                          attention: section.attentionTile > 0 ? .tiled(section.attentionTile) : .plain,
                          dropout: section.dropout, attentionDropout: section.attentionDropout)
    }

    /// (channels, height, width) of [height, width] (one channel) or [channels, height, width].
    static func channelsAndSides(_ imageShape: [Int]) -> (Int, Int, Int) {
        imageShape.count == 3 ? (imageShape[0], imageShape[1], imageShape[2]) : (1, imageShape[0], imageShape[1])
    }
}
