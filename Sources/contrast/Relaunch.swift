import Bench
import RunFiles
import ArgumentParser
import Foundation

/// Starting this same command again on several ranks through mpirun.
enum Relaunch {
    /// Replaces this process with `mpirun -np ranks <this executable> <the same arguments>`
    /// minus `--ranks`/`--tcp` (the copies are under a launcher, so they do not relaunch).
    static func underMPI(ranks: Int, tcp: Bool) throws -> Never {
        guard let mpirun = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw ValidationError("--ranks needs mpirun; run launch/setup.sh (Debian package openmpi-bin)")
        }
        var arguments = Array(CommandLine.arguments.dropFirst())
        if let i = arguments.firstIndex(of: "--ranks") { arguments.removeSubrange(i...min(i + 1, arguments.count - 1)) }
        arguments.removeAll { $0.hasPrefix("--ranks=") || $0 == "--tcp" }
        var launcher = [mpirun, "-np", "\(ranks)", "--bind-to", "none"]
        if ranks > ProcessInfo.processInfo.activeProcessorCount { launcher.append("--oversubscribe") }
        if tcp { launcher += ["--mca", "btl", "self,tcp"] }
        // One OpenBLAS thread per rank unless the caller says otherwise: OpenBLAS sizes its pool
        // at load time, and idle pool threads would spin on the cores the other ranks compute on.
        if ProcessInfo.processInfo.environment["OPENBLAS_NUM_THREADS"] == nil { setenv("OPENBLAS_NUM_THREADS", "1", 1) }
        launcher += ["-x", "OPENBLAS_NUM_THREADS"]
        if getuid() == 0 {
            setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1)
            setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1)
        }
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        let all = launcher + [executable] + arguments
        let argv = all.map { strdup($0) } + [nil]
        execv(mpirun, argv)
        throw ValidationError("could not start \(mpirun): \(String(cString: strerror(errno)))")
    }
}
