import Foundation
import Testing
import TestSupport
@testable import Data

/// The Python with torchvision: $CONTRAST_VERIFY_PYTHON (launch/test.sh exports it), else the
/// virtual environment launch/verify-python.sh makes, .venv-verify, at the repository root.
private let verifyPython: URL = {
    if let path = ProcessInfo.processInfo.environment["CONTRAST_VERIFY_PYTHON"], !path.isEmpty { return URL(fileURLWithPath: path) }
    return repositoryRoot.appendingPathComponent(".venv-verify/bin/python")
}()

/// Why the torchvision checks cannot run here, or nil when they can (the reason starts with the marker launch/test.sh counts).
private let torchvisionUnavailable: String? = {
    guard FileManager.default.isExecutableFile(atPath: verifyPython.path) else {
        return "python-verify: skipped: \(verifyPython.path) does not exist (launch/verify-python.sh makes it; or set CONTRAST_VERIFY_PYTHON)"
    }
    let probe = try? runProcess(verifyPython, ["-W", "ignore", "-c", "import torch, torchvision.transforms.functional"], timeout: 120)
    guard probe?.status == 0 else {
        return "python-verify: skipped: \(verifyPython.path) cannot import torch and torchvision.transforms.functional"
    }
    return nil
}()

/// A 3 x 16 x 16 image of independent bytes: every hue sector, saturation and brightness, grey pixels included.
private let randomImage: [UInt8] = {
    var state: UInt32 = 12345
    var bytes = (0..<768).map { _ -> UInt8 in state = state &* 1_664_525 &+ 1_013_904_223; return UInt8(state >> 24) }
    for k in stride(from: 0, to: 256, by: 17) { bytes[256 + k] = bytes[k]; bytes[512 + k] = bytes[k] }   // some grey pixels
    return bytes
}()

/// One case: an op of `ImageOps` applied to a float image, and the torchvision call that should agree.
private struct Case {
    var name: String, op: String, args: [Double], input: String
    var run: (UnsafeMutablePointer<Float>, _ channels: Int, _ height: Int, _ width: Int) -> Void
}

