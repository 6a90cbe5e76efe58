import Tensor
import RunFiles
import Foundation

/// Faults a test or the fault harness (launch/faults.sh) injects into a training run through one
/// environment variable (docs/reliability.md, "Fault injection hooks"):
///
///     CONTRAST_FAULT=FAULT[,FAULT...]      FAULT = KIND[@rank=R][@step=S | @step=S-T][@phase=P]
///
///     nan-grad   NaN written into rank R's local gradient before its all-reduce starts
///     nan-loss   rank R's share of the loss is NaN (the summed loss is NaN on every rank)
///     hang       rank R sleeps forever before the step's statistics all-reduce (the other
///                ranks block in a collective: the watchdog must end the job)
///     hang-eval  rank R sleeps forever as an evaluation begins, after step S (the watchdog's
///                evaluation limit, communication.eval_watchdog_seconds, must end the job)
///     kill       rank R raises SIGKILL on itself at phase P: forward (before the forward
///                pass), allreduce (gradient all-reduces in flight), optimizer (before the update)
///
/// Steps count from 1 as the logs and the `step` records do; without `@rank` every rank, without
/// `@step` every step. The value is parsed once per process; a malformed one is an error before
/// training starts. Unset, the trainer pays one comparison per step.
public struct FaultInjection: Sendable, Equatable {
    public static let environmentVariable = "CONTRAST_FAULT"

    public enum Kind: String, Sendable, CaseIterable {
        case nanGradient = "nan-grad", nanLoss = "nan-loss", hang, hangEvaluation = "hang-eval", kill
    }

    /// Where in the step a `kill` strikes.
    public enum Phase: String, Sendable, CaseIterable {
        case forward, allreduce, optimizer
    }

    public struct Fault: Sendable, Equatable {
        public var kind: Kind
        public var rank: Int?
        public var steps: ClosedRange<Int>?
        public var phase: Phase?
    }

    public var faults: [Fault]

    /// Parses `CONTRAST_FAULT`'s value; the error names the part that is wrong and the grammar.
    public init(_ text: String) throws {
        faults = try text.split(separator: ",").map { try Self.parseFault(String($0)) }
        if faults.isEmpty { throw Self.error(text, "no fault given") }
    }

    private static func parseFault(_ text: String) throws -> Fault {
        let parts = text.split(separator: "@", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        guard let kind = Kind(rawValue: parts[0]) else {
            throw error(text, "unknown fault '\(parts[0])' (one of \(Kind.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        var fault = Fault(kind: kind)
        for part in parts.dropFirst() {
            let pair = part.split(separator: "=", maxSplits: 1).map(String.init)
            guard pair.count == 2 else { throw error(text, "'\(part)' is not key=value") }
            switch pair[0] {
            case "rank":
                guard let rank = Int(pair[1]), rank >= 0 else { throw error(text, "rank '\(pair[1])' is not a rank number") }
                fault.rank = rank
            case "step":
                let bounds = pair[1].split(separator: "-", maxSplits: 1).map { Int($0) }
                guard let first = bounds.first ?? nil, let last = bounds.last ?? nil, first >= 1, last >= first else {
                    throw error(text, "step '\(pair[1])' is not a step S >= 1 or a range S-T")
                }
                fault.steps = first...last
            case "phase":
                guard let phase = Phase(rawValue: pair[1]) else {
                    throw error(text, "phase '\(pair[1])' is not one of \(Phase.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                fault.phase = phase
            default:
                throw error(text, "unknown key '\(pair[0])' (rank, step, phase)")
            }
        }
        if kind == .kill && fault.phase == nil { throw error(text, "kill needs @phase=forward|allreduce|optimizer") }
        if kind != .kill && fault.phase != nil { throw error(text, "only kill takes a phase") }
        return fault
    }

    private static func error(_ text: String, _ problem: String) -> RunDirectory.Failure {
        RunDirectory.Failure(description: "\(environmentVariable)=\(text): \(problem); the form is "
                         + "KIND[@rank=R][@step=S|@step=S-T][@phase=forward|allreduce|optimizer] with KIND one of "
                         + "\(Kind.allCases.map(\.rawValue).joined(separator: ", ")), several joined by ','")
    }

    /// The environment's value, parsed once per process (nil: unset or empty).
    private static let fromEnvironment: Result<FaultInjection?, RunDirectory.Failure> = {
        guard let value = ProcessInfo.processInfo.environment[environmentVariable], !value.isEmpty else { return .success(nil) }
        do { return .success(try FaultInjection(value)) } catch { return .failure(error as! RunDirectory.Failure) }
    }()

    /// In-process tests set this instead of the environment (it wins when set).
    @TaskLocal public static var simulated: FaultInjection?

    /// The faults of this process: the simulated ones, else the environment's; throws a
    /// malformed environment value.
    public static func configured() throws -> FaultInjection? {
        if let simulated { return simulated }
        return try fromEnvironment.get()
    }

    /// The faults due on `rank` at step `step` (1-based); nil when none.
    public func due(rank: Int, step: Int) -> StepFaults? {
        var due = StepFaults(rank: rank, step: step)
        for fault in faults where (fault.rank ?? rank) == rank && (fault.steps?.contains(step) ?? true) {
            switch fault.kind {
            case .nanGradient: due.nanGradient = true
            case .nanLoss: due.nanLoss = true
            case .hang: due.hang = true
            case .hangEvaluation: due.hangEvaluation = true
            case .kill: due.kill = fault.phase
            }
        }
        return due.nanGradient || due.nanLoss || due.hang || due.hangEvaluation || due.kill != nil ? due : nil
    }
}

/// The faults one step of one rank meets (`FaultInjection.due`), acted on at the step's named points (`StepHooks`).
public struct StepFaults: Sendable, Equatable {
    public var rank: Int
    public var step: Int
    public var nanGradient = false
    public var nanLoss = false
    public var hang = false
    public var hangEvaluation = false
    public var kill: FaultInjection.Phase?

    /// `kill` at `phase`: one line on standard error, then SIGKILL (no cleanup, as a node loss).
    public func reach(_ phase: FaultInjection.Phase) {
        guard kill == phase else { return }
        FileHandle.standardError.write(Data(
            "contrast: rank \(rank): \(FaultInjection.environmentVariable): kill at step \(step), phase \(phase.rawValue): raising SIGKILL\n".utf8))
        raise(SIGKILL)
    }

    /// `hang`: sleeps forever (only the job's end, by the watchdog or a signal, stops it).
    public func hangIfDue() {
        guard hang else { return }
        FileHandle.standardError.write(Data(
            "contrast: rank \(rank): \(FaultInjection.environmentVariable): hanging at step \(step) before a collective\n".utf8))
        while true { sleep(3600) }
    }

    /// `hang-eval`: sleeps forever as the evaluation after step `step` begins.
    public func hangInEvaluationIfDue() {
        guard hangEvaluation else { return }
        FileHandle.standardError.write(Data(
            "contrast: rank \(rank): \(FaultInjection.environmentVariable): hanging in the evaluation after step \(step)\n".utf8))
        while true { sleep(3600) }
    }
}
