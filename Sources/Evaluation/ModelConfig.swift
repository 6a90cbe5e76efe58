import Config
import NN

extension ContrastiveModel {
    /// The model a config's `model` section describes.
    /// `imageShape` ([height, width]) is needed by `encoder: cnn` and `encoder: vit`.
    /// `learnableTemperature` adds the logit scale (loss.temperature_mode learnable), `reconstruction` the
    /// decoder of `section.decoder` (loss.reconstruction_weight > 0).
    public convenience init(_ section: ModelSection, inputWidth: Int, pairInputWidth: Int = 0, imageShape: [Int]? = nil,
                            learnableTemperature: Bool = false, reconstruction: Bool = false) {
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
                  learnableTemperature: learnableTemperature, adapter: section.adapter,
                  decoderHidden: reconstruction ? section.decoder : nil, dropout: section.dropout, dropPath: section.dropPath)
    }

    /// The ViT of `model.vit` (validated: a shape for every key, heads dividing dim) on grey [height, width] images.
    static func visionTransformer(_ section: ViTSection, imageShape: [Int], dropout: Float = 0, attentionDropout: Float = 0,
                                  dropPath: Float = 0) -> VisionTransformer.Shape {
        precondition(imageShape.count == 2, "the ViT encoder needs the [height, width] of the images, got \(imageShape)")
        let shape = section.resolved
        return VisionTransformer.Shape(channels: 1, height: imageShape[0], width: imageShape[1], patch: shape.patch, dim: shape.dim,
                                       depth: shape.depth, heads: shape.heads, mlpRatio: shape.mlpRatio,
                                       pool: section.pool == .cls ? .classToken : .mean,
                                       attention: section.attentionTile > 0 ? .tiled(section.attentionTile) : .plain,
                                       dropout: dropout, attentionDropout: attentionDropout, dropPath: dropPath)
    }
}
