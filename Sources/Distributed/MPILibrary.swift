import CMPI

/// Facts about the linked MPI library that can be read before MPI_Init (MPI-3 allows both
/// calls at any time). The communicator itself comes with the distributed-training layer.
public enum MPILibrary {
    /// The MPI standard version the library implements, e.g. (3, 1).
    public static var standardVersion: (major: Int, minor: Int) {
        var major: Int32 = 0, minor: Int32 = 0
        MPI_Get_version(&major, &minor)
        return (Int(major), Int(minor))
    }

    /// The implementation's own version string, e.g. "Open MPI v4.1.4, ...".
    public static var libraryVersion: String {
        var buffer = [CChar](repeating: 0, count: Int(CMPI_MAX_LIBRARY_VERSION_STRING()) + 1)
        var length: Int32 = 0
        MPI_Get_library_version(&buffer, &length)
        return String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

import Foundation
