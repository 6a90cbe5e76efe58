import Foundation
import TestSupport
@testable import Config
@testable import RunFiles
@testable import Evaluation
@testable import NN
import Testing
@testable import Training

/// Writes `text` to a fresh temporary file and returns its path.
private func temporaryConfig(_ text: String) throws -> String {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("contrast-config-\(UUID().uuidString).yaml")
    try text.write(to: url, atomically: true, encoding: .utf8)
    return url.path
}

/// The error `body` throws, as a ConfigError; fails the test if it throws nothing or something else.
private func configError(_ body: () throws -> TrainingConfig) -> ConfigError? {
    do {
        let config = try body()
        Issue.record("expected a ConfigError, got a config: \(config)")
    } catch let error as ConfigError {
        return error
    } catch {
        Issue.record("expected a ConfigError, got \(error)")
    }
    return nil
}

@Suite struct ConfigDefaultsTests {
    @Test func noFileNoOverridesGivesDefaults() throws {
        #expect(try ConfigLoader.load(file: nil, overrides: []) == TrainingConfig())
    }

    @Test func defaultsAreTheBenchmarkWorkload() {
        let config = TrainingConfig()
        #expect(config.data.batchPerRank == 256)
        #expect(config.model.hidden == [1024, 1024] && config.model.representation == 256)
        #expect(config.model.projection == [256, 128])
        #expect(config.loss.temperature == 0.2)
        #expect(config.optimizer.kind == .adamw && config.optimizer.lr == 1e-3 && config.optimizer.schedule == .constant)
        #expect(config.optimizer.betas == [0.9, 0.999] && config.optimizer.eps == 1e-8)
        #expect(config.optimizer.weightDecay == 1e-4)
        #expect(config.eval.knnK == 200 && config.eval.knnTemperature == 0.1)
        #expect(throws: Never.self) { try config.validate() }
    }

    @Test func yamlRoundTrips() throws {
        var config = TrainingConfig()
        config.optimizer.lr = 3.7e-7
        config.optimizer.kind = .lars
        config.optimizer.nesterov = true
        config.model.hidden = []
        config.views.aspectRatio = [0.5, 2]
        config.runDirectory = "runs/with space: and colon"
        let text = config.yaml()
        #expect(try ConfigLoader.load(yaml: text, source: "resolved.yaml") == config)
        #expect(try ConfigLoader.load(yaml: TrainingConfig().yaml(), source: "defaults.yaml") == TrainingConfig())
    }

    @Test func yamlIsReadable() {
        let text = TrainingConfig().yaml()
        #expect(text.contains("temperature: 0.2\n"))
        #expect(text.contains("hidden: [1024, 1024]"))
        #expect(text.contains("eps: 1.0e-08"))
        #expect(text.contains("run_dir: runs/fmnist-simclr"))
    }
}

@Suite struct ConfigPrecedenceTests {
    @Test func fileOverridesDefaultsAndSetOverridesFile() throws {
        let file = try temporaryConfig("""
            seed: 7
            optimizer:
              lr: 0.01
              kind: sgd
            """)
        let config = try ConfigLoader.load(file: file, overrides: ["optimizer.lr=0.5", "train.epochs=3"])
        #expect(config.seed == 7)
        #expect(config.optimizer.kind == .sgd)
        #expect(config.optimizer.lr == 0.5)
        #expect(config.train.epochs == 3)
        #expect(config.optimizer.betas == [0.9, 0.999])  // untouched keys keep defaults
        #expect(config.model == ModelSection())
    }

    @Test func laterOverrideWins() throws {
        let config = try ConfigLoader.load(file: nil, overrides: ["seed=1", "seed=2"])
        #expect(config.seed == 2)
    }

    @Test func setOfAList() throws {
        let config = try ConfigLoader.load(file: nil, overrides: ["model.hidden=[512,512,256]"])
        #expect(config.model.hidden == [512, 512, 256])
    }

    @Test func listInFileReplacesWholeList() throws {
        let file = try temporaryConfig("model:\n  hidden: [32]\n")
        #expect(try ConfigLoader.load(file: file, overrides: []).model.hidden == [32])
    }

    @Test func setOfASectionMerges() throws {
        let config = try ConfigLoader.load(file: nil, overrides: ["loss={temperature: 0.5}"])
        var expected = LossSection()
        expected.temperature = 0.5
        #expect(config.loss == expected)
    }

