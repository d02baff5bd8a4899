#!/bin/sh
# hopbench node agent entrypoint (image built by bench/build/agentimage.py or the Dockerfile).
#
# 1. Use the iptables backend kube-proxy uses on this node, as kube-proxy's own
#    iptables-wrapper does: legacy only when legacy tables hold more rules than nft.
#    The legacy tables are only read when the kernel already has them loaded
#    (/proc/net/ip_tables_names), so probing never loads a module on the host.
# 2. Run the agent on the node IP (a hostNetwork pod's IP) as a child, so SIGTERM from
#    the kubelet reaches it: PID 1 ignores signals it installed no handler for.
set -eu

mode=nft
if [ -s /proc/net/ip_tables_names ]; then
    legacy=$(iptables-legacy-save 2>/dev/null | grep -c '^-' || true)
    nft=$(iptables-nft-save 2>/dev/null | grep -c '^-' || true)
    if [ "${legacy:-0}" -gt "${nft:-0}" ]; then mode=legacy; fi
fi
for cmd in iptables ip6tables; do
    update-alternatives --set "$cmd" "/usr/sbin/$cmd-$mode" >/dev/null 2>&1 || true
done

listen="${HOPBENCH_LISTEN:-${POD_IP:?POD_IP is not set}:${HOPBENCH_PORT:-10299}}"
python3 -m bench.agent --node "${NODE_NAME:?NODE_NAME is not set}" --listen "$listen" "$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null || true' TERM INT
status=0
wait "$child" || status=$?
# a trapped signal ends `wait` early (status > 128): wait for the agent's own exit
if [ "$status" -gt 128 ] && kill -0 "$child" 2>/dev/null; then
    status=0
    wait "$child" || status=$?
fi
exit "$status"
