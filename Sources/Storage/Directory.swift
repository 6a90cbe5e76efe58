import Foundation

/// Directories made with mkdir(2) itself, so that a failure names the one path that could not be
/// made and errno's reason: Foundation's `createDirectory` says only "(NSCocoaErrorDomain error
/// 512.)" on Linux, whatever went wrong.
public enum Directory {
    /// `mkdir -p`: makes `path` and every missing parent (mode 0777 less the umask).
    /// - Throws: `StorageError.system("mkdir", P, errno)` for the first path P that could not be
    ///   made; a file where a directory should be is `ENOTDIR` on that file's path.
    public static func create(_ path: String) throws(StorageError) {
        var status = stat()
        if stat(path, &status) == 0 {
            guard status.st_mode & S_IFMT == S_IFDIR else { throw .system("mkdir", path, errno: ENOTDIR) }
            return
        }
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty, parent != path { try create(parent) }
        guard mkdir(path, 0o777) == 0 || errno == EEXIST else { throw .system("mkdir", path) }
    }
}