    @Test func emptySectionKeepsDefaults() throws {
        let file = try temporaryConfig("data:\n  # batch_per_rank: 32\nseed: 3\n")
        let config = try ConfigLoader.load(file: file, overrides: [])
        #expect(config.data == DataSection())
        #expect(config.seed == 3)
    }

    @Test func emptyFileGivesDefaults() throws {
        let file = try temporaryConfig("# nothing here\n")
        #expect(try ConfigLoader.load(file: file, overrides: []) == TrainingConfig())
    }
}

@Suite struct ConfigErrorTests {
    @Test func unknownNestedKeyNamesDottedKeyFileAndLine() throws {
        let file = try temporaryConfig("""
            seed: 1
            optimizer:
              kind: adamw
              lrr: 0.1
            """)
        let error = try #require(configError { try ConfigLoader.load(file: file, overrides: []) })
        #expect(error.key == "optimizer.lrr")
        #expect(error.description.contains("'optimizer.lrr'"))
        #expect(error.description.contains("\(file) line 4"))
        #expect(error.description.contains("did you mean 'optimizer.lr'?"))
    }

    @Test func unknownTopLevelKey() throws {
        let file = try temporaryConfig("seeed: 1\n")
        let error = try #require(configError { try ConfigLoader.load(file: file, overrides: []) })
        #expect(error.description.contains("unknown config key 'seeed'"))
        #expect(error.description.contains("\(file) line 1"))
        #expect(error.description.contains("did you mean 'seed'?"))
    }

    @Test func misplacedKeySuggestsWhereItLives() throws {
        let error = try #require(configError { try ConfigLoader.load(file: nil, overrides: ["train.lr=0.1"]) })
        #expect(error.description.contains("unknown config key 'train.lr'"))
        #expect(error.description.contains("did you mean 'optimizer.lr'?"))
        #expect(error.description.contains("--set train.lr=0.1"))
    }

    @Test func unknownKeyWithNothingNearListsKnownKeys() throws {
        let error = try #require(configError { try ConfigLoader.load(file: nil, overrides: ["loss.zzzzzzzz=1"]) })
        #expect(error.description.contains("known keys in 'loss': kind, temperature"))
    }

    @Test func wrongTypeNamesKeyExpectedTypeValueAndLine() throws {
        let file = try temporaryConfig("""
            # comment
            seed: 0
            optimizer:
              kind: adamw

              lr: fast
            """)
        let error = try #require(configError { try ConfigLoader.load(file: file, overrides: []) })
        #expect(error.description == "config key 'optimizer.lr' expects a number, got \"fast\" (\(file) line 6)")
    }

    @Test func wrongTypeFromSet() throws {
        let error = try #require(configError { try ConfigLoader.load(file: nil, overrides: ["train.epochs=1.5"]) })
        #expect(error.description == "config key 'train.epochs' expects an integer, got 1.5 (--set train.epochs=1.5)")
    }

    @Test func scalarWhereListExpected() throws {
        let error = try #require(configError { try ConfigLoader.load(file: nil, overrides: ["model.hidden=512"]) })
        #expect(error.description.contains("config key 'model.hidden' expects a list of integers like [1024, 1024]"))
        #expect(error.description.contains("got 512"))
    }

    @Test func wrongElementTypeInList() throws {
        let file = try temporaryConfig("views:\n  crop_area: [0.5, big]\n")
        let error = try #require(configError { try ConfigLoader.load(file: file, overrides: []) })
        #expect(error.description.contains("config key 'views.crop_area[1]' expects a number, got \"big\""))
        #expect(error.description.contains("\(file) line 2"))
    }

    @Test func badEnumListsValidValues() throws {
        let file = try temporaryConfig("optimizer:\n  kind: adam\n")
        let error = try #require(configError { try ConfigLoader.load(file: file, overrides: []) })
        #expect(error.description == "config key 'optimizer.kind' expects one of sgd, adamw, lars, got \"adam\" (\(file) line 2)")
        let hold = try #require(configError { try ConfigLoader.load(file: nil, overrides: ["data.hold=ram"]) })
        #expect(hold.description.hasPrefix("config key 'data.hold' expects one of memory, disk, stream, got \"ram\""), "\(hold.description)")
    }

