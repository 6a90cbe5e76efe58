import Config
import NN

extension ContrastiveModel {
    /// The model a config's `model` section describes.
    /// `imageShape` ([height, width]) is needed by `encoder: cnn`.
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
                  learnableTemperature: learnableTemperature, adapter: section.adapter,
                  decoderHidden: reconstruction ? section.decoder : nil)
    }
}
