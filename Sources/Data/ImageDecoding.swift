import CImageCodecs
import Foundation

/// An image decoded from a JPEG or PNG file: `height` x `width` x `channels` bytes, row-major,
/// channels interleaved (HWC). `channels` is 1 (gray) or 3 (RGB).
public struct DecodedImage: Sendable, Equatable {
    public var width: Int
    public var height: Int
    public var channels: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        precondition(channels == 1 || channels == 3, "DecodedImage: \(channels) channels (1 or 3)")
        precondition(width > 0 && height > 0 && pixels.count == width * height * channels,
                     "DecodedImage: \(pixels.count) bytes are not \(height) x \(width) x \(channels)")
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }
}

/// Why a file could not be decoded: one phrase, for "FILE: <reason>".
public struct ImageDecodingError: Error, Equatable, CustomStringConvertible, Sendable {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// What a file's first bytes say it is.
public enum ImageFormat: String, Sendable {
    case jpeg, png

    /// JPEG by its SOI marker FF D8 FF, PNG by its 8-byte signature; nil for anything else.
    public static func sniff<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> ImageFormat? {
        let head = Array(bytes.prefix(8))
        if head.count >= 3 && head[0] == 0xFF && head[1] == 0xD8 && head[2] == 0xFF { return .jpeg }
        if head == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] { return .png }
        return nil
    }
}

/// Decoding of JPEG and PNG bytes (Debian's libjpeg-turbo and libpng, through CImageCodecs) and
/// the fitting of the result to S x S. Every function is pure: the same bytes give the same
/// pixels on any thread, rank or machine with the same libraries.
public enum ImageDecoding {
    /// Larger images are refused before their pixels are allocated (a 100-byte PNG can claim
    /// 2^31 x 2^31 pixels): 2^28 pixels, e.g. 16384 x 16384, far above any training image.
    public static let defaultMaxPixels = 1 << 28

    /// Decodes a JPEG or PNG (told apart by their first bytes, not a file name) into gray or
    /// RGB as the file holds it, a JPEG turned upright by its EXIF orientation.
    ///
    /// PNG alpha is dropped, not composited, exactly as PIL's `convert("RGB")` drops it (a
    /// transparent pixel keeps the colour stored under it); a palette becomes its RGB colours;
    /// 16-bit samples keep their high byte (v >> 8); 1, 2 and 4-bit gray scale to 0...255.
    /// JPEG: gray stays gray, YCbCr becomes RGB with libjpeg's defaults (accurate integer IDCT,
    /// smooth chroma upsampling, as PIL decodes); CMYK is refused.
    /// - Throws: `ImageDecodingError` for anything else: not a JPEG or PNG, corrupt, truncated,
    ///   CMYK, more than `maxPixels` pixels.
    public static func decode(_ bytes: [UInt8], maxPixels: Int = defaultMaxPixels) throws -> DecodedImage {
        guard let format = ImageFormat.sniff(bytes) else {
            throw ImageDecodingError(bytes.isEmpty ? "empty file" : "not a JPEG or PNG file (its first bytes are neither signature)")
        }
        var image = contrast_image()
        let status = bytes.withUnsafeBufferPointer { buffer in
            switch format {
            case .jpeg: contrast_jpeg_decode(buffer.baseAddress, buffer.count, maxPixels, &image)
            case .png: contrast_png_decode(buffer.baseAddress, buffer.count, maxPixels, &image)
            }
        }
        defer { contrast_image_free(&image) }
        guard status == 0 else {
            let message = withUnsafeBytes(of: image.message) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            throw ImageDecodingError("\(format == .jpeg ? "JPEG" : "PNG"): \(message)")
        }
        let count = Int(image.width) * Int(image.height) * Int(image.channels)
        let decoded = DecodedImage(width: Int(image.width), height: Int(image.height), channels: Int(image.channels),
                                   pixels: Array(UnsafeBufferPointer(start: image.pixels, count: count)))
        guard format == .jpeg else { return decoded }
        return decoded.oriented(EXIFOrientation.of(jpeg: bytes))
    }

    /// One prepared sample from a file's bytes, as `contrast prepare images` stores it and as any
    /// reader of encoded images (webdataset shards, on-the-fly decoding) should make it: decoded,
    /// converted to `channels` (1 or 3), fitted to `size` x `size`, channel-major (CHW) uint8.
    public static func sample(_ bytes: [UInt8], size: Int, channels: Int, fit: DecodedImage.Fit = .crop) throws -> [UInt8] {
        try decode(bytes).converted(channels: channels).fitted(size: size, mode: fit).planar
    }
}