    /// data.shuffle_buffer must be a sample count; data.hold: stream needs a prepared data set.
    @Test func streamingSettingsNameTheirKey() throws {
        let buffer = try #require(configError { try ConfigLoader.load(file: nil, overrides: ["data.shuffle_buffer=0"]) })
        #expect(buffer.description.hasPrefix("config key 'data.shuffle_buffer' must be in 1 ... 16777216"), "\(buffer.description)")
        let stream = try #require(configError { try ConfigLoader.load(file: nil, overrides: ["data.hold=stream"]) })
        #expect(stream.description.contains("'data.hold' is stream, but data.dataset fashion-mnist cannot be streamed"), "\(stream.description)")
        #expect(try ConfigLoader.load(file: nil, overrides: ["data.hold=stream", "data.dataset=prepared"]).data.hold == .stream)
    }

    @Test func missingEqualsInSet() throws {
        let error = try #require(configError { try ConfigLoader.load(file: nil, overrides: ["optimizer.lr"]) })
        #expect(error.description.contains("--set optimizer.lr has no '='"))
    }

    @Test func setBelowALeaf() throws {
        let error = try #require(configError { try ConfigLoader.load(file: nil, overrides: ["seed.x=1"]) })
        #expect(error.description.contains("'seed' has no keys below it"))
    }

    @Test func missingFile() {
        let error = configError { try ConfigLoader.load(file: "configs/does-not-exist.yaml", overrides: []) }
        #expect(error?.description.hasPrefix("config file configs/does-not-exist.yaml not found") == true)
    }

    @Test func yamlSyntaxErrorNamesLine() throws {
        let file = try temporaryConfig("seed: 1\nmodel:\n  hidden: [1, 2\n")
        let error = try #require(configError { try ConfigLoader.load(file: file, overrides: []) })
        #expect(error.description.contains("config file \(file) is not valid YAML"))
        #expect(error.description.contains("line "))
    }

    @Test func validationNamesKeyAndOrigin() throws {
        let error = try #require(configError { try ConfigLoader.load(file: nil, overrides: ["loss.temperature=0"]) })
        #expect(error.key == "loss.temperature")
        #expect(error.description == "config key 'loss.temperature' must be greater than 0, got 0.0 (--set loss.temperature=0)")
        let file = try temporaryConfig("views:\n  crop_area: [0.9, 0.5]\n")
        let cropError = try #require(configError { try ConfigLoader.load(file: file, overrides: []) })
        #expect(cropError.description.contains("'views.crop_area' must be two numbers [lo, hi] with 0 < lo <= hi <= 1"))
        #expect(cropError.description.contains("\(file) line 2"))
    }

    @Test(arguments: [
        "data.batch_per_rank=0", "data.virtual_shards=0", "views.flip=1.5", "views.jitter_p=-0.1",
        "optimizer.betas=[0.9, 1.0]", "optimizer.betas=[0.9]", "optimizer.eps=0", "train.epochs=0",
        "eval.knn_k=0", "views.crop_area=[0, 1]", "optimizer.lr=-1", "train.log_every_steps=0",
        "communication.watchdog_seconds=-1", "communication.eval_watchdog_seconds=-1", "communication.eval_watchdog_seconds=.inf",
    ])
    func outOfRangeValuesAreRejected(override: String) {
        let error = configError { try ConfigLoader.load(file: nil, overrides: [override]) }
        let key = String(override.prefix { $0 != "=" })
        #expect(error?.key == key)
    }
}

@Suite struct ConfigFilesTests {
    @Test func benchmarkConfigEqualsDefaults() throws {
        let path = repositoryRoot.appendingPathComponent("configs/fmnist-simclr.yaml").path
        #expect(try ConfigLoader.load(file: path, overrides: []) == TrainingConfig())
    }

    @Test func smokeConfigLoads() throws {
        let path = repositoryRoot.appendingPathComponent("configs/smoke.yaml").path
        let config = try ConfigLoader.load(file: path, overrides: [])
        #expect(config.runDirectory == "runs/smoke")
        #expect(config.data.trainLimit == 2048 && config.data.testLimit == 512)
        #expect(config.data.batchPerRank == 64 && config.data.virtualShards == 8)
        #expect(config.model.hidden == [64] && config.model.representation == 32 && config.model.projection == [32, 16])
        #expect(config.train.epochs == 2 && config.train.logEverySteps == 5)
        #expect(config.eval.knnEveryEpochs == 1 && config.eval.knnK == 20)
    }

