/// Sizes read from untrusted headers (.npy shapes, safetensors shapes, IDX dimensions) are
/// multiplied without trapping: nil when the product overflows, so a reader can throw its own
/// clear error instead.
@inline(__always)
func checkedProduct(_ factors: [Int], times scale: Int = 1) -> Int? {
    var product = scale
    for factor in factors {
        let (next, overflow) = product.multipliedReportingOverflow(by: factor)
        if overflow { return nil }
        product = next
    }
    return product
}
