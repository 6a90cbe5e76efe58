import Tensor
import Config
import Contrastive

/// SimCLR (Chen et al. 2020): NT-Xent of each local view against the N views of the global
/// batch, its positive the other view of its sample, itself masked out (docs/objectives.md).
/// With loss.hard_negative_beta or loss.debiased_tau_plus, the hard-negative / debiased form of
/// the same loss (Robinson et al. 2021, Chuang et al. 2020), beta scheduled by the step's plan.
final class SimCLR: Objective {
    /// NT-Xent, or its reweighted form: the same arguments, the same result.
    enum Loss {
        case plain(NTXentLoss)
        case hardNegative(HardNegativeNTXentLoss)
    }

    let views: TwoViewBatch
    let ntxent: Loss

    init(views: TwoViewBatch, config l: LossSection) {
        self.views = views
        ntxent = l.usesHardNegatives
            ? .hardNegative(HardNegativeNTXentLoss(temperature: l.temperature, beta: l.hardNegativeBeta, tauPlus: l.debiasedTauPlus,
                                                   logitChunk: l.logitChunk))
            : .plain(NTXentLoss(temperature: l.temperature, logitChunk: l.logitChunk))
    }

    var inputCount: Int { views.inputCount }
    var globalAnchors: Int { views.globalViews }
    var passes: ModelPasses { views.passes }

    func forward(_ input: UnsafePointer<Float>) { views.forward(input) }

    func gather() throws { try views.gather() }

    func loss(_ plan: StepPlan) -> ObjectiveLoss {
        let v = views, z = v.embeddings!
        let r: NTXentLoss.Result
        switch ntxent {
        case .plain(let loss):
            loss.temperature = plan.temperature
            r = loss.forwardBackward(anchors: z, anchorCount: v.views, candidates: v.gathered.data, candidateCount: v.globalViews,
                                     dimension: v.width, selfIndex: v.selfIndex, positiveIndex: v.positiveIndex,
                                     normalization: v.globalViews, anchorGradient: v.anchorGradient.data,
                                     candidateGradient: v.candidateGradient.data)
        case .hardNegative(let loss):
            loss.temperature = plan.temperature
            loss.beta = plan.hardNegativeBeta!
            r = loss.forwardBackward(anchors: z, anchorCount: v.views, candidates: v.gathered.data, candidateCount: v.globalViews,
                                     dimension: v.width, selfIndex: v.selfIndex, positiveIndex: v.positiveIndex,
                                     normalization: v.globalViews, anchorGradient: v.anchorGradient.data,
                                     candidateGradient: v.candidateGradient.data)
        }
        return ObjectiveLoss(share: r.loss, positiveTop1: r.positiveTop1, logitScaleGradient: Float(r.logitScaleGradient))
            .adding(v.reconstruction)
    }

    func scatter() throws { try views.scatter() }

    func backward(_ gradientsFinal: @escaping (Int) -> Void) { views.backward(gradientsFinal) }

    func geometry() -> EmbeddingGeometry.Measures { views.geometry() }

    var memory: ObjectiveMemory {
        guard case .plain(let loss) = ntxent else { return ObjectiveMemory(embeddingExchange: views.exchangeBytes) }
        return ObjectiveMemory(logits: loss.workspaceBytes, embeddingExchange: views.exchangeBytes)
    }
}