/// The EXIF orientation tag (0x0112) of a JPEG: how to turn the stored pixels upright.
/// 1 upright, 2 mirrored left-right, 3 rotated 180°, 4 mirrored top-bottom, 5 mirrored along the
/// main diagonal (transpose), 6 stored turned 90° counter-clockwise (shown turned 90° clockwise),
/// 7 mirrored along the anti-diagonal (transverse), 8 stored turned 90° clockwise; as PIL's
/// `ImageOps.exif_transpose` applies them.
public enum EXIFOrientation {
    /// The orientation of the first APP1 "Exif" segment's IFD0, read without a library: the
    /// JPEG's markers up to the first scan, the TIFF header (II or MM), IFD0's entries. 1 when
    /// there is none, or it is malformed or out of 1...8 (a bad tag never fails a file that
    /// decodes).
    public static func of(jpeg bytes: [UInt8]) -> Int {
        var position = 2   // after SOI
        while position + 4 <= bytes.count {
            guard bytes[position] == 0xFF else { return 1 }
            let marker = bytes[position + 1]
            if marker == 0xFF { position += 1; continue }   // fill byte
            if marker == 0xD8 || (0xD0...0xD7).contains(marker) || marker == 0x01 { position += 2; continue }
            if marker == 0xDA || marker == 0xD9 { return 1 }   // start of scan / end: no more metadata
            let length = Int(bytes[position + 2]) << 8 | Int(bytes[position + 3])
            guard length >= 2, position + 2 + length <= bytes.count else { return 1 }
            let segment = bytes[(position + 4) ..< (position + 2 + length)]
            if marker == 0xE1, let orientation = orientation(exif: Array(segment)) { return orientation }
            position += 2 + length
        }
        return 1
    }

    /// The orientation in an APP1 segment's payload ("Exif\0\0" + TIFF), or nil.
    static func orientation(exif segment: [UInt8]) -> Int? {
        guard segment.count >= 14, segment[0..<6].elementsEqual([0x45, 0x78, 0x69, 0x66, 0, 0]) else { return nil }
        let tiff = Array(segment[6...])
        let little: Bool
        switch (tiff[0], tiff[1]) {
        case (0x49, 0x49): little = true
        case (0x4D, 0x4D): little = false
        default: return nil
        }
        func u16(_ at: Int) -> Int? {
            guard at >= 0, at + 2 <= tiff.count else { return nil }
            return little ? Int(tiff[at]) | Int(tiff[at + 1]) << 8 : Int(tiff[at]) << 8 | Int(tiff[at + 1])
        }
        func u32(_ at: Int) -> Int? {
            guard let low = u16(little ? at : at + 2), let high = u16(little ? at + 2 : at) else { return nil }
            return high << 16 | low
        }
        guard u16(2) == 42, let ifd = u32(4), let entries = u16(ifd) else { return nil }
        for entry in 0..<entries {
            let at = ifd + 2 + 12 * entry
            guard let tag = u16(at) else { return nil }
            // SHORT (type 3), count 1: the value sits in the first two bytes of the value field.
            if tag == 0x0112, u16(at + 2) == 3, let value = u16(at + 8) {
                return (1...8).contains(value) ? value : nil
            }
        }
        return nil
    }
}

extension DecodedImage {
    /// The image turned upright from EXIF orientation `orientation` (1...8, see `EXIFOrientation`).
    public func oriented(_ orientation: Int) -> DecodedImage {
        guard orientation != 1, (2...8).contains(orientation) else { return self }
        let swaps = orientation >= 5
        let outWidth = swaps ? height : width, outHeight = swaps ? width : height
        var out = [UInt8](repeating: 0, count: pixels.count)
        let c = channels
        for y in 0..<outHeight {
            for x in 0..<outWidth {
                // Where output pixel (x, y) comes from in the stored image.
                let (sx, sy): (Int, Int)
                switch orientation {
                case 2: (sx, sy) = (width - 1 - x, y)
                case 3: (sx, sy) = (width - 1 - x, height - 1 - y)
                case 4: (sx, sy) = (x, height - 1 - y)
                case 5: (sx, sy) = (y, x)
                case 6: (sx, sy) = (y, height - 1 - x)
                case 7: (sx, sy) = (width - 1 - y, height - 1 - x)
                default: (sx, sy) = (width - 1 - y, x)   // 8
                }
                for k in 0..<c { out[(y * outWidth + x) * c + k] = pixels[(sy * width + sx) * c + k] }
            }
        }
        return DecodedImage(width: outWidth, height: outHeight, channels: c, pixels: out)
    }

