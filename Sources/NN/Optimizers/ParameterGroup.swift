/// A contiguous range of the arena that an optimizer steps, with its own learning-rate multiplier
/// (PyTorch's parameter groups, over arena offsets). Offsets in no group are never updated: a
/// frozen encoder is the arena prefix left out.
public struct ParameterGroup: Sendable, Equatable {
    public var range: Range<Int>
    /// The group's learning rate is lr · learningRateScale (weight decay scales with it, as in PyTorch).
    public var learningRateScale: Float

    public init(range: Range<Int>, learningRateScale: Float = 1) {
        self.range = range
        self.learningRateScale = learningRateScale
    }

    /// The whole arena at the base rate: the default, stepping exactly as before groups existed.
    public static func all(_ arena: ParameterArena) -> [ParameterGroup] { [ParameterGroup(range: 0..<arena.count)] }
}

extension ParameterArena {
    /// `decaySegments` cut by `groups`: the ranges inside some group, each with whether it decays and its
    /// group's learning-rate scale, in arena order. With `ParameterGroup.all` these are `decaySegments`.
    public func segments(groups: [ParameterGroup]) -> [(range: Range<Int>, decays: Bool, learningRateScale: Float)] {
        var segments: [(range: Range<Int>, decays: Bool, learningRateScale: Float)] = []
        for (range, decays) in decaySegments {
            for group in groups.sorted(by: { $0.range.lowerBound < $1.range.lowerBound }) {
                let piece = range.clamped(to: group.range)
                if !piece.isEmpty { segments.append((piece, decays, group.learningRateScale)) }
            }
        }
        return segments
    }

    /// The learning-rate scale of the group holding `offset`, or nil when no group holds it.
    public func learningRateScale(at offset: Int, groups: [ParameterGroup]) -> Float? {
        groups.first { $0.range.contains(offset) }?.learningRateScale
    }
}
