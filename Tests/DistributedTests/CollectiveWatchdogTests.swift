import Foundation
import Synchronization
import Testing
@testable import Distributed

/// The collective watchdog's record of waits and its decision to fire, without MPI: the abort
/// the real watchdog calls (MPI_Abort) is replaced by one that records and parks the thread.
@Suite struct CollectiveWatchdogTests {
    /// Blocking collectives number themselves; a non-blocking start takes a number and its later
    /// wait reports it; nothing is reported between waits; the wait carries the rank's phase.
    @Test func activityRecordsTheWaitInProgress() {
        let activity = CollectiveActivity()
        #expect(activity.currentWait() == nil)
        #expect(activity.begin(.barrier, bytes: 0) == 1)
        #expect(activity.currentWait()?.sequence == 1 && activity.currentWait()?.operation == .barrier)
        activity.end()
        #expect(activity.currentWait() == nil)
        let started = activity.nextSequence()
        #expect(activity.begin(.allGather, bytes: 64) == 3)
        activity.end()
        activity.beginWait(started, .allReduce, bytes: 4_194_304)
        let wait = activity.currentWait()
        #expect(wait?.sequence == 2 && wait?.operation == .allReduce && wait?.bytes == 4_194_304)
        #expect((wait?.seconds ?? -1) >= 0 && (wait?.seconds ?? 1) < 1)
        #expect(wait?.phase == .training)
        #expect(activity.enter(.evaluation) == .training)
        #expect(activity.currentWait()?.phase == .evaluation && activity.currentWait()?.sequence == 2)
        #expect(activity.enter(.training) == .evaluation)
        #expect(activity.currentWait()?.phase == .training)
        activity.end()
    }

    @Test func messageNamesRankHostCollectiveAndKey() {
        let wait = CollectiveActivity.Wait(sequence: 17, operation: .allReduce, bytes: 4_194_304, seconds: 301.34)
        #expect(CollectiveWatchdog.message(rank: 1, host: "node7", wait: wait)
                == "rank 1 on node7: collective #17 (allreduce, 4194304 bytes) has not completed after 301.3 s; aborting the job (communication.watchdog_seconds)")
        let evaluating = CollectiveActivity.Wait(sequence: 40, operation: .allReduceMax, bytes: 8, seconds: 3600.04, phase: .evaluation)
        #expect(CollectiveWatchdog.message(rank: 0, host: "node1", wait: evaluating)
                == "rank 0 on node1: collective #40 (allreduce-max, 8 bytes) has not completed after 3600.0 s in evaluation; aborting the job (communication.eval_watchdog_seconds)")
        // SigLIP's ring turns (MPICommunicator.sendReceive) are watched like the collectives.
        let ring = CollectiveActivity.Wait(sequence: 9, operation: .sendReceive, bytes: 65536, seconds: 300.5)
        #expect(CollectiveWatchdog.message(rank: 2, host: "node3", wait: ring)
                == "rank 2 on node3: collective #9 (sendrecv, 65536 bytes) has not completed after 300.5 s; aborting the job (communication.watchdog_seconds)")
    }

    /// In evaluation a wait is held to the evaluation limit: past the training limit it does not
    /// fire, past the evaluation limit it does; with an evaluation limit of 0 it never fires.
    @Test(arguments: [0.0, 2.0])
    func evaluationHasItsOwnLimit(evaluationLimit: Double) throws {
        let fired = Atomic<Int>(0)
        let activity = CollectiveActivity()
        let watchdog = CollectiveWatchdog(activity: activity, limit: 0.1, evaluationLimit: evaluationLimit, rank: 0, interval: 0.05) {
            fired.wrappingAdd(1, ordering: .relaxed)
            while true { sleep(3600) }
        }
        watchdog.start()
        defer { watchdog.stop() }
        activity.enter(.evaluation)
        activity.begin(.allReduce, bytes: 16)
        usleep(400_000)                     // past the training limit, within the evaluation limit
        #expect(fired.load(ordering: .relaxed) == 0)
        let deadline = Date().addingTimeInterval(evaluationLimit == 0 ? 1.2 : 5)
        while fired.load(ordering: .relaxed) == 0 && Date() < deadline { usleep(20_000) }
        #expect(fired.load(ordering: .relaxed) == (evaluationLimit == 0 ? 0 : 1))
    }

    /// Short waits pass; a wait past the limit fires once, writing its line to the log file.
    @Test func firesOnceOnAWaitPastTheLimit() throws {
        let fired = Atomic<Int>(0)
        let activity = CollectiveActivity()
        let watchdog = CollectiveWatchdog(activity: activity, limit: 0.3, rank: 3, host: "node3", interval: 0.05) {
            fired.wrappingAdd(1, ordering: .relaxed)
            while true { sleep(3600) }      // stands in for MPI_Abort, which never returns
        }
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("watchdog-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: Data("earlier line\n".utf8))
        watchdog.logTo(log.path)
        watchdog.start()
        defer { watchdog.stop() }
        for _ in 0..<5 {                    // quick collectives: never past the limit
            activity.begin(.allReduce, bytes: 16)
            usleep(100_000)
            activity.end()
        }
        #expect(fired.load(ordering: .relaxed) == 0)
        activity.begin(.reduceScatter, bytes: 2048)
        let deadline = Date().addingTimeInterval(5)
        while fired.load(ordering: .relaxed) == 0 && Date() < deadline { usleep(20_000) }
        #expect(fired.load(ordering: .relaxed) == 1)
        let text = try String(contentsOf: log, encoding: .utf8)
        #expect(text.hasPrefix("earlier line\n"))
        #expect(text.contains("ERROR rank 3 on node3: collective #6 (reduce-scatter, 2048 bytes) has not completed after 0."))
    }
}