    /// This image with `channels` channels: gray to RGB repeats the value; RGB to gray is
    /// ITU-R 601-2 luma as PIL's `convert("L")` computes it, L = (19595 R + 38470 G + 7471 B
    /// + 32768) >> 16 (0.299, 0.587, 0.114 in 16-bit fixed point, rounded).
    public func converted(channels target: Int) -> DecodedImage {
        precondition(target == 1 || target == 3, "converted: \(target) channels (1 or 3)")
        if target == channels { return self }
        let count = width * height
        var out = [UInt8](repeating: 0, count: count * target)
        if target == 3 {
            for i in 0..<count { let v = pixels[i]; out[3 * i] = v; out[3 * i + 1] = v; out[3 * i + 2] = v }
        } else {
            for i in 0..<count {
                let r = UInt32(pixels[3 * i]), g = UInt32(pixels[3 * i + 1]), b = UInt32(pixels[3 * i + 2])
                out[i] = UInt8((19595 * r + 38470 * g + 7471 * b + 0x8000) >> 16)
            }
        }
        return DecodedImage(width: width, height: height, channels: target, pixels: out)
    }

    /// This image resampled to `newWidth` x `newHeight` with PIL's `Image.resize(size,
    /// Image.BILINEAR)` algorithm, bit for bit: a separable triangle filter whose support
    /// widens by the scale factor when reducing (so it averages every source pixel, an
    /// antialiased reduction; plain bilinear when enlarging), weights normalised per output
    /// pixel and rounded to 22-bit fixed point, the horizontal pass first into 8-bit rows (only
    /// those the vertical pass reads), each value rounded and clamped to 0...255.
    public func resized(width newWidth: Int, height newHeight: Int) -> DecodedImage {
        precondition(newWidth > 0 && newHeight > 0, "resized: \(newWidth) x \(newHeight)")
        if newWidth == width && newHeight == height { return self }
        let horizontal = Resampling.coefficients(inSize: width, outSize: newWidth)
        let vertical = Resampling.coefficients(inSize: height, outSize: newHeight)
        var source = self
        var verticalBounds = vertical.bounds
        if newWidth != width {
            // Only rows first ..< last feed the vertical pass.
            let first = vertical.bounds[0].start
            let last = newHeight == height ? height : vertical.bounds[newHeight - 1].start + vertical.bounds[newHeight - 1].count
            let rows = newHeight == height ? 0 ..< height : first ..< last
            if newHeight != height { for i in verticalBounds.indices { verticalBounds[i].start -= first } }
            source = Resampling.horizontal(self, rows: rows, coefficients: horizontal, outWidth: newWidth)
        }
        if newHeight != height {
            source = Resampling.vertical(source, bounds: verticalBounds, weights: vertical.weights, kernelSize: vertical.kernelSize,
                                         outHeight: newHeight)
        }
        return source
    }

    /// Pixels x ..< x + w, y ..< y + h.
    public func cropped(x: Int, y: Int, width w: Int, height h: Int) -> DecodedImage {
        precondition(x >= 0 && y >= 0 && w > 0 && h > 0 && x + w <= width && y + h <= height, "cropped: out of bounds")
        var out = [UInt8](); out.reserveCapacity(w * h * channels)
        for row in y ..< y + h { out += pixels[((row * width + x) * channels) ..< ((row * width + x + w) * channels)] }
        return DecodedImage(width: w, height: h, channels: channels, pixels: out)
    }

    /// How `fitted(size:mode:)` makes a square.
    public enum Fit: String, Codable, Sendable { case crop, pad }

    /// An S x S image. `.crop`: the shorter side resized to S (the other to round(other x S /
    /// shorter), halves up) and the centre S x S kept (the left / top offset is floor((new - S) /
    /// 2)). `.pad`: the longer side resized to S and the image centred on black (0) the same
    /// way. An S x S image is returned as it is.
    public func fitted(size: Int, mode: Fit = .crop) -> DecodedImage {
        precondition(size > 0, "fitted: size \(size)")
        if width == size && height == size { return self }
        // round(a x S / b) with halves up, in integers: floor((2 a S + b) / (2 b)).
        func scaled(_ a: Int, _ b: Int) -> Int { max(1, (2 * a * size + b) / (2 * b)) }
        let shorterIsWidth = width <= height
        switch mode {
        case .crop:
            let (w, h) = shorterIsWidth ? (size, scaled(height, width)) : (scaled(width, height), size)
            return resized(width: w, height: h).cropped(x: (w - size) / 2, y: (h - size) / 2, width: size, height: size)
        case .pad:
            let (w, h) = shorterIsWidth ? (scaled(width, height), size) : (size, scaled(height, width))
            let inner = resized(width: w, height: h)
            var out = [UInt8](repeating: 0, count: size * size * channels)
            let left = (size - w) / 2, top = (size - h) / 2
            for row in 0..<h {
                let from = row * w * channels, to = ((top + row) * size + left) * channels
                out.replaceSubrange(to ..< to + w * channels, with: inner.pixels[from ..< from + w * channels])
            }
            return DecodedImage(width: size, height: size, channels: channels, pixels: out)
        }
    }

