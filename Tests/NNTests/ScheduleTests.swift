import Foundation
import Testing
import NN

@Suite struct ScheduleTests {
    @Test func constant() {
        let schedule = LearningRateSchedule.constant(1e-3)
        #expect(schedule.learningRate(atStep: 0) == 1e-3)
        #expect(schedule.learningRate(atStep: 123_456) == 1e-3)
    }

    @Test func warmupCosineAtKeySteps() {
        let schedule = LearningRateSchedule.warmupCosine(base: 1, warmupSteps: 10, totalSteps: 110, final: 0.1)
        #expect(schedule.learningRate(atStep: 0) == 0.1)           // base/W
        #expect(schedule.learningRate(atStep: 4) == 0.5)
        #expect(schedule.learningRate(atStep: 9) == 1)             // warm-up ends at base
        #expect(schedule.learningRate(atStep: 10) == 1)            // cosine starts at base
        #expect(schedule.learningRate(atStep: 35) == Float(0.1 + 0.9 * 0.5 * (1 + cos(Double.pi / 4))))
        #expect(abs(schedule.learningRate(atStep: 60) - 0.55) < 1e-6)  // halfway
        #expect(schedule.learningRate(atStep: 110) == 0.1)         // clamped at final
        #expect(schedule.learningRate(atStep: 10_000) == 0.1)
        var previous = Float.infinity
        for step in 10...110 {
            let rate = schedule.learningRate(atStep: step)
            #expect(rate <= previous)
            previous = rate
        }
    }

    @Test func withoutWarmup() {
        let schedule = LearningRateSchedule.warmupCosine(base: 2, warmupSteps: 0, totalSteps: 4, final: 0)
        #expect(schedule.learningRate(atStep: 0) == 2)
        #expect(abs(schedule.learningRate(atStep: 2) - 1) < 1e-6)
        #expect(schedule.learningRate(atStep: 4) == 0)
    }
}
