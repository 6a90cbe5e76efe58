import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Files a launcher reads to name the ranks a failed job lost, also those lost before MPI
/// started, when there is no run directory and Open MPI's own report may name another rank.
/// launch/mpirun.sh sets `CONTRAST_RANK_MARKERS` to a folder; each rank of a `contrast` it
/// starts writes there:
/// - `rank-R.start` ("rank R host H pid P"), first thing in `main`, before MPI starts;
/// - `rank-R.exit` when the process exits through `exit` (a finished run, a stop with a
///   checkpoint, an error it printed: every ending contrast chooses) or MPI_Abort (`noteExit`);
/// - `rank-R.signalled` when a stop signal reached it (SIGTERM is how mpirun and Slurm end the
///   other ranks of a failed job, a second before SIGKILL).
///
/// A rank with a start marker and neither of the others died of something else (SIGKILL, a
/// crash): the rank the job lost. A rank without a start marker never started. Without the
/// variable, or outside a launch, nothing is written.
public enum RankMarkers {
    public static let variable = "CONTRAST_RANK_MARKERS"

    /// The markers' paths as C strings made before any handler exists (a handler may not
    /// allocate); nil when no marker is written.
    private nonisolated(unsafe) static var exitPath: UnsafeMutablePointer<CChar>?
    private nonisolated(unsafe) static var signalledPath: UnsafeMutablePointer<CChar>?

    /// Writes the start marker and arranges for the other two. Call it first in `main`.
    public static func start(_ environment: [String: String] = ProcessInfo.processInfo.environment) {
        guard exitPath == nil, let directory = environment[variable], !directory.isEmpty,
              Launch.isUnderLauncher(environment) else { return }
        // The launcher made the folder; a rank on a host that cannot see it writes nothing.
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else { return }
        let base = "\(directory)/rank-\(Launch.environmentRank(environment))"
        let line = "rank \(Launch.environmentRank(environment)) host \(Launch.localHostname()) pid \(getpid())\n"
        guard FileManager.default.createFile(atPath: base + ".start", contents: Data(line.utf8)) else { return }
        exitPath = strdup(base + ".exit")
        signalledPath = strdup(base + ".signalled")
        atexit { RankMarkers.touch(RankMarkers.exitPath) }
        // Until the trainer installs its stop handlers (StopSignal), SIGTERM kills at once as
        // before, after the marker: a handler only where SIGTERM has its default action (one
        // a caller ignores stays ignored).
        var current = sigaction()
        if sigaction(SIGTERM, nil, &current) == 0, current.__sigaction_handler.sa_handler == nil {
            signal(SIGTERM) { number in
                RankMarkers.noteSignal()
                signal(number, SIG_DFL)
                raise(number)
            }
        }
    }

    /// Records that a stop signal reached this rank. Async-signal-safe (open and close only).
    public static func noteSignal() { touch(signalledPath) }

    /// Writes the exit marker now: for an ending that does not go through `exit`, such as
    /// MPI_Abort after a rank printed why (an error of its own, the collective watchdog).
    public static func noteExit() { touch(exitPath) }

    private static func touch(_ path: UnsafeMutablePointer<CChar>?) {
        guard let path else { return }
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        if descriptor >= 0 { close(descriptor) }
    }
}
