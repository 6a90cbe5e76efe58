import Tensor

/// A layer with explicit forward and backward (DESIGN.md decision 2).
///
/// Shapes: B rows (batch), I = `inputWidth`, O = `outputWidth`. A layer owns its output and
/// input-gradient buffers (sized for the largest batch seen, reallocated only when a batch
/// grows), keeps what its backward needs, and *adds* its parameter gradients into the arena.
public protocol Layer: AnyObject {
    var inputWidth: Int { get }
    var outputWidth: Int { get }

    /// Computes the output (B x O) of `input` (B x I). The input must stay valid until the
    /// matching `backward`. Returns the layer's own output buffer.
    func forward(_ input: UnsafePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float>

    /// Given dL/d(output) (B x O) for the last forward, accumulates parameter gradients and
    /// returns dL/d(input) (B x I), or nil when `computesInputGradient` is false.
    /// The layer consumes `outputGradient`: it may overwrite it (e.g. a fused ReLU masks it in place).
    func backward(_ outputGradient: UnsafeMutablePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float>?

    /// Whether backward produces dL/d(input). The first layer of a network does not need to.
    var computesInputGradient: Bool { get set }
}
