import Testing
@testable import Tensor
@testable import Evaluation
import Text

/// Zero-shot classification and two-way retrieval on hand-made embeddings whose answers are worked out by hand.
@Suite struct ZeroShotTests {
    /// Two templates per class, class-major; each class's embedding is the normalised mean.
    @Test func classEmbeddingIsTheNormalisedMeanOfItsPrompts() {
        let prompts = Tensor(shape: [4, 2], values: [1, 0, 0, 1,     // class 0: (1,0) and (0,1) -> (1,1)/sqrt 2
                                                     3, 0, 1, 0])    // class 1: (3,0) and (1,0) -> (1,0)
        let classes = Evaluation.classEmbeddings(prompts: prompts, classes: 2, templates: 2)
        let r = Float(0.5).squareRoot()
        #expect(abs(classes[0] - r) < 1e-6 && abs(classes[1] - r) < 1e-6)
        #expect(classes[2] == 1 && classes[3] == 0)
    }

    /// Images (unnormalised) against three class directions: argmax of the cosine, three of four right.
    @Test func accuracyIsTheShareOfImagesNearestTheirClass() {
        let classes = Tensor(shape: [3, 2], values: [1, 0, 0, 1, -1, 0])
        let images = Tensor(shape: [4, 2], values: [5, 1,    // class 0
                                                    0.1, 2,  // class 1
                                                    -3, 1,   // class 2
                                                    1, 0.9]) // class 0 (labelled 1: wrong)
        #expect(Evaluation.zeroShotAccuracy(images: images, labels: [0, 1, 2, 1], classes: classes) == 0.75)
        // The image's norm does not change its class.
        let scaled = Tensor(shape: [4, 2], values: [50, 10, 0.01, 0.2, -30, 10, 10, 9])
        #expect(Evaluation.zeroShotAccuracy(images: scaled, labels: [0, 1, 2, 1], classes: classes) == 0.75)
    }

    @Test func promptsPutTheNameInPlaceOfTheBraces() {
        #expect(Evaluation.prompt("a photo of a {}.", "pair of trousers") == "a photo of a pair of trousers.")
    }

    /// Three unit rows each way, a_i . b_j:
    ///          b0    b1    b2
    ///   a0    .8     1     0      a0's own pair ranks 2nd, a1's 3rd, a2's 1st
    ///   a1   .96    .6    .8      b0's own ranks 2nd (a1 above), b1's 2nd (a0 above), b2's 1st
    ///   a2    .6     0     1
    /// computed two queries at a time (the chunk), so the second chunk's offsets are exercised.
    @Test func recallAtKCountsTheRankOfTheOwnPairBothWays() {
        let a = Tensor(shape: [3, 2], values: [1, 0, 0.6, 0.8, 0, 1])
        let b = Tensor(shape: [3, 2], values: [0.8, 0.6, 1, 0, 0, 1])
        let r = Evaluation.retrieval(a, b, ks: [1, 2, 3], chunk: 2)
        #expect(r.forward == [1.0 / 3, 2.0 / 3, 1])
        #expect(r.backward == [1.0 / 3, 1, 1])
    }
}
