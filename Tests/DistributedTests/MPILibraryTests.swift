import Testing
@testable import Distributed

@Suite struct MPILibraryTests {
    @Test func linksAgainstAnMPI3Library() {
        let version = MPILibrary.standardVersion
        #expect(version.major >= 3)
        #expect(MPILibrary.libraryVersion.contains("MPI"))
    }
}
