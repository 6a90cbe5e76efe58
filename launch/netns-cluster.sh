#!/usr/bin/env bash
# Several "hosts" on this machine: Linux network namespaces joined by veth pairs on a bridge,
# each with its own host name, address and private scratch folder, for running and testing
# contrast across hosts over TCP (docs/launching.md, "Several hosts on one machine"). Needs root.
#
# Usage: launch/netns-cluster.sh up N [--slots S]   make hosts contrast-h1 ... contrast-hN
#        launch/netns-cluster.sh down               remove them, ending what still runs in them
#        launch/netns-cluster.sh status             list the hosts (exit 1 when there are none)
#        launch/netns-cluster.sh exec HOST COMMAND...   run COMMAND on HOST (as ssh would)
#
#   --slots S   slots per host in the hostfile (default 2): how many ranks mpirun puts on each
#   -h, --help  this text
#
# Host i (1 <= i <= N <= 250) is:
#   - network namespace contrast-hi, its interface eth0 at 10.77.0.i/24, the other end of the
#     veth pair (named contrast-hi too) on bridge contrast-br0 (10.77.0.254/24) in this
#     machine's namespace, where mpirun runs, like a login node; loopback up; nothing routed
#     beyond the subnet, so no traffic leaves the machine
#   - host name contrast-hi (a UTS namespace kept in $STATE/hi.uts): gethostname, and so
#     contrast's logs, Open MPI's node names and its session folders, say contrast-hi
#   - a mount namespace ($STATE/hi.mnt) in which $SCRATCH/local is the host's own folder
#     $SCRATCH/hi: the same path names a different folder on every host, like a node-local
#     /scratch (data.spill_dir there is private per host); every other path is shared, like a
#     cluster's shared file system (checkpoints, run directories)
# STATE is /run/contrast-netns, SCRATCH /tmp/contrast-netns (CONTRAST_NETNS_SCRATCH overrides).
#
# `up` writes $STATE/hostfile ("contrast-hi slots=S" per line) and $STATE/hosts (an /etc/hosts
# fragment, "10.77.0.i contrast-hi"). The host names need not resolve: launch/netns-agent.sh
# (Open MPI's plm_rsh_agent, in place of ssh) maps a name to its namespaces, and Open MPI's
# daemons and ranks then exchange IP addresses, never names. Run across the hosts with:
#   mpirun --hostfile /run/contrast-netns/hostfile -np 4 --bind-to none \
#       --mca plm_rsh_agent "$PWD/launch/netns-agent.sh" --mca plm_rsh_no_tree_spawn 1 \
#       --mca btl tcp,self --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24 \
#       .build/release/contrast train --config X.yaml
# or: launch/mpirun.sh --netns -np 4 .build/release/contrast train --config X.yaml
set -Eeuo pipefail

