/// The contrast release, recorded in every checkpoint.
public let contrastVersion = "0.1.0"