    /// Resume's comparison: each changed leaf once as the user writes it (a list whole), in
    /// declaration order, without where the run lives or how it resumes; the keys that change
    /// what a run trains are told from the ones that do not, a section by its prefix.
    @Test func resumeChangesListChangedKeysAndTellWhichAreFixed() throws {
        let old = try ConfigLoader.load(file: nil, overrides: ["run_dir=a"])
        let new = try ConfigLoader.load(file: nil, overrides: ["run_dir=b", "resume=never", "model.hidden=[32]", "optimizer.lr=0.1",
                                                               "loss.kind=supcon", "resume_config_changes=allow"])
        #expect(ResumeChanges.changes(from: old, to: new).map(\.description)
                == ["model.hidden [1024, 1024] -> [32]", "loss.kind \"ntxent\" -> \"supcon\"", "optimizer.lr 0.001 -> 0.1"])
        #expect(ResumeChanges.changes(from: old, to: old).isEmpty)
        #expect(ResumeChanges.isFixed("model.hidden") && ResumeChanges.isFixed("seed") && ResumeChanges.isFixed("loss.kind"))
        #expect(!ResumeChanges.isFixed("optimizer.lr") && !ResumeChanges.isFixed("train.epochs") && !ResumeChanges.isFixed("loss.temperature"))
        #expect(!ResumeChanges.isFixed("data.batch_per_rank") && !ResumeChanges.isFixed("data.path_extra"))
        // Every fixed key names a key of the config (or a section of them).
        for key in ResumeChanges.fixedKeys {
            #expect(ConfigLoader.leafKeys().contains { $0 == key || $0.hasPrefix(key + ".") }, "\(key)")
        }
    }

    @Test func docsMentionEveryKey() throws {
        let docs = try String(contentsOf: repositoryRoot.appendingPathComponent("docs/config.md"), encoding: .utf8)
        let keys = ConfigLoader.leafKeys()
        #expect(keys.count >= 40)
        for key in keys {
            #expect(docs.contains("`\(key)`"), "docs/config.md does not document \(key)")
        }
    }

    @Test func poolStagesAndRepresentationZeroAreCheckedAndSizeTheModel() throws {
        let stages = try #require(configError {
            try ConfigLoader.load(file: nil, overrides: ["model.encoder=cnn", "model.channels=[8, 16]", "model.pool_stages=3"])
        })
        #expect(stages.key == "model.pool_stages" && stages.description.contains("between 1 and"))
        let mlp = try #require(configError { try ConfigLoader.load(file: nil, overrides: ["model.representation=0"]) })
        #expect(mlp.key == "model.representation")
        let config = try ConfigLoader.load(file: nil, overrides: ["model.encoder=cnn", "model.channels=[8, 16]", "model.pool_cells=2",
                                                                  "model.pool_stages=2", "model.representation=0"])
        let model = ContrastiveModel(config.model, inputWidth: 784, imageShape: [28, 28])
        #expect(model.representationWidth == 8 * 4 + 16 * 4)
        #expect(model.arena.slice(named: "encoder.fc.weight") == nil)
        #expect(model.arena.slice(named: "projection.0.weight")?.shape == [config.model.projection[0], 96])
    }
}

/// The model checked against the samples it will see (before the run directory exists).
@Suite struct ModelValidationTests {
    @Test func cnnNeedsImagesAndPoolCellsThatFit() throws {
        var config = TrainingConfig()
        try config.validateModel(imageShape: nil, features: "float32 [32]")          // an MLP takes anything
        config.model.encoder = .cnn
        config.model.channels = [8, 16, 32]
        try config.validateModel(imageShape: [28, 28])
        let features = try #require(configError { try config.validateModel(imageShape: nil, features: "float32 [32]"); return config })
        #expect(features.key == "model.encoder" && features.description.contains("float32 [32]") && features.description.contains("use mlp"))
        // 28 -> 14 -> 7 after two stride-2 stages: 7 x 7 maps, so at most 7 cells.
        config.model.poolCells = 7
        try config.validateModel(imageShape: [28, 28])
        config.model.poolCells = 8
        let pool = try #require(configError { try config.validateModel(imageShape: [28, 28]); return config })
        #expect(pool.key == "model.pool_cells" && pool.description.contains("7 x 7") && pool.description.contains("at most 7"))
        // The shorter side decides: 9 -> (9 + 1) / 2 = 5 -> (5 + 1) / 2 = 3.
        config.model.poolCells = 4
        #expect(configError { try config.validateModel(imageShape: [28, 9]); return config }?.description.contains("at most 3") == true)
    }
}

