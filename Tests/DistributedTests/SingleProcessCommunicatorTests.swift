import Testing
@testable import Distributed

/// The one-process communicator: every collective is the identity or a copy, with the same
/// argument checks as the MPI one, so the trainer's single code path is right at P = 1.
@Suite struct SingleProcessCommunicatorTests {
    let communicator = SingleProcessCommunicator()

    @Test func rankAndSize() throws {
        #expect(communicator.rank == 0 && communicator.size == 1 && communicator.isRoot)
        try communicator.barrier()
    }

    @Test func gatherAndReduceScatterCopy() throws {
        let send: [Float] = [1, 2, 3]
        var receive = [Float](repeating: 0, count: 3)
        try communicator.allGather(send, into: &receive, counts: [3])
        #expect(receive == send)
        var scattered = [Float](repeating: 0, count: 3)
        try communicator.reduceScatter(send, into: &scattered, counts: [3])
        #expect(scattered == send)
        var bytes = [UInt8](repeating: 0, count: 4)
        try communicator.allGatherBytes([9, 8, 7, 6] as [UInt8], bytes: 4, into: &bytes)
        #expect(bytes == [9, 8, 7, 6])
        var gathered = [Float](repeating: 0, count: 3)
        try gathered.withUnsafeMutableBufferPointer { try communicator.gather(send, into: $0.baseAddress!, counts: [3], root: 0) }
        #expect(gathered == send)
        #expect(throws: CommunicatorError.self) { try communicator.gather(send, into: nil, counts: [3], root: 0) }
        #expect(throws: CommunicatorError.self) { try communicator.gather(send, into: nil, counts: [3], root: 1) }
    }

    /// One rank: its own host name, as gethostname gives it, non-empty and without padding.
    @Test func hostnamesIsThisMachine() throws {
        let names = try communicator.hostnames()
        #expect(names == [Launch.localHostname()])
        #expect(!names[0].isEmpty && !names[0].contains("\0") && names[0].utf8.count < Launch.hostnameSlotBytes)
    }

    @Test func reductionsAreTheIdentity() throws {
        for precision in WirePrecision.allCases {
            var buffer: [UInt8] = (0..<16).map { UInt8($0) }
            try buffer.withUnsafeMutableBytes { try communicator.allReduce($0.baseAddress!, count: 16 / precision.stride, precision: precision) }
            #expect(buffer == (0..<16).map { UInt8($0) })
            let handle = try buffer.withUnsafeMutableBytes { try communicator.startAllReduce($0.baseAddress!, count: 16 / precision.stride, precision: precision) }
            #expect(try handle.test())
            try handle.wait()
            #expect(try handle.test())
        }
        var values = [1.5, -2]
        try communicator.allReduceMax(&values)
        #expect(values == [1.5, -2])
    }

    /// A ring of one rank: the block sent to rank + 1 = 0 comes back from rank - 1 = 0.
    @Test func ringShiftReturnsTheBlockToItsSender() throws {
        var receive = [Float](repeating: 0, count: 3)
        try communicator.ringShift([1, 2, 3], into: &receive, count: 3)
        #expect(receive == [1, 2, 3])
        var byte: UInt8 = 0
        #expect(throws: CommunicatorError.self) { try communicator.sendReceive([1], bytes: 1, to: 1, into: &byte, from: 0) }
    }

    @Test func wrongCountsAndRootsAreErrorsNamingTheCall() {
        var receive = [Float](repeating: 0, count: 2)
        #expect(throws: CommunicatorError.self) { try communicator.allGather([1, 2], into: &receive, counts: [1, 1]) }
        var byte: UInt8 = 0
        #expect(throws: CommunicatorError.self) { try communicator.broadcast(&byte, bytes: 1, root: 1) }
        let error = CommunicatorError(call: "MPI_Allreduce", rank: 1, size: 2, message: "boom")
        #expect(error.description == "MPI_Allreduce failed on rank 1 of 2: boom")
    }

    @Test func launcherDetection() {
        #expect(!Launch.isUnderLauncher([:]))
        #expect(Launch.isUnderLauncher(["OMPI_COMM_WORLD_SIZE": "2"]))
        #expect(Launch.isUnderLauncher(["PMIX_RANK": "0"]))
        #expect(Launch.isUnderLauncher(["PMI_RANK": "0"]))
        #expect(!Launch.isUnderLauncher(["SLURM_PROCID": "0", "SLURM_NTASKS": "1"]))
        #expect(Launch.isUnderLauncher(["SLURM_PROCID": "0", "SLURM_NTASKS": "4"]))
    }
}
