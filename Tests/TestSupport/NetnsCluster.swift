import Foundation
import RunFiles

/// Hosts on this machine for multi-host tests: launch/netns-cluster.sh's network, UTS and mount
/// namespaces on a bridge, reached by mpirun through launch/netns-agent.sh instead of ssh, the
/// ranks talking TCP on 10.77.0.0/24 only. Host i is named `contrast-hi`.
public struct NetnsCluster {
    public let hosts: Int
    public let slots: Int
    public static let hostfile = "/run/contrast-netns/hostfile"
    static let script = repositoryRoot.appendingPathComponent("launch/netns-cluster.sh")

    /// Why namespaces cannot be made here (nil when they can): not root, a tool missing, or a
    /// kernel or container that refuses new network, UTS and mount namespaces.
    public static let unavailableReason: String? = {
        guard getuid() == 0 else { return "needs root to make network namespaces" }
        for tool in ["/usr/sbin/ip", "/usr/bin/unshare", "/usr/bin/nsenter", "/usr/bin/mpirun"]
        where !FileManager.default.isExecutableFile(atPath: tool) {
            return "\(tool) not found (iproute2, util-linux, openmpi-bin)"
        }
        guard let probe = try? runProcess(URL(fileURLWithPath: "/usr/bin/unshare"), ["--net", "--uts", "--mount", "true"], timeout: 10),
              probe.status == 0 else { return "this kernel or container refuses new network, UTS and mount namespaces" }
        return nil
    }()

    /// The names the hosts give themselves, in order.
    public var hostnames: [String] { (1...hosts).map { "contrast-h\($0)" } }

    /// Brings `hosts` hosts up with `slots` ranks' room each, after taking down a cluster a
    /// crashed test may have left. Throws with the script's output when it fails.
    public static func up(hosts: Int, slots: Int) throws -> NetnsCluster {
        _ = try runProcess(script, ["down"], timeout: 60)
        let outcome = try runProcess(script, ["up", "\(hosts)", "--slots", "\(slots)"], timeout: 60)
        guard outcome.status == 0 else {
            _ = try? runProcess(script, ["down"], timeout: 60)
            throw RunDirectory.Failure(description: "launch/netns-cluster.sh up \(hosts) failed: \(outcome.error)")
        }
        return NetnsCluster(hosts: hosts, slots: slots)
    }

    /// Removes the hosts and ends whatever still runs on them.
    public func down() {
        _ = try? runProcess(Self.script, ["down"], timeout: 60)
    }

    /// Held while a cluster is up: the hosts' names are the machine's, so two test runs (two
    /// worktrees, the fault suite) take turns instead of taking each other's hosts down.
    public static let lockFile = "/run/lock/contrast-netns.lock"

    /// Runs `body` on `hosts` hosts, taking them down afterwards whatever happens.
    public static func with<Result>(hosts: Int, slots: Int, _ body: (NetnsCluster) throws -> Result) throws -> Result {
        let lock = open(lockFile, O_CREAT | O_RDWR | O_CLOEXEC, 0o644)
        if lock >= 0 { flock(lock, LOCK_EX) }
        defer { if lock >= 0 { close(lock) } }
        let cluster = try up(hosts: hosts, slots: slots)
        defer { cluster.down() }
        return try body(cluster)
    }

    /// mpirun's options for running on these hosts: the hostfile, the agent, TCP on the bridge
    /// only (no shared memory, which must not cross hosts), ranks unbound (every host sees the
    /// same cores), and `environment`'s names exported: the agent gives each host a clean
    /// environment, as ssh would.
    public func mpirunArguments(ranks: Int, exporting environment: [String] = []) -> [String] {
        ["-np", "\(ranks)", "--hostfile", Self.hostfile, "--bind-to", "none",
         "--mca", "plm_rsh_agent", repositoryRoot.appendingPathComponent("launch/netns-agent.sh").path,
         "--mca", "plm_rsh_no_tree_spawn", "1", "--mca", "btl", "tcp,self",
         "--mca", "btl_tcp_if_include", "10.77.0.0/24", "--mca", "oob_tcp_if_include", "10.77.0.0/24"]
            + (["OPENBLAS_NUM_THREADS"] + environment).sorted().flatMap { ["-x", $0] }
    }

    /// `contrast ARGUMENTS` on `ranks` ranks spread over the hosts, `slots` to a host in order.
    public func runContrast(ranks: Int, _ arguments: [String], environment extra: [String: String] = [:],
                            timeout: Double = 300) throws -> ProcessOutcome {
        var environment = extra
        environment["OPENBLAS_NUM_THREADS"] = "1"
        environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        return try runProcess(URL(fileURLWithPath: "/usr/bin/mpirun"),
                              mpirunArguments(ranks: ranks, exporting: Array(extra.keys)) + [contrastExecutable.path] + arguments,
                              environment: environment, timeout: timeout)
    }

    /// Runs `arguments` in host `host`'s mount namespace (1-based), for a mount only that host
    /// sees (the namespace lives until `down`, and a mount in it never reaches the others);
    /// throws with its standard error when it fails.
    @discardableResult
    public func inMountNamespace(ofHost host: Int, _ arguments: [String]) throws -> ProcessOutcome {
        let outcome = try runProcess(URL(fileURLWithPath: "/usr/bin/nsenter"),
                                     ["--mount=/run/contrast-netns/h\(host).mnt", "--"] + arguments, timeout: 60)
        guard outcome.status == 0 else {
            throw RunDirectory.Failure(description: "on contrast-h\(host): \(arguments.joined(separator: " ")) failed: \(outcome.error)")
        }
        return outcome
    }

    /// The host rank `rank` runs on when `ranks` ranks fill the hosts `slots` at a time.
    public func hostname(ofRank rank: Int) -> String { "contrast-h\(rank / slots + 1)" }
}