@Suite(.serialized) struct TorchvisionViewTests {
    /// Every op against torchvision 0.15's functional op on float tensors with the same parameters:
    /// within 1/255 everywhere, except resized_crop, which agrees within 1/255 inside the box and
    /// is reported (not bounded) at its edges (docs/data-format.md, "Views").
    @Test(.enabled(if: torchvisionUnavailable == nil, Comment(rawValue: torchvisionUnavailable ?? "")))
    func opsAgreeWithTorchvision() throws {
        print("python-verify: ran TorchvisionViewTests.opsAgreeWithTorchvision")
        let directory = temporaryDirectory("torchvision-views")
        defer { try? FileManager.default.removeItem(at: directory) }
        let inputs: [String: (values: [UInt8], shape: [Int])] = [
            "rgb": (rgbTestImage, [3, 20, 24]), "grey": (Array(rgbTestImage[0..<480]), [1, 20, 24]), "random": (randomImage, [3, 16, 16]),
        ]
        for (name, input) in inputs {
            try NPYArray.encode(float32: input.values.map { Float($0) / 255 }, shape: input.shape)
                .write(to: directory.appendingPathComponent("\(name).npy"))
        }
        var cases: [Case] = []
        for input in ["rgb", "grey", "random"] {
            for f: Float in [0.2, 0.75, 1.4, 1.8] {
                cases.append(Case(name: "brightness \(f) \(input)", op: "adjust_brightness", args: [Double(f)], input: input) { x, c, h, w in
                    ImageOps.brightness(x, count: c * h * w, factor: f)
                })
                cases.append(Case(name: "contrast \(f) \(input)", op: "adjust_contrast", args: [Double(f)], input: input) { x, c, h, w in
                    ImageOps.contrast(x, channels: c, pixels: h * w, factor: f)
                })
            }
            for (k, sigma): (Int, Float) in [(3, 0.1), (3, 1.0), (5, 0.7), (7, 2.0), (9, 1.5)] {
                cases.append(Case(name: "gaussian_blur \(k) \(sigma) \(input)", op: "gaussian_blur", args: [Double(k), Double(sigma)], input: input) { x, c, h, w in
                    var weights = [Float](repeating: 0, count: k), rows = [Float](repeating: 0, count: c * h * w)
                    ImageOps.gaussianKernel(size: k, sigma: sigma, into: &weights)
                    ImageOps.gaussianBlur(x, channels: c, height: h, width: w, weights: weights, size: k, scratch: &rows)
                })
            }
            for t: Float in [0.3, 0.5, 0.8] {
                cases.append(Case(name: "solarize \(t) \(input)", op: "solarize", args: [Double(t)], input: input) { x, c, h, w in
                    ImageOps.solarize(x, count: c * h * w, threshold: t)
                })
            }
            cases.append(Case(name: "hflip \(input)", op: "hflip", args: [], input: input) { x, c, h, w in
                Self.crop(x, c, h, w, top: 0, left: 0, height: h, width: w, flip: true)
            })
        }
        for input in ["rgb", "random"] {
            for f: Float in [0, 0.2, 1.5, 1.8] {
                cases.append(Case(name: "saturation \(f) \(input)", op: "adjust_saturation", args: [Double(f)], input: input) { x, c, h, w in
                    ImageOps.saturation(x, channels: c, pixels: h * w, factor: f)
                })
            }
            for shift: Float in [-0.5, -0.21, 0.07, 0.33, 0.5] {
                cases.append(Case(name: "hue \(shift) \(input)", op: "adjust_hue", args: [Double(shift)], input: input) { x, c, h, w in
                    ImageOps.hue(x, channels: c, pixels: h * w, shift: shift)
                })
            }
            cases.append(Case(name: "grayscale \(input)", op: "rgb_to_grayscale", args: [], input: input) { x, c, h, w in
                ImageOps.grayscale(x, channels: c, pixels: h * w)
            })
        }
        // Integer boxes (top, left, height, width, flip) of the 20 x 24 image: torchvision's resized_crop takes no fractions.
        for box in [(2, 3, 10, 12, 0), (0, 0, 20, 24, 0), (5, 1, 7, 9, 1), (0, 4, 20, 16, 0), (13, 17, 7, 7, 0), (1, 1, 18, 22, 1)] {
            cases.append(Case(name: "resized_crop \(box) rgb", op: "resized_crop",
                              args: [box.0, box.1, box.2, box.3, box.4].map(Double.init), input: "rgb") { x, c, h, w in
                Self.crop(x, c, h, w, top: box.0, left: box.1, height: box.2, width: box.3, flip: box.4 == 1)
            })
        }

        var listed: [[String: Any]] = []
        for (index, item) in cases.enumerated() {
            let input = inputs[item.input]!
            let (c, h, w) = (input.shape[0], input.shape[1], input.shape[2])
            var values = input.values.map { Float($0) / 255 }
            item.run(&values, c, h, w)
            try NPYArray.encode(float32: values, shape: input.shape).write(to: directory.appendingPathComponent("out\(index).npy"))
            listed.append(["name": item.name, "op": item.op, "args": item.args, "input": "\(item.input).npy", "output": "out\(index).npy"])
        }
        try JSONSerialization.data(withJSONObject: listed).write(to: directory.appendingPathComponent("cases.json"))

        let outcome = try runProcess(verifyPython, ["-W", "ignore", "tools/check_views.py", directory.path], timeout: 300)
        try #require(outcome.status == 0, Comment(rawValue: "check_views.py failed: " + outcome.error))
        let report = try #require(try JSONSerialization.jsonObject(with: Data(outcome.output.utf8)) as? [String: [String: Double]])
        #expect(report.count == cases.count)
        var worst: [String: (Double, Double)] = [:]
        for item in cases {
            let entry = try #require(report[item.name], "no result for \(item.name)")
            let measured = item.op == "resized_crop" ? entry["interior"]! : entry["max"]!
            #expect(measured <= 1.0 / 255, "\(item.name): torchvision differs by \(measured)")
            // (The whole-image crop and sigma 0.1's blur, a kernel of weight 1 - 1e-22 in the middle, are identities.)
            if !item.name.hasPrefix("resized_crop (0, 0, 20, 24, 0)") && !item.name.hasPrefix("gaussian_blur 3 0.1") {
                #expect(entry["changed"]! > 0.01, "\(item.name): torchvision left the image as it was; the case tests nothing")
            }
            let previous = worst[item.op] ?? (0, 0)
            worst[item.op] = (max(previous.0, entry["max"]!), max(previous.1, entry["interior"] ?? 0))
        }
        #expect(report["resized_crop (0, 0, 20, 24, 0) rgb"]?["max"] == 0)   // the whole image: exactly the pixels
        for (op, (largest, interior)) in worst.sorted(by: { $0.key < $1.key }) {
            print("torchvision agreement: \(op) max \(largest)" + (op == "resized_crop" ? ", inside the box \(interior)" : ""))
        }
    }

    /// `ImageOps.resizedCrop` of an integer box, into a copy.
    static func crop(_ x: UnsafeMutablePointer<Float>, _ c: Int, _ h: Int, _ w: Int, top: Int, left: Int, height: Int, width: Int, flip: Bool) {
        let source = Array(UnsafeBufferPointer(start: x, count: c * h * w))
        var taps = [Int32](repeating: 0, count: w), weights = [Float](repeating: 0, count: w)
        ImageOps.resizedCrop(source, channels: c, height: h, width: w, left: Float(left), top: Float(top), boxWidth: Float(width),
                             boxHeight: Float(height), flip: flip, into: x, columnTaps: &taps, columnWeights: &weights)
    }
}
