#!/usr/bin/env bash
# Run every benchmark once, in order, and keep the raw outputs under
# bench/runs/<date>-<machine>/ (see BENCHMARKS.md). Needs wrk for the load
# bench. Usage: benches/run-all.sh [machine-name]
set -euo pipefail
cd "$(dirname "$0")/.."
machine=${1:-$(hostname -s)}
out=bench/runs/$(date -u +%Y-%m-%d)-$machine
mkdir -p "$out"
{
    echo "date: $(date -u +%FT%TZ)"
    echo "nproc: $(nproc)"
    grep -m1 "model name" /proc/cpuinfo || true
    echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "kernel: $(uname -r)"
    echo "rustc: $(rustc --version)"
    echo "wrk: $(command -v wrk >/dev/null && { wrk --version 2>&1 || true; } | head -1 || echo missing)"
    echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo ' + uncommitted changes in src/')"
    echo "load average before: $(cat /proc/loadavg)"
} > "$out/machine.txt"
cargo bench --no-run
cargo bench --bench access -- --noplot 2>&1 | tee "$out/access.txt"
cargo bench --bench alloc 2>&1 | tee "$out/alloc.txt"
cargo bench --bench memory 2>&1 | tee "$out/memory.txt"
# Fleet mode: the miss on SQLite and PostgreSQL, the revocation fan-out.
cargo bench --bench miss -- --out "$out" 2>&1 | tee "$out/miss.txt"
cargo bench --bench fanout 2>&1 | tee "$out/fanout.txt"
cargo bench --bench load -- --out "$out" 2>&1 | tee "$out/load.txt"
cargo bench --bench load -- --skip-reload --groups-header off 2>&1 | tee "$out/load-groups-off.txt"
# The reload phase again with the apps in 100 files, one rewritten per reload.
cargo bench --bench load -- --variants auth --policy-files 100 --out "$out/policy-files-100" 2>&1 | tee "$out/load-policy-files-100.txt"
echo "load average after: $(cat /proc/loadavg)" >> "$out/machine.txt"
echo "results in $out"
