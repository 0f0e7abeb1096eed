#!/usr/bin/env bash
# Fleet benchmark: the real server and `firmware-sim fleet` on this machine.
#
#   test/bench/fleet.sh [DEVICES] [TRANSPORT]     (defaults: 10000 coaps)
#
# Pass 1: /crts-only ceiling, then enrollment, then renewal (re-key) of every
#         device; the server's CPU profile is taken during enrollment.
# Pass 2: a fresh registry, enrollment offered at half the rate of pass 1,
#         for latency at half load.
# Prints the fleet reports, the server's peak RSS, registry bytes per device
# and the top of the server profile. Every device does a full handshake.
set -euo pipefail
N=${1:-10000}
TRANSPORT=${2:-coaps}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$ROOT/bin
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
cd "$ROOT"
go build -o "$BIN/embark" ./cmd/embark
go build -o "$BIN/firmware-sim" ./firmware-sim
"$BIN/firmware-sim" factory --count "$N" --out "$WORK/factory" --quiet >/dev/null

start_server() { # $1 data dir
  "$BIN/embark" serve --data "$1" --udp 127.0.0.1:25684 --tcp 127.0.0.1:25684 --log-level warn >"$1.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 50); do [ -S "$1/admin.sock" ] && break; sleep 0.1; done
  "$BIN/embark" manufacturer trust "$WORK/factory/trust.json" --data "$1" >/dev/null
  "$BIN/embark" provenance import "$WORK/factory/manifest.json" --data "$1" >/dev/null
}
target() { if [ "$TRANSPORT" = coaps ]; then echo coaps://127.0.0.1:25684; else echo coaps+tcp://127.0.0.1:25684; fi; }

echo "== pass 1: $N devices over $TRANSPORT: crts ceiling, enroll, renew"
start_server "$WORK/d1"
"$BIN/firmware-sim" fleet --factory "$WORK/factory" --server "$(target)" --ca "$WORK/d1/ca/root.crt" \
  --mode crts --quiet | tee "$WORK/crts.txt"
( sleep 1; curl -s --unix-socket "$WORK/d1/admin.sock" "http://embark/debug/pprof/profile?seconds=5" -o "$WORK/cpu.prof" ) &
"$BIN/firmware-sim" fleet --factory "$WORK/factory" --server "$(target)" --ca "$WORK/d1/ca/root.crt" \
  --mode enroll --renew --quiet | tee "$WORK/enroll.txt"
wait %2 2>/dev/null || true
CEIL=$(awk '/^crts:/{getline; for(i=1;i<=NF;i++) if($i ~ /\/s,$/){sub("/s,","",$i); print $i}}' "$WORK/crts.txt")
RATE=$(awk '/^enroll:/{getline; for(i=1;i<=NF;i++) if($i ~ /\/s,$/){sub("/s,","",$i); print $i}}' "$WORK/enroll.txt")
echo "enroll / crts ceiling: $RATE / $CEIL = $(awk -v a="$RATE" -v b="$CEIL" 'BEGIN{printf "%.2f", a/b}')"
echo "server peak RSS: $(awk '/VmHWM/{printf "%.1f MB", $2/1024}' /proc/$SERVER/status)"
"$BIN/embark" status --data "$WORK/d1" | awk '/"bytes"|"devices"|"certificates"|"audit_entries"/'
BYTES=$(stat -c %s "$WORK/d1/registry.db")
echo "registry: $BYTES bytes for $N devices = $((BYTES / N)) bytes/device (after onboarding + one renewal)"
kill $SERVER; wait $SERVER 2>/dev/null || true
if [ -s "$WORK/cpu.prof" ]; then
  echo "== where the server's time goes during enrollment (pprof, cumulative)"
  go tool pprof -top -cum -nodecount=400 "$BIN/embark" "$WORK/cpu.prof" 2>/dev/null |
    grep -E 'onboard\.\(\*Service\)\.(Enroll|Renew)$|pki\.\(\*CA\)\.IssueLDevID$|onboard\.parseCSR$|idevid\.\(\*Verifier\)\.Verify$|bolt\.\(\*DB\)\.commit$|dtls/v3\.\(\*Conn\)\.handshake$|flight4Parse$|verifyCertificateVerify$|ecdsa\.VerifyASN1$|ecdsa\.SignASN1$|x509\.CreateCertificate$|runtime\.gcBgMarkWorker$|runtime\.mallocgc$|Syscall6$|ecdh' || true
fi

HALF=$(awk -v r="$RATE" 'BEGIN{printf "%d", r/2}')
M=$(( N < 5000 ? N : 5000 ))
echo "== pass 2: $M devices offered at $HALF/s (half the enrollment rate), fresh registry"
start_server "$WORK/d2"
"$BIN/firmware-sim" fleet --factory "$WORK/factory" --server "$(target)" --ca "$WORK/d2/ca/root.crt" \
  --count "$M" --rate "$HALF" --concurrency 256 --quiet
kill $SERVER; wait $SERVER 2>/dev/null || true