    /// The pixels channel-major (CHW): every channel's plane in turn, `channels` x `height` x `width`.
    public var planar: [UInt8] {
        if channels == 1 { return pixels }
        let count = width * height
        var out = [UInt8](repeating: 0, count: pixels.count)
        for i in 0..<count { for k in 0..<channels { out[k * count + i] = pixels[i * channels + k] } }
        return out
    }
}

/// PIL's Resample.c for 8-bit images with the bilinear (triangle) filter, transcribed.
enum Resampling {
    static let precisionBits = 32 - 8 - 2

    struct Coefficients {
        var bounds: [(start: Int, count: Int)]
        /// outSize x kernelSize fixed-point weights.
        var weights: [Int32]
        var kernelSize: Int
    }

    /// precompute_coeffs + normalize_coeffs_8bpc for the whole input range.
    static func coefficients(inSize: Int, outSize: Int) -> Coefficients {
        let scale = Double(inSize) / Double(outSize)
        let filterScale = max(scale, 1.0)
        let support = 1.0 * filterScale
        let kernelSize = Int(support.rounded(.up)) * 2 + 1
        var bounds: [(start: Int, count: Int)] = []
        var weights = [Int32](repeating: 0, count: outSize * kernelSize)
        var k = [Double](repeating: 0, count: kernelSize)
        for xx in 0..<outSize {
            let center = (Double(xx) + 0.5) * scale
            let ss = 1.0 / filterScale
            // C's (int) truncates toward zero; center - support + 0.5 may be negative.
            var xmin = Int(center - support + 0.5)
            if xmin < 0 { xmin = 0 }
            var xmax = Int(center + support + 0.5)
            if xmax > inSize { xmax = inSize }
            xmax -= xmin
            var ww = 0.0
            for x in 0..<xmax {
                var t = (Double(x + xmin) - center + 0.5) * ss
                if t < 0 { t = -t }
                let w = t < 1 ? 1 - t : 0
                k[x] = w
                ww += w
            }
            for x in 0..<kernelSize {
                let value = x < xmax ? (ww != 0 ? k[x] / ww : k[x]) : 0
                let scaled = value * Double(1 << precisionBits)
                weights[xx * kernelSize + x] = Int32(value < 0 ? -0.5 + scaled : 0.5 + scaled)
            }
            bounds.append((xmin, xmax))
        }
        return Coefficients(bounds: bounds, weights: weights, kernelSize: kernelSize)
    }

    @inline(__always) static func clip8(_ value: Int32) -> UInt8 {
        let shifted = value >> Int32(precisionBits)
        return shifted < 0 ? 0 : shifted > 255 ? 255 : UInt8(shifted)
    }

    static func horizontal(_ image: DecodedImage, rows: Range<Int>, coefficients: Coefficients, outWidth: Int) -> DecodedImage {
        let c = image.channels, inWidth = image.width
        var out = [UInt8](repeating: 0, count: rows.count * outWidth * c)
        image.pixels.withUnsafeBufferPointer { input in
            coefficients.weights.withUnsafeBufferPointer { weights in
                out.withUnsafeMutableBufferPointer { out in
                    for (row, y) in rows.enumerated() {
                        for xx in 0..<outWidth {
                            let (start, count) = coefficients.bounds[xx]
                            let k = weights.baseAddress! + xx * coefficients.kernelSize
                            for channel in 0..<c {
                                var sum: Int32 = 1 << Int32(precisionBits - 1)
                                for x in 0..<count {
                                    sum &+= Int32(input[(y * inWidth + start + x) * c + channel]) &* k[x]
                                }
                                out[(row * outWidth + xx) * c + channel] = clip8(sum)
                            }
                        }
                    }
                }
            }
        }
        return DecodedImage(width: outWidth, height: rows.count, channels: c, pixels: out)
    }

    static func vertical(_ image: DecodedImage, bounds: [(start: Int, count: Int)], weights: [Int32], kernelSize: Int,
                         outHeight: Int) -> DecodedImage {
        let c = image.channels, width = image.width
        var out = [UInt8](repeating: 0, count: outHeight * width * c)
        image.pixels.withUnsafeBufferPointer { input in
            weights.withUnsafeBufferPointer { weights in
                out.withUnsafeMutableBufferPointer { out in
                    for yy in 0..<outHeight {
                        let (start, count) = bounds[yy]
                        let k = weights.baseAddress! + yy * kernelSize
                        for x in 0..<(width * c) {
                            var sum: Int32 = 1 << Int32(precisionBits - 1)
                            for y in 0..<count { sum &+= Int32(input[(start + y) * width * c + x]) &* k[y] }
                            out[yy * width * c + x] = clip8(sum)
                        }
                    }
                }
            }
        }
        return DecodedImage(width: width, height: outHeight, channels: c, pixels: out)
    }
}