/// MoCo's objective runs neither the reweighted negatives nor the decoder: asking for them is refused.
@Suite struct MoCoCombinationTests {
    @Test(arguments: ["loss.hard_negative_beta=1", "loss.debiased_tau_plus=0.1", "loss.reconstruction_weight=0.5"])
    func mocoRefusesOptionsItWouldIgnore(option: String) throws {
        let error = try #require(configError { try ConfigLoader.load(file: nil, overrides: ["loss.moco_queue=64", option]) })
        #expect(error.key == "loss.moco_queue" && error.description.contains("loss.moco_queue=0"), "\(error)")
        #expect(error.description.contains(String(option.split(separator: "=")[0])))
    }
}

/// The keys of loss.kind siglip and pairs: their defaults, which kinds they fit, and what they decide.
@Suite struct PairObjectiveConfigTests {
    func problem(_ overrides: [String]) -> ConfigError? {
        do { _ = try ConfigLoader.load(file: nil, overrides: overrides); return nil } catch let error as ConfigError { return error } catch { return nil }
    }

    @Test func defaultsAndChecks() throws {
        let config = try ConfigLoader.load(file: nil, overrides: ["loss.kind=siglip"])
        #expect(config.loss.sides == .views && config.loss.siglipBias == -10 && config.loss.symmetric && !config.loss.maskDuplicates)
        #expect(config.loss.learnsLogitBias && !config.loss.usesPairTower)
        #expect(try ConfigLoader.load(file: nil, overrides: ["loss.kind=pairs", "loss.sides=pairs"]).loss.usesPairTower)
        #expect(try !ConfigLoader.load(file: nil, overrides: ["loss.kind=ntxent", "loss.sides=pairs"]).loss.usesPairTower)
        #expect(try ConfigLoader.load(file: nil, overrides: ["loss.kind=clip"]).loss.usesPairTower)
        #expect(problem(["loss.kind=siglip", "loss.siglip_bias=.nan"])?.key == "loss.siglip_bias")
        #expect(problem(["loss.kind=siglip", "loss.mask_duplicates=true"])?.key == "loss.mask_duplicates")
        #expect(problem(["loss.kind=pairs", "loss.mask_duplicates=true", "loss.sides=pairs"])?.problem.contains("use loss.sides views") == true)
        #expect(problem(["loss.kind=pairs", "loss.reconstruction_weight=0.5"])?.key == "loss.reconstruction_weight")
        #expect(problem(["loss.sides=both"])?.key == "loss.sides")
        #expect(problem(["loss.kind=pairs", "loss.mask_duplicates=true"]) == nil)
        #expect(ResumeChanges.isFixed("loss.sides") && ResumeChanges.isFixed("loss.mask_duplicates") && !ResumeChanges.isFixed("loss.siglip_bias"))
        // A text set's negative column trains unless turned off; the key changes the batch's layout, so a resume keeps it.
        #expect(config.loss.hardNegatives)
        #expect(try !ConfigLoader.load(file: nil, overrides: ["loss.kind=pairs", "loss.hard_negatives=false"]).loss.hardNegatives)
        #expect(problem(["loss.hard_negatives=maybe"])?.key == "loss.hard_negatives")
        #expect(ResumeChanges.isFixed("loss.hard_negatives"))
    }
}

/// model.pair_encoder and eval.zero_shot: defaults, the loss and vocabulary a text pair tower needs, templates with {}.
@Suite struct ImageTextConfigTests {
    func problem(_ overrides: [String]) -> ConfigError? {
        do { _ = try ConfigLoader.load(file: nil, overrides: overrides); return nil } catch let error as ConfigError { return error } catch { return nil }
    }

    @Test func defaultsAndChecks() throws {
        let config = try ConfigLoader.load(file: nil, overrides: [])
        #expect(config.model.pairEncoder == .mlp && config.eval.zeroShot.templates == ["a photo of a {}."] && config.eval.zeroShot.classNames.isEmpty)
        let text = ["model.pair_encoder=bert", "model.bert.vocab_size=100"]
        #expect(try ConfigLoader.load(file: nil, overrides: text + ["loss.kind=clip"]).model.pairEncoder == .bert)
        #expect(problem(text + ["loss.kind=siglip", "loss.sides=pairs"]) == nil)
        #expect(problem(text)?.key == "model.pair_encoder")
        #expect(problem(["model.pair_encoder=bert", "loss.kind=clip"])?.key == "model.bert.vocab_size")
        #expect(problem(text + ["loss.kind=clip", "eval.zero_shot.templates=[]"])?.key == "eval.zero_shot.templates")
        #expect(problem(text + ["loss.kind=clip", "eval.zero_shot.templates=[a photo]"])?.problem.contains("{}") == true)
        #expect(problem(["model.pair_encoder=gpt"])?.key == "model.pair_encoder")
    }
}
