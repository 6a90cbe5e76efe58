/// The one definition of a run's images/s over a logging interval (docs/monitoring.md,
/// "Throughput"), shared by the trainer's step lines and TensorBoard (`Monitor`) and by
/// `contrast tail` (`MetricsFollower`), so that they agree for the same steps.
///
/// Images of the global batch over wall seconds: every step of the interval counts its global
/// batch, and the seconds are the `time_wall` of those steps (from the end of the step before to
/// the end of this one, whatever ran between them: writing records, a checkpoint, an
/// evaluation). The mean of the steps' own `images_per_second` is not it: a mean of rates
/// weighs a 0.3 ms step as much as a 30 ms one and counts none of the time between steps.
public enum Throughput {
    /// `images` (the global batch of every step, summed) in `wallSeconds` (their `time_wall`,
    /// summed); NaN when no time passed.
    public static func imagesPerSecond(images: Int, wallSeconds: Double) -> Double {
        wallSeconds > 0 ? Double(images) / wallSeconds : .nan
    }
}
