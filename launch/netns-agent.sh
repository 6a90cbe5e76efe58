#!/usr/bin/env bash
# Open MPI's launcher agent (plm_rsh_agent) for launch/netns-cluster.sh's hosts: called as ssh
# would be, `netns-agent.sh HOST COMMAND...`, it runs COMMAND on HOST by entering that host's
# network, UTS (host name) and mount namespaces instead of logging in over ssh.
#
# HOST is a host name (contrast-h3) or its address (10.77.0.3). Like ssh, the command words are
# joined with spaces and run by sh, and the command starts with a clean environment (PATH, HOME,
# USER, LANG, TMPDIR and Open MPI's root permission, nothing else): what a rank needs from the
# launching shell must be passed with mpirun -x, as on a real cluster. An unknown host ends with
# one line naming it and status 255, as ssh's does.
set -euo pipefail

me=launch/netns-agent.sh
STATE=/run/contrast-netns
[[ $# -ge 2 ]] || { echo "$me: usage: $me HOST COMMAND... (Open MPI's plm_rsh_agent for launch/netns-cluster.sh)" >&2; exit 255; }
host=$1; shift
case "$host" in
    contrast-h[0-9]*) index=${host#contrast-h} ;;
    10.77.0.[0-9]*) index=${host#10.77.0.} ;;
    *) index="" ;;
esac
if [[ ! $index =~ ^[0-9]+$ ]] || ! ip netns list 2>/dev/null | grep -qx "contrast-h$index\( (id: [0-9]*)\)\{0,1\}" \
        || [[ ! -e $STATE/h$index.uts ]]; then
    echo "$me: no host '$host' in this machine's netns cluster ($(ip netns list 2>/dev/null | awk '/^contrast-h/ { printf "%s%s", sep, $1; sep = " " }' || true)); check the hostfile, or start the hosts with launch/netns-cluster.sh up N" >&2
    exit 255
fi
keep=(PATH="$PATH" HOME="${HOME:-/root}" USER="${USER:-$(id -un)}" LANG="${LANG:-C.UTF-8}")
[[ -z ${TMPDIR:-} ]] || keep+=(TMPDIR="$TMPDIR")
[[ -z ${OMPI_ALLOW_RUN_AS_ROOT:-} ]] || keep+=(OMPI_ALLOW_RUN_AS_ROOT="$OMPI_ALLOW_RUN_AS_ROOT")
[[ -z ${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-} ]] || keep+=(OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="$OMPI_ALLOW_RUN_AS_ROOT_CONFIRM")
exec nsenter --net="/run/netns/contrast-h$index" --uts="$STATE/h$index.uts" --mount="$STATE/h$index.mnt" -- \
    env -i "${keep[@]}" /bin/sh -c "$*"
