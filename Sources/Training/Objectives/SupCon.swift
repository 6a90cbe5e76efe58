import Config
import Contrastive
import Tensor

/// Supervised contrastive learning (Khosla et al. 2020) on partly labeled data: every view of the
/// global batch with its anchor's label is a positive (an unlabeled anchor has only its other
/// view, as in NT-Xent). With loss.pseudo_labels knn, unlabeled samples first take the label of a
/// confident kNN vote over the batch's labeled views (PseudoLabels.swift).
///
/// Shapes: B samples per rank, V = 2B local views, N = P V global views, I features, E embedding
/// width. The batch is the V x I views, then the B samples' labels (-1: unlabeled) as floats.
final class SupCon: Objective {
    let views: TwoViewBatch
    let supCon: SupConLoss
    /// Labels as floats: the N gathered ones, then this rank's V (each sample's label twice).
    let labelFloats: Tensor
    /// Labels of this rank's V views and of the N gathered ones (-1: unlabeled).
    var anchorLabels: [Int32]
    var candidateLabels: [Int32]
    /// loss.pseudo_labels knn: the vote, and the other view's row of every global row; else nil.
    let pseudoLabeler: KNNPseudoLabeler?
    var partners: [Int32] = []
    /// V labels per rank, for the gather.
    let labelCounts: [Int]
    /// The B labels of the step's batch, after its views.
    private var labels: UnsafePointer<Float>?

    init(views: TwoViewBatch, config l: LossSection) {
        self.views = views
        supCon = SupConLoss(temperature: l.temperature, logitChunk: l.logitChunk)
        labelFloats = Tensor(zeros: [views.globalViews + views.views])
        anchorLabels = [Int32](repeating: -1, count: views.views)
        candidateLabels = [Int32](repeating: -1, count: views.globalViews)
        labelCounts = [Int](repeating: views.views, count: views.communicator.size)
        pseudoLabeler = l.pseudoLabels == .knn
            ? KNNPseudoLabeler(k: l.pseudoLabelK, temperature: l.pseudoLabelTemperature, threshold: l.pseudoLabelThreshold) : nil
        if pseudoLabeler != nil {
            partners = KNNPseudoLabeler.partners(ranks: views.communicator.size, samplesPerRank: views.samples)
        }
    }

    var inputCount: Int { views.inputCount + views.samples }
    var globalAnchors: Int { views.globalViews }
    var passes: ModelPasses { views.passes }

    func forward(_ input: UnsafePointer<Float>) {
        views.forward(input)
        labels = input + views.inputCount
    }

    /// The embeddings, then the labels: both views of a sample carry its label, gathered like the embeddings.
    func gather() throws {
        try views.gather()
        let b = views.samples, v = views.views, n = views.globalViews, labels = labels!, local = labelFloats.data + n
        for i in 0..<b { local[i] = labels[i]; local[b + i] = labels[i] }
        try views.communicator.allGather(local, into: labelFloats.data, counts: labelCounts)
        for i in 0..<v { anchorLabels[i] = Int32(local[i]) }
        for i in 0..<n { candidateLabels[i] = Int32(labelFloats[i]) }
    }

    func loss(_ plan: StepPlan) -> ObjectiveLoss {
        let v = views, pseudoLabelFraction = assignPseudoLabels()
        supCon.temperature = plan.temperature
        let r = supCon.forwardBackward(
            anchors: v.embeddings!, anchorCount: v.views, candidates: v.gathered.data, candidateCount: v.globalViews, dimension: v.width,
            selfIndex: v.selfIndex, positiveIndex: v.positiveIndex, anchorLabels: anchorLabels, candidateLabels: candidateLabels,
            normalization: v.globalViews, anchorGradient: v.anchorGradient.data, candidateGradient: v.candidateGradient.data)
        var loss = ObjectiveLoss(share: r.loss, positiveTop1: r.positiveTop1, logitScaleGradient: Float(r.logitScaleGradient))
        loss.pseudoLabelFraction = pseudoLabelFraction
        return loss.adding(v.reconstruction)
    }

    /// Pseudo-labels the unlabeled samples of `candidateLabels` (N) from the gathered embeddings
    /// and copies this rank's rows into `anchorLabels`: returns the fraction of unlabeled samples
    /// labeled, or nil when loss.pseudo_labels is none. Every rank computes the same labels.
    func assignPseudoLabels() -> Double? {
        guard let pseudoLabeler else { return nil }
        let v = views, e = v.width, n = v.globalViews
        let result = candidateLabels.withUnsafeMutableBufferPointer { labels in
            partners.withUnsafeBufferPointer { partners in
                pseudoLabeler.assign(embeddings: v.gathered.data, count: n, dimension: e, labels: labels.baseAddress!,
                                     partner: partners.baseAddress!)
            }
        }
        let offset = v.communicator.rank * v.views
        for i in 0..<v.views { anchorLabels[i] = candidateLabels[offset + i] }
        return result.fraction
    }

    func scatter() throws { try views.scatter() }

    func backward(_ gradientsFinal: @escaping (Int) -> Void) { views.backward(gradientsFinal) }

    func geometry() -> EmbeddingGeometry.Measures { views.geometry() }

    var memory: ObjectiveMemory { ObjectiveMemory(embeddingExchange: views.exchangeBytes) }
}
