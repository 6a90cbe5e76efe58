import CKernels

/// The convolutional encoder's C kernels (CKernels/conv.c, runtime-dispatched SIMD, the same bits
/// at every instruction set). Their plain Swift references live beside the layers that use them
/// (`Conv2d.im2colReference`, `GroupNorm`'s reference path), which the tests compare against.
extension Kernels {
    /// One convolution's geometry: C input channels of H x W, square kernel K, stride, padding, P x Q output.
    public struct ConvolutionShape: Sendable {
        public let channels: Int, height: Int, width: Int, kernel: Int, stride: Int, padding: Int
        public let outputHeight: Int, outputWidth: Int

        public init(channels: Int, height: Int, width: Int, kernel: Int, stride: Int, padding: Int) {
            self.channels = channels; self.height = height; self.width = width
            self.kernel = kernel; self.stride = stride; self.padding = padding
            outputHeight = (height + 2 * padding - kernel) / stride + 1
            outputWidth = (width + 2 * padding - kernel) / stride + 1
        }

        var c: ck_conv_shape {
            ck_conv_shape(channels: channels, height: height, width: width, kernel: kernel, stride: stride, padding: padding,
                          out_height: outputHeight, out_width: outputWidth)
        }
    }

    /// Column matrices of `images` consecutive NCHW images side by side: rows (c K + i) K + j of
    /// `columnStride` floats, image g's P Q columns from g P Q. Padding reads as 0.
    @inline(__always)
    public static func im2col(_ columns: UnsafeMutablePointer<Float>, images x: UnsafePointer<Float>, count: Int,
                              columnStride: Int, shape: ConvolutionShape) {
        ck_im2col(columns, x, count, columnStride, shape.c)
    }

    /// The adjoint of `im2col`: adds the columns back into the `count` images' pixels (not zeroed here).
    @inline(__always)
    public static func col2im(_ x: UnsafeMutablePointer<Float>, columns: UnsafePointer<Float>, count: Int,
                              columnStride: Int, shape: ConvolutionShape) {
        ck_col2im(x, columns, count, columnStride, shape.c)
    }

    /// What a group normalisation kernel runs in the same pass after the normalisation.
    public enum GroupNormActivation: Sendable {
        /// Nothing: y is the normalised value.
        case none
        /// A ReLU: y = max(GN(x), 0).
        case relu
        /// The residual block's end: y = max(GN(x) + skip, 0).
        case addReLU

        var c: Int32 {
            switch self {
            case .none: Int32(CK_GROUP_NORM_PLAIN)
            case .relu: Int32(CK_GROUP_NORM_RELU)
            case .addReLU: Int32(CK_GROUP_NORM_ADD_RELU)
            }
        }
    }

    /// Group normalisation forward (see `ck_group_norm_forward`): x, y B x (C HW); mean, inverse std B x G.
    /// `residual` (B x (C HW), the skip) is read only by `.addReLU`. The fused activations give the
    /// bits of the normalisation followed by `relu` or `addReLU`.
    @inline(__always)
    public static func groupNormForward(_ y: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
                                        inverseStd: UnsafeMutablePointer<Float>, input x: UnsafePointer<Float>,
                                        gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>,
                                        activation: GroupNormActivation = .none, residual: UnsafePointer<Float>? = nil,
                                        batch: Int, channels: Int, groups: Int, pixels: Int, epsilon: Float) {
        precondition(activation != .addReLU || residual != nil, "groupNormForward: .addReLU needs the residual")
        ck_group_norm_forward(y, mean, inverseStd, x, gamma, beta, activation.c, residual, batch, channels, groups, pixels, epsilon)
    }

