import Config
import Data
import NN
import Tensor

/// Zero-shot classification through a text tower (CLIP, Radford et al. 2021, section 3.1.4): each
/// class's text embedding is the normalised mean of the text-tower embeddings of its prompts (the
/// templates with the class name in place of `{}`), and an image's class is the one whose text
/// embedding has the highest cosine with the image's embedding. No label is seen in training.
///
/// Shapes: N images, C classes, M templates, E embedding width.
extension Evaluation {
    /// `template` with every `{}` replaced by `name`.
    public static func prompt(_ template: String, _ name: String) -> String {
        template.replacingOccurrences(of: "{}", with: name)
    }

    /// C x E class embeddings from C*M prompt embeddings (class-major: class c's M prompts in rows
    /// c*M ..< (c+1)*M): each class's mean, L2-normalised.
    public static func classEmbeddings(prompts: Tensor, classes c: Int, templates m: Int) -> Tensor {
        let e = prompts.shape[1]
        precondition(prompts.shape[0] == c * m, "classEmbeddings: \(prompts.shape[0]) prompts are not \(c) classes x \(m) templates")
        let out = Tensor(zeros: [c, e])
        for k in 0..<c {
            let row = out.data + k * e
            for j in 0..<m {
                let p = prompts.data + (k * m + j) * e
                for i in 0..<e { row[i] += p[i] }
            }
            var norm: Float = 0
            for i in 0..<e { norm += row[i] * row[i] }
            let scale = 1 / max(norm.squareRoot(), 1e-12)
            for i in 0..<e { row[i] *= scale }
        }
        return out
    }

    /// Fraction of the N images (N x E embeddings) whose most similar class embedding (C x E) is
    /// their label; a tie goes to the lower class. The image rows need not be normalised (argmax of
    /// the cosine over classes does not depend on the image's norm).
    public static func zeroShotAccuracy(images: Tensor, labels: [UInt8], classes: Tensor) -> Double {
        let n = images.shape[0], e = images.shape[1], c = classes.shape[0]
        precondition(labels.count == n && classes.shape[1] == e, "zeroShotAccuracy: shapes differ")
        guard n > 0 else { return .nan }
        let scores = Tensor(zeros: [n, c])
        gemm(transposeA: false, transposeB: true, m: n, n: c, k: e, a: images.data, lda: e, b: classes.data, ldb: e, c: scores.data, ldc: c)
        var correct = 0
        for i in 0..<n {
            let s = scores.data + i * c
            var best = 0
            for k in 1..<c where s[k] > s[best] { best = k }
            if best == Int(labels[i]) { correct += 1 }
        }
        return Double(correct) / Double(n)
    }

    /// Zero-shot accuracy of `model` (a BERT pair tower) on the labelled `test` images: the class
    /// names' prompts tokenized by `tokens`, embedded by the text tower, against the images' embeddings.
    public static func zeroShot(model: ContrastiveModel, test: SampleRows, labels: [UInt8], tokens: CaptionTokens,
                                classNames: [String], templates: [String]) throws -> Double {
        let texts = classNames.flatMap { name in templates.map { prompt($0, name) } }
        let rows = try tokens.rows(texts)
        let e = model.embeddingWidth
        let prompts = Tensor(zeros: [texts.count, e])
        rows.withUnsafeBufferPointer { model.embeddings(of: $0.baseAddress!, count: texts.count, pair: true, into: prompts.data) }
        let classes = classEmbeddings(prompts: prompts, classes: classNames.count, templates: templates.count)
        let images = Tensor(zeros: [test.count, e])
        do {
            let inputs = Tensor(zeros: [test.count, test.featureWidth])
            test.writeInputs(test.held, into: inputs.data)
            model.embeddings(of: inputs.data, count: test.count, into: images.data)
        }
        return zeroShotAccuracy(images: images, labels: labels, classes: classes)
    }

    /// The class names zero-shot prompts name: eval.zero_shot.class_names, else Fashion-MNIST's caption
    /// names for a set with Fashion-MNIST's classes, else the data set's (`classNames(of:)`).
    public static func zeroShotClassNames(of config: TrainingConfig) -> [String] {
        if !config.eval.zeroShot.classNames.isEmpty { return config.eval.zeroShot.classNames }
        let names = classNames(of: config)
        return names == FashionMNIST.classNames ? FashionCaptions.classNames : names
    }
}