me=launch/netns-cluster.sh
usage() { sed -n '2,/^set -Eeuo pipefail$/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }
fail() { echo "$me: $1" >&2; exit "${2:-2}"; }

STATE=/run/contrast-netns
SCRATCH=${CONTRAST_NETNS_SCRATCH:-/tmp/contrast-netns}
SUBNET=10.77.0
BRIDGE=contrast-br0

hosts_up() { ip netns list 2>/dev/null | awk '$1 ~ /^contrast-h[0-9]+$/ { print $1 }' | sort -V; }

# Everything `up` made, in reverse, tolerating what is already gone: also `up`'s undo when a
# step fails half-way.
down() {
    local host pid file
    for host in $(hosts_up); do
        # Processes still running on the host (orted, ranks): a removed namespace would live on
        # in them. They are this cluster's, started through the agent.
        for pid in $(ip netns pids "$host" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns delete "$host" 2>/dev/null || true
        ip link delete "$host" 2>/dev/null || true
    done
    ip link delete "$BRIDGE" 2>/dev/null || true
    if [[ -d $STATE ]]; then
        for file in "$STATE"/*.uts "$STATE"/*.mnt; do
            [[ -e $file ]] || continue
            umount "$file" 2>/dev/null || true
            rm -f "$file"
        done
        umount "$STATE" 2>/dev/null || true
        rm -rf "$STATE"
    fi
    # Only what up made: CONTRAST_NETNS_SCRATCH may name a folder holding other things too.
    umount "$SCRATCH/local" 2>/dev/null || true
    rm -rf "$SCRATCH"/h[0-9]*
    rmdir "$SCRATCH/local" "$SCRATCH" 2>/dev/null || true
}

up() {
    local count=$1 slots=$2 i host
    [[ $(id -u) -eq 0 ]] || fail "up needs root (network, UTS and mount namespaces); run it with sudo" 1
    local tool
    for tool in ip unshare nsenter mount; do
        command -v "$tool" >/dev/null || fail "$tool not found; install iproute2 / util-linux" 1
    done
    [[ -z $(hosts_up) ]] || fail "a cluster is already up ($(hosts_up | paste -sd ' ')); run $me down first" 1
    trap 'echo "$me: up failed; removing what was made" >&2; down' ERR

    # The namespace files live on a private bind mount of their own folder: a mount namespace
    # bound to a file on a shared mount would propagate into itself (ip netns does the same for
    # /run/netns).
    mkdir -p "$STATE"
    mount --bind "$STATE" "$STATE"
    mount --make-private "$STATE"
    mkdir -p "$SCRATCH/local"

    ip link add "$BRIDGE" type bridge
    ip addr add "$SUBNET.254/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    for i in $(seq "$count"); do
        host=contrast-h$i
        ip netns add "$host"
        ip link add "$host" type veth peer name eth0 netns "$host"
        ip link set "$host" master "$BRIDGE" up
        ip -n "$host" link set lo up
        ip -n "$host" addr add "$SUBNET.$i/24" dev eth0
        ip -n "$host" link set eth0 up
        touch "$STATE/h$i.uts"
        unshare --uts="$STATE/h$i.uts" hostname "$host"
        mkdir -p "$SCRATCH/h$i"
    done
    # Mount namespaces last, so each already holds every host's namespace files (they are
    # private mounts: later ones would not show up in it).
    for i in $(seq "$count"); do
        touch "$STATE/h$i.mnt"
        unshare --mount="$STATE/h$i.mnt" --propagation private mount --bind "$SCRATCH/h$i" "$SCRATCH/local"
    done
    for i in $(seq "$count"); do echo "contrast-h$i slots=$slots"; done > "$STATE/hostfile"
    for i in $(seq "$count"); do echo "$SUBNET.$i contrast-h$i"; done > "$STATE/hosts"
    # The bridge forwards at once, but a veth's far end takes a moment to come up: wait until
    # every host answers (ping is not always installed, so a TCP connect to a closed port, which
    # is refused at once when the host is there, stands in for it).
    for i in $(seq "$count"); do
        local tries=0
        until [[ $(timeout 1 bash -c "exec 3<>/dev/tcp/$SUBNET.$i/9" 2>&1 || true) == *refused* ]]; do
            tries=$(( tries + 1 ))
            (( tries < 50 )) || fail "contrast-h$i ($SUBNET.$i) does not answer on $BRIDGE" 1
            sleep 0.1
        done
    done
    trap - ERR
    echo "$me: $count hosts up: contrast-h1 ... contrast-h$count on $SUBNET.0/24 (bridge $BRIDGE, $SUBNET.254 here)"
    echo "  hostfile: $STATE/hostfile ($slots slots per host); addresses: $STATE/hosts"
    echo "  scratch:  $SCRATCH/local is each host's own folder ($SCRATCH/hN seen from here)"
    echo "  agent:    $(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/netns-agent.sh (Open MPI's plm_rsh_agent)"
}

[[ $# -gt 0 ]] || { usage >&2; exit 2; }
case "$1" in
    up)
        [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ && $2 -le 250 ]] || fail "up expects a host count from 1 to 250, e.g. $me up 3"
        count=$2 slots=2; shift 2
        while [[ $# -gt 0 ]]; do
            case "$1" in
                --slots) [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || fail "--slots expects a positive number"; slots=$2; shift 2 ;;
                *) fail "unknown argument $1 (see $me --help)" ;;
            esac
        done
        up "$count" "$slots" ;;
    down)
        [[ $(id -u) -eq 0 ]] || fail "down needs root; run it with sudo" 1
        down
        echo "$me: down" ;;
    status)
        [[ -n $(hosts_up) ]] || { echo "$me: no hosts up"; exit 1; }
        for host in $(hosts_up); do
            echo "$host $(ip -n "$host" -br addr show eth0 | awk '{ print $2, $3 }') $(ip -br link show "$host" | awk '{ print "link", $2 }')"
        done ;;
    exec)
        shift
        exec "$(dirname "${BASH_SOURCE[0]}")/netns-agent.sh" "$@" ;;
    -h|--help) usage ;;
    *) fail "unknown command $1; expected up N, down, status or exec HOST COMMAND (see $me --help)" ;;
esac
