import Tensor

/// The edge of an encoder that keeps its activations in oneDNN's blocked layout (nChw8c /
/// nChw16c, `block` channels side by side at each pixel): forward reorders x from NCHW rows to
/// the blocked layout, backward reorders dy back. The layers after it read and write the blocked
/// layout (`Conv2d`, `GroupNorm`, the pools with `block`/`activationBlock`), so the convolutions
/// between them run oneDNN's direct kernels without reordering on every call. The same values
/// at other places: an exported network (ONNX, safetensors) has no such layer.
///
/// Shapes: x, y: B x (C H W).
public final class LayoutReorder: Layer {
    public let channels: Int, height: Int, width: Int, block: Int
    public var inputWidth: Int { channels * height * width }
    public var outputWidth: Int { inputWidth }
    public var computesInputGradient = true
    private let output = ScratchBuffer()
    private let inputGradient = ScratchBuffer()
    /// The reorder primitives per batch size (made on a batch's first call, then kept).
    private var reorders: [Int: OneDNNLayoutReorder] = [:]

    public init(channels: Int, height: Int, width: Int, block: Int) {
        precondition((block == 8 || block == 16) && channels % block == 0,
                     "LayoutReorder: \(channels) channels do not fill blocks of \(block)")
        (self.channels, self.height, self.width, self.block) = (channels, height, width, block)
    }

    private func reorder(batch: Int) -> OneDNNLayoutReorder {
        if let made = reorders[batch] { return made }
        do {
            let made = try OneDNNLayoutReorder(batch: batch, channels: channels, height: height, width: width, block: block)
            reorders[batch] = made
            return made
        } catch {
            preconditionFailure("LayoutReorder: \(error) (the blocked layout was chosen because oneDNN's convolutions use it here)")
        }
    }

    public func forward(_ input: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
        let y = output.pointer(count: batch * inputWidth)
        reorder(batch: batch).toBlocked(y, from: input)
        return y
    }

    public func backward(_ outputGradient: UnsafeMutablePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float>? {
        guard computesInputGradient else { return nil }
        let dx = inputGradient.pointer(count: batch * inputWidth)
        reorder(batch: batch).toNCHW(dx, from: outputGradient)
        return dx
    }
}
