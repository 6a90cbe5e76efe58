import Tensor
import Distributed
import NN

extension GradientReducer {
    /// The reducer of a model's gradient arena: its tensors (those inside `trainable`, nil: all) are
    /// the units buckets are made of. The collective layer knows nothing of models; this is where
    /// the two meet.
    public convenience init(arena: ParameterArena, communicator: Communicator, precision: WirePrecision, bucketBytes: Int,
                            initialScale: Float = 65536, scaleWindow: Int = 500, trainable: Range<Int>? = nil) {
        let exchanged = trainable.map { range in arena.slices.filter { range.contains($0.offset) } } ?? arena.slices
        self.init(gradients: arena.gradients.data, tensors: exchanged.map(\.range), communicator: communicator,
                  precision: precision, bucketBytes: bucketBytes, initialScale: initialScale, scaleWindow: scaleWindow)
    }
}
