import Foundation

/// Contiguous row-major Float32 storage with a shape.
///
/// Owns 64-byte aligned memory that is never reallocated, so pointers into it stay valid for
/// the tensor's lifetime: kernels take `UnsafeMutablePointer<Float>` from `data`.
public final class Tensor: @unchecked Sendable {
    public let shape: [Int]
    public let count: Int
    public let data: UnsafeMutablePointer<Float>

    /// A zero-filled tensor of the given shape.
    public init(zeros shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "Tensor shape \(shape) has a negative dimension")
        self.shape = shape
        self.count = shape.reduce(1, *)
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        raw.initializeMemory(as: Float.self, repeating: 0, count: max(count, 1))
        self.data = raw.assumingMemoryBound(to: Float.self)
    }

    public convenience init(shape: [Int], values: [Float]) {
        self.init(zeros: shape)
        precondition(values.count == count, "Tensor(shape: \(shape)) needs \(count) values, got \(values.count)")
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: count) }
    }

    public convenience init(shape: [Int], repeating value: Float) {
        self.init(zeros: shape)
        data.update(repeating: value, count: count)
    }

    deinit { UnsafeMutableRawPointer(data).deallocate() }

    public var rows: Int { shape.count >= 1 ? shape[0] : 1 }
    /// Elements per row: the product of all dimensions after the first.
    public var columns: Int { shape.count >= 2 ? shape.dropFirst().reduce(1, *) : (shape.count == 1 ? 1 : 1) }

    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: data, count: count) }
    public var array: [Float] { Array(buffer) }

    public subscript(i: Int) -> Float {
        get { precondition(i >= 0 && i < count, "index \(i) out of range 0..<\(count)"); return data[i] }
        set { precondition(i >= 0 && i < count, "index \(i) out of range 0..<\(count)"); data[i] = newValue }
    }

    public subscript(row: Int, column: Int) -> Float {
        get { data[row * columns + column] }
        set { data[row * columns + column] = newValue }
    }

    public func zero() { data.update(repeating: 0, count: count) }

    public func copy(from other: Tensor) {
        precondition(other.count == count, "copy: \(other.shape) into \(shape)")
        data.update(from: other.data, count: count)
    }

    /// A tensor with the same shape and contents.
    public func clone() -> Tensor {
        let t = Tensor(zeros: shape)
        t.copy(from: self)
        return t
    }
}

/// A growable scratch buffer of Float: reallocated only when a larger size is requested, so
/// steady-state steps allocate nothing.
public final class ScratchBuffer: @unchecked Sendable {
    public private(set) var tensor = Tensor(zeros: [0])
    public init() {}

    deinit { if tensor.count > 0 { Self.tally.add(-tensor.count * MemoryLayout<Float>.stride) } }

    /// A pointer to at least `count` floats (contents unspecified after growth).
    @inline(__always)
    public func pointer(count: Int) -> UnsafeMutablePointer<Float> {
        if tensor.count < count { grow(to: count) }
        return tensor.data
    }

    private func grow(to count: Int) {
        Self.tally.add((count - tensor.count) * MemoryLayout<Float>.stride)
        tensor = Tensor(zeros: [count])
    }

    /// Bytes held by every scratch buffer of the process now: the layers' activations and the
    /// losses' workspaces (`bench step`'s memory account). Counted when a buffer grows or goes.
    public static var liveBytes: Int { tally.value }

    private static let tally = ByteTally()

    private final class ByteTally: @unchecked Sendable {
        private let lock = NSLock()
        private var bytes = 0
        func add(_ delta: Int) { lock.lock(); bytes += delta; lock.unlock() }
        var value: Int { lock.lock(); defer { lock.unlock() }; return bytes }
    }
}
