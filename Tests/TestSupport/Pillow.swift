import Foundation

// The Python with Pillow (tools/verify-requirements.txt) that writes and reads the image fixtures of
// `contrast prepare images`' tests (tools/image_fixtures.py).

/// $CONTRAST_VERIFY_PYTHON (launch/test.sh exports it), else .venv-verify/bin/python at the repository root.
public let verifyPython: URL = {
    if let path = ProcessInfo.processInfo.environment["CONTRAST_VERIFY_PYTHON"], !path.isEmpty { return URL(fileURLWithPath: path) }
    return repositoryRoot.appendingPathComponent(".venv-verify/bin/python")
}()

/// Why the Pillow-made fixtures cannot be made here, or nil when they can. The skip reason starts
/// with the marker launch/test.sh counts ("python-verify: skipped").
public let pillowUnavailable: String? = {
    guard FileManager.default.isExecutableFile(atPath: verifyPython.path) else {
        return "python-verify: skipped: \(verifyPython.path) does not exist (launch/verify-python.sh makes it; or set CONTRAST_VERIFY_PYTHON)"
    }
    guard let outcome = try? runProcess(verifyPython, ["-c", "import PIL, numpy"], timeout: 120), outcome.status == 0 else {
        return "python-verify: skipped: \(verifyPython.path) cannot import PIL and numpy (pip install -r tools/verify-requirements.txt)"
    }
    return nil
}()

/// Runs tools/image_fixtures.py COMMAND OUT ARGUMENTS; stops the test process on failure (a broken fixture
/// script is not a skip). Prints the marker line launch/test.sh counts.
public func imageFixtures(_ command: String, _ arguments: [String] = [], label: String) -> String {
    let out = temporaryDirectory("images-\(label)").path
    let outcome = try! runProcess(verifyPython, ["tools/image_fixtures.py", command, out] + arguments, timeout: 600)
    precondition(outcome.status == 0, "tools/image_fixtures.py \(command) failed: \(outcome.error)")
    print("python-verify: ran image fixtures \(command)")
    return out
}
