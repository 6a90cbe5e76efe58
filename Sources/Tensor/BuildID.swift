import CKernels
import Foundation

/// The running executable's GNU build id: the linker's hash of the binary, so two ranks with
/// equal ids run the same build. Read once from the loaded ELF notes (no file access).
public enum BuildID {
    /// Hex digits of the build id; empty when the binary has none (linked without --build-id).
    public static let hex: String = {
        var bytes = [UInt8](repeating: 0, count: 64)
        let length = Int(ck_build_id(&bytes, bytes.count))
        return bytes.prefix(length).map { String(format: "%02x", $0) }.joined()
    }()
}
