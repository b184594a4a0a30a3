#!/usr/bin/env bash
# Datapath benchmark (issue 4): iperf3 TCP throughput (both directions) and
# ping RTT through a tunnel between two network namespaces on this machine,
# for the plain veth link, wireguard-go <-> wireguard-go, meshd <-> meshd and
# meshd <-> wireguard-go, alternated round by round; prints medians and ratios
# to wireguard-go, plus the daemons' CPU seconds per Gbit.
# Usage (root): npm run build && bash bench/datapath.sh [ROUNDS] [SECONDS]
# Needs iproute2, wireguard-tools, wireguard-go, iperf3, jq (scripts/test.sh installs them).
set -euo pipefail
ROUNDS=${1:-3}
SECS=${2:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MESHD="$ROOT/bin/meshd"
ID=$$
A=bA$ID; B=bB$ID
TMP=$(mktemp -d)
PIDS=()

cleanup() {
  for p in "${PIDS[@]:-}"; do [[ -n "$p" ]] && kill "$p" 2>/dev/null || true; done
  sleep 0.3
  ip netns del $A 2>/dev/null || true
  ip netns del $B 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

ip netns add $A; ip netns add $B
ip link add vA$ID netns $A type veth peer name vB$ID netns $B
ip -n $A addr add 192.168.200.1/24 dev vA$ID; ip -n $B addr add 192.168.200.2/24 dev vB$ID
for ns in $A $B; do ip -n $ns link set lo up; done
ip -n $A link set vA$ID up; ip -n $B link set vB$ID up
# The "plain link" baseline uses the veth addresses directly.

KA=$(wg genkey); KB=$(wg genkey); PA=$(echo "$KA" | wg pubkey); PB=$(echo "$KB" | wg pubkey)
umask 077
echo "$KA" > "$TMP/ka"; echo "$KB" > "$TMP/kb"

cpu_of() { # utime+stime in clock ticks of a PID
  awk '{print $14+$15}' /proc/$1/stat 2>/dev/null || echo 0
}

start_side() { # impl ns ifname key peerpub myip peerip peerunderlay -> echoes PID
  local impl=$1 ns=$2 ifn=$3 key=$4 peer=$5 me=$6 them=$7 under=$8 aead=native
  if [[ $impl == meshd-node ]]; then impl=meshd; aead=node; fi
  if [[ $impl == meshd ]]; then
    cat > "$TMP/$ifn.conf" <<EOC
[Interface]
PrivateKey = $(cat "$key")
ListenPort = 51820
Address = $me/24
[Peer]
PublicKey = $peer
AllowedIPs = $them/32
Endpoint = $under:51820
EOC
    ip netns exec $ns "$MESHD" daemon --tun $ifn --config "$TMP/$ifn.conf" --aead $aead --log-level warn > "$TMP/$ifn.log" 2>&1 &
    echo $!
  else
    ip netns exec $ns env WG_PROCESS_FOREGROUND=1 wireguard-go $ifn > "$TMP/$ifn.log" 2>&1 &
    local pid=$!
    for _ in $(seq 1 50); do [[ -S /var/run/wireguard/$ifn.sock ]] && break; sleep 0.1; done
    ip netns exec $ns wg set $ifn private-key "$key" listen-port 51820 peer "$peer" allowed-ips $them/32 endpoint $under:51820
    ip -n $ns addr add $me/24 dev $ifn
    ip -n $ns link set $ifn up
    echo $pid
  fi
}

wait_ready() { # ns ifname
  for _ in $(seq 1 100); do
    ip -n $1 link show $2 2>/dev/null | grep -q UP && ip -n $1 addr show $2 | grep -q inet && return 0
    sleep 0.1
  done
  echo "interface $2 did not come up" >&2; return 1
}

run_iperf() { # server-ns client-ns server-ip -> bits/s
  ip netns exec $1 iperf3 -s -1 -p 5201 > /dev/null 2>&1 &
  local sp=$!
  sleep 0.3
  local out
  out=$(ip netns exec $2 iperf3 -c $3 -p 5201 -t $SECS -J 2>/dev/null || true)
  wait $sp 2>/dev/null || true
  echo "$out" | jq -r '(.end.sum_received.bits_per_second // 0) | floor'
}

run_ping() { # ns dst -> avg ms
  ip netns exec $1 ping -q -c 20 -i 0.05 -W 1 $2 | awk -F'/' '/rtt/ {print $5}'
}

declare -A RES
measure() { # label implA implB
  local label=$1 ia=$2 ib=$3 pa=0 pb=0 ifa=tA$ID ifb=tB$ID ipA=10.200.0.1 ipB=10.200.0.2
  if [[ $ia == veth ]]; then
    ipA=192.168.200.1; ipB=192.168.200.2
  else
    pa=$(start_side $ia $A $ifa "$TMP/ka" "$PB" 10.200.0.1 10.200.0.2 192.168.200.2); PIDS+=($pa)
    pb=$(start_side $ib $B $ifb "$TMP/kb" "$PA" 10.200.0.2 10.200.0.1 192.168.200.1); PIDS+=($pb)
    wait_ready $A $ifa; wait_ready $B $ifb
    ip netns exec $A ping -c 3 -i 0.2 -W 2 $ipB > /dev/null || { echo "$label: tunnel did not come up" >&2; tail -5 "$TMP"/*.log >&2; }
  fi
  local c0a=0 c0b=0
  [[ $pa != 0 ]] && c0a=$(cpu_of $pa) && c0b=$(cpu_of $pb)
  local fwd rev rtt
  fwd=$(run_iperf $B $A $ipB)
  rev=$(run_iperf $A $B $ipA)
  rtt=$(run_ping $A $ipB)
  local cpu=0
  if [[ $pa != 0 ]]; then
    cpu=$(( $(cpu_of $pa) - c0a + $(cpu_of $pb) - c0b ))
    kill $pa $pb 2>/dev/null || true
    wait $pa $pb 2>/dev/null || true
    sleep 0.3
  fi
  local tick; tick=$(getconf CLK_TCK)
  # CPU seconds of both daemons per Gbit transferred (both directions).
  local cpg=0
  [[ $cpu != 0 ]] && cpg=$(awk -v c=$cpu -v t=$tick -v f=$fwd -v r=$rev -v s=$SECS 'BEGIN {g=(f+r)*s/1e9; print (g>0 ? c/t/g : 0)}')
  RES[$label]+="$fwd $rev $rtt $cpg;"
  printf '%-24s fwd %7.3f Gbit/s  rev %7.3f Gbit/s  rtt %6s ms  cpu %5.2f s/Gbit\n' "$label" "$(awk -v x=$fwd 'BEGIN{print x/1e9}')" "$(awk -v x=$rev 'BEGIN{print x/1e9}')" "$rtt" "$cpg"
}

echo "# $(date -u +%F) $(uname -r) $(nproc) vCPU, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); node $(node --version); wireguard-go $(dpkg-query -W -f='${Version}' wireguard-go); ${SECS}s iperf3 TCP, ${ROUNDS} rounds"
for r in $(seq 1 $ROUNDS); do
  echo "## round $r"
  measure veth veth veth
  measure wireguard-go wg wg
  measure meshd-js meshd meshd
  measure meshd-js-nodecrypto meshd-node meshd-node
  measure meshd-js/wireguard-go meshd wg
done

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
echo "## medians (ratio to wireguard-go)"
echo "| link | A->B TCP | B->A TCP | ping RTT | CPU s/Gbit (both daemons) |"
echo "|---|---|---|---|---|"
field() { echo "${RES[$1]}" | tr ';' '\n' | grep -v '^$' | awk -v f=$2 '{print $f}' | median; }
WF=$(field wireguard-go 1); WR=$(field wireguard-go 2); WT=$(field wireguard-go 3)
for label in veth wireguard-go meshd-js meshd-js-nodecrypto meshd-js/wireguard-go; do
  f=$(field $label 1); rv=$(field $label 2); t=$(field $label 3); c=$(field $label 4)
  awk -v l="$label" -v f=$f -v wf=$WF -v r=$rv -v wr=$WR -v t=$t -v wt=$WT -v c=$c 'BEGIN {
    printf "| %-22s | %7.3f Gbit/s (%5.2fx) | %7.3f Gbit/s (%5.2fx) | %6.3f ms (%5.2fx) | %5.2f |\n", l, f/1e9, f/wf, r/1e9, r/wr, t, t/wt, c }'
done
