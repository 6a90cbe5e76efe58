import TestSupport
import Config
import Testing
@testable import NN
@testable import Training

@Suite struct ScheduleWiringTests {
    @Test func configChoosesTheSchedule() throws {
        var o = TrainingConfig().optimizer
        #expect(Schedules.learningRate(o, totalSteps: 100) == .constant(o.lr))
        o.warmupSteps = 10
        #expect(Schedules.learningRate(o, totalSteps: 100).learningRate(atStep: 4) == o.lr * 0.5)
        #expect(Schedules.learningRate(o, totalSteps: 100).learningRate(atStep: 60) == o.lr)
        o.schedule = .cosine
        o.finalLR = 1e-5
        #expect(Schedules.learningRate(o, totalSteps: 100).learningRate(atStep: 100) == 1e-5)
    }
}