    /// Group normalisation backward through `activation`: adds into dgamma and dbeta; writes dx unless
    /// it is nil. `.relu` recomputes the ReLU's sides from x, gamma and beta; `.addReLU` reads them from
    /// the forward's `output` and leaves dy masked (the skip's gradient). The bits of `reluBackward`
    /// followed by the plain backward.
    @inline(__always)
    public static func groupNormBackward(inputGradient dx: UnsafeMutablePointer<Float>?, scaleGradient dgamma: UnsafeMutablePointer<Float>,
                                         shiftGradient dbeta: UnsafeMutablePointer<Float>, outputGradient dy: UnsafeMutablePointer<Float>,
                                         input x: UnsafePointer<Float>, mean: UnsafePointer<Float>, inverseStd: UnsafePointer<Float>,
                                         gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>,
                                         activation: GroupNormActivation = .none, output: UnsafePointer<Float>? = nil,
                                         batch: Int, channels: Int, groups: Int, pixels: Int) {
        precondition(activation != .addReLU || output != nil, "groupNormBackward: .addReLU needs the forward's output")
        ck_group_norm_backward(dx, dgamma, dbeta, dy, x, mean, inverseStd, gamma, beta, activation.c, output,
                               batch, channels, groups, pixels)
    }

    /// `groupNormForward` on oneDNN's blocked layout: `block` (8 or 16) channels side by side at each
    /// pixel (nChw8c / nChw16c), `channels` a multiple of it. Equal to the NCHW kernel to rounding (its
    /// sums run per channel, then over the group's channels), not bitwise.
    @inline(__always)
    public static func groupNormForwardBlocked(_ y: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
                                               inverseStd: UnsafeMutablePointer<Float>, input x: UnsafePointer<Float>,
                                               gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>,
                                               activation: GroupNormActivation = .none, residual: UnsafePointer<Float>? = nil,
                                               batch: Int, channels: Int, groups: Int, pixels: Int, epsilon: Float, block: Int) {
        precondition(activation != .addReLU || residual != nil, "groupNormForwardBlocked: .addReLU needs the residual")
        precondition((block == 8 || block == 16) && channels % block == 0, "groupNormForwardBlocked: \(channels) channels in blocks of \(block)")
        ck_group_norm_blocked_forward(y, mean, inverseStd, x, gamma, beta, activation.c, residual, batch, channels, groups, pixels, epsilon, block)
    }

    /// `groupNormBackward` on the blocked layout (as `groupNormForwardBlocked`).
    @inline(__always)
    public static func groupNormBackwardBlocked(inputGradient dx: UnsafeMutablePointer<Float>?, scaleGradient dgamma: UnsafeMutablePointer<Float>,
                                                shiftGradient dbeta: UnsafeMutablePointer<Float>, outputGradient dy: UnsafeMutablePointer<Float>,
                                                input x: UnsafePointer<Float>, mean: UnsafePointer<Float>, inverseStd: UnsafePointer<Float>,
                                                gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>,
                                                activation: GroupNormActivation = .none, output: UnsafePointer<Float>? = nil,
                                                batch: Int, channels: Int, groups: Int, pixels: Int, block: Int) {
        precondition(activation != .addReLU || output != nil, "groupNormBackwardBlocked: .addReLU needs the forward's output")
        precondition((block == 8 || block == 16) && channels % block == 0, "groupNormBackwardBlocked: \(channels) channels in blocks of \(block)")
        ck_group_norm_blocked_backward(dx, dgamma, dbeta, dy, x, mean, inverseStd, gamma, beta, activation.c, output,
                                       batch, channels, groups, pixels, block)
    }

    /// y = max(a + b, 0); y may be a.
    @inline(__always)
    public static func addReLU(_ y: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) {
        ck_add_relu(y, a, b, count)
    }

    /// y = max(x, 0) in one pass (y and x must not overlap); the same bits as a copy then `reluInPlace`.
    @inline(__always)
    public static func relu(_ y: UnsafeMutablePointer<Float>, input x: UnsafePointer<Float>, count: Int) {
        ck_relu_copy(y, x, count)
    }
}
