import Foundation
import Synchronization
import Testing
@testable import Distributed

/// The collective watchdog's record of waits and its decision to fire, without MPI: the abort
/// the real watchdog calls (MPI_Abort) is replaced by one that records and parks the thread.
@Suite struct CollectiveWatchdogTests {
    /// Blocking collectives number themselves; a non-blocking start takes a number and its later
    /// wait reports it; nothing is reported between waits or while watching is suspended.
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
        activity.suspendWatching()
        #expect(activity.currentWait() == nil)
        activity.resumeWatching()
        #expect(activity.currentWait()?.sequence == 2)
        activity.end()
    }

    @Test func messageNamesRankCollectiveAndKey() {
        let wait = CollectiveActivity.Wait(sequence: 17, operation: .allReduce, bytes: 4_194_304, seconds: 301.34)
        #expect(CollectiveWatchdog.message(rank: 1, wait: wait)
                == "rank 1: collective #17 (allreduce, 4194304 bytes) has not completed after 301.3 s; aborting the job (communication.watchdog_seconds)")
    }

    /// Short waits pass; a wait past the limit fires once, writing its line to the log file.
    @Test func firesOnceOnAWaitPastTheLimit() throws {
        let fired = Atomic<Int>(0)
        let activity = CollectiveActivity()
        let watchdog = CollectiveWatchdog(activity: activity, limit: 0.3, rank: 3, interval: 0.05) {
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
        #expect(text.contains("ERROR rank 3: collective #6 (reduce-scatter, 2048 bytes) has not completed after 0."))
    }
}
