import Foundation

/// How this process was started, and the communicator that goes with it.
public enum Launch {
    /// Whether a parallel launcher started this process, judged from the environment it sets:
    /// - `OMPI_COMM_WORLD_SIZE`: Open MPI's mpirun / mpiexec;
    /// - `PMIX_RANK`: any PMIx launcher (Open MPI's prterun, `srun --mpi=pmix`);
    /// - `PMI_RANK`: MPICH / Intel MPI's hydra, `srun --mpi=pmi2`;
    /// - `SLURM_PROCID` with `SLURM_NTASKS` > 1: a multi-task srun step (a single-task batch
    ///   script also has SLURM_PROCID, and must not start MPI).
    public static func isUnderLauncher(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        if environment["OMPI_COMM_WORLD_SIZE"] != nil || environment["PMIX_RANK"] != nil || environment["PMI_RANK"] != nil {
            return true
        }
        if environment["SLURM_PROCID"] != nil, let tasks = Int(environment["SLURM_NTASKS"] ?? ""), tasks > 1 { return true }
        return false
    }

    /// This process's rank as its launcher's environment gives it (0 when there is no
    /// launcher), readable before MPI_Init: for work every rank does alike before MPI starts.
    public static func environmentRank(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Int {
        guard isUnderLauncher(environment) else { return 0 }
        for name in ["OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"] {
            if let rank = Int(environment[name] ?? "") { return rank }
        }
        return 0
    }

    /// An `MPICommunicator` under a launcher, else a `SingleProcessCommunicator` (no MPI_Init:
    /// a plain `contrast train` never starts Open MPI's runtime).
    public static func communicator() throws -> Communicator {
        isUnderLauncher() ? try MPICommunicator.initialize() : SingleProcessCommunicator()
    }

    /// Runs `body` on this rank with the launch's communicator, then finalizes MPI.
    ///
    /// An error on one rank of several must end the whole job, or the other ranks wait in
    /// their next collective forever: it becomes `communicator.abort` (one line naming the
    /// rank on standard error, MPI_Abort, every rank exits non-zero). An error every rank
    /// threw alike (`SameOnEveryRank`) needs no abort: MPI is finalized and it is rethrown on
    /// every rank, for rank 0 to report. With one rank the error is rethrown for the caller to report.
    public static func runOnRanks(_ body: (Communicator) throws -> Void) throws {
        let communicator = try Self.communicator()
        do {
            try body(communicator)
        } catch let error as SameOnEveryRank {
            try? communicator.finalize()
            throw error
        } catch {
            if communicator.size > 1 { communicator.abort("\(error)", code: 1) }
            try? communicator.finalize()
            throw error
        }
        try communicator.finalize()
    }
}
