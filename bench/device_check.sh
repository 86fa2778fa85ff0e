#!/usr/bin/env bash
# The one-shot GPU device check (DESIGN.md §7): build effdl in place for sm_90a, run the
# cuda-marked tests, run the GPU benchmarks, derive which kernels passed on this architecture,
# and print a short table last. Run from anywhere on a GPU machine without network:
#
#     bench/device_check.sh [OUT_DIR]          # default ./device-out
#
# Writes to OUT_DIR: env.txt, nvidia-smi.txt, build.log, cuda-tests.txt (the collected ids),
# cuda-tests-NN.xml + tests-NN.log (one per parallel shard), wgmma-tests.xml + wgmma-tests.log
# (the int8_linear tests again with EFFDL_CUDA_WGMMA=1, kept out of the validation),
# cuda-<gpu>-<arch>-<date>.json + bench.log, validation.json, validated-candidate.json
# (a python/effdl/validated.json for a human to review and commit; never applied here),
# phases.tsv and summary.txt (the final table). Every phase is bounded by `timeout` and a
# failing phase never stops the later ones. The GPU's settings (clocks, power, persistence
# mode, MIG) are only read, never changed.
#
# Environment: PYTHON (the interpreter with torch; default: the first of python3/python that
# imports torch); DEVICE_CHECK_BUILD_S / _TEST_S / _WGMMA_S / _BENCH_S (phase limits, default
# 170 / 130 / 90 / 150 s); DEVICE_CHECK_SHARDS (parallel test processes, default 4);
# DEVICE_CHECK_QUICK=1 (the --quick benchmarks); DEVICE_CHECK_SKIP_BUILD=1 (test the extension
# already in python/effdl).
set -u

OUT="${1:-./device-out}"
mkdir -p "$OUT" || { echo "device_check: cannot create $OUT" >&2; exit 2; }
OUT="$(cd "$OUT" && pwd)"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2

BUILD_S="${DEVICE_CHECK_BUILD_S:-170}"
TEST_S="${DEVICE_CHECK_TEST_S:-130}"
BENCH_S="${DEVICE_CHECK_BENCH_S:-150}"
SHARDS="${DEVICE_CHECK_SHARDS:-4}"
WGMMA_S="${DEVICE_CHECK_WGMMA_S:-90}"
T0=$(date +%s)
PHASES="$OUT/phases.tsv"
printf 'phase\trc\tseconds\tlog\n' >"$PHASES"

have() { command -v "$1" >/dev/null 2>&1; }

# run_phase NAME LIMIT_S LOG CMD...: CMD under `timeout` (SIGINT first, so pytest and the bench
# still write their files, SIGKILL 10 s later), output to LOG; records rc and duration.
run_phase() {
    local name="$1" limit="$2" log="$3" start rc
    shift 3
    start=$(date +%s)
    echo "== $name (limit ${limit}s) -> $log" >&2
    if have timeout; then
        timeout -s INT -k 10 "$limit" "$@" >"$log" 2>&1
    else
        "$@" >"$log" 2>&1
    fi
    rc=$?
    [ "$rc" -eq 124 ] && echo "   $name: timed out after ${limit}s" >&2
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(($(date +%s) - start))" "$(basename "$log")" >>"$PHASES"
    return 0
}

# ---------------------------------------------------------------- environment (read-only)
PY=""
for candidate in ${PYTHON:-} python3 python; do
    if have "$candidate" && "$candidate" -c 'import torch' >/dev/null 2>&1; then
        PY="$candidate"
        break
    fi
done

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "repo head: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
    echo "local changes: $(git status --porcelain -- csrc python setup.py bench tests 2>/dev/null | wc -l)"
    echo "cores: $(nproc 2>/dev/null || echo unknown)"
    echo "python: ${PY:-none with torch found}"
    if [ -n "$PY" ]; then
        timeout 60 "$PY" - <<'EOF' 2>&1
import platform, torch
print("python version:", platform.python_version())
print("torch:", torch.__version__, "| CUDA runtime:", torch.version.cuda, "| cuda available:", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("gpu:", p.name, "| capability:", torch.cuda.get_device_capability(0), "| SMs:", p.multi_processor_count,
          "| memory GiB:", round(p.total_memory / 2**30, 1), "| L2 MiB:", getattr(p, "L2_cache_size", 0) / 2**20)
try:
    import triton
    print("triton:", triton.__version__)
except Exception as exc:
    print("triton: unavailable:", exc)
EOF
    fi
    if have nvcc; then nvcc --version 2>&1 | tail -n 2; else echo "nvcc: not found"; fi
    if have ninja; then echo "ninja: $(ninja --version)"; else echo "ninja: not found (the build compiles serially)"; fi
    if have c++; then c++ --version 2>&1 | head -n 1; fi
} >"$OUT/env.txt" 2>&1
if have nvidia-smi; then
    { timeout 30 nvidia-smi; echo; timeout 30 nvidia-smi \
        --query-gpu=name,compute_cap,driver_version,memory.total,clocks.max.sm,clocks.sm,power.limit,persistence_mode \
        --format=csv; } >"$OUT/nvidia-smi.txt" 2>&1
else
    echo "nvidia-smi: not found" >"$OUT/nvidia-smi.txt"
fi
cat "$OUT/env.txt" >&2

ARCH=""
if [ -n "$PY" ]; then
    ARCH=$(timeout 60 "$PY" -c 'import torch; m, n = torch.cuda.get_device_capability(0); print(f"sm_{m}{n}")' 2>/dev/null)
fi

# ---------------------------------------------------------------- phases
if [ -z "$PY" ]; then
    printf 'build\tskipped: no python with torch\t0\t-\n' >>"$PHASES"
elif [ "${DEVICE_CHECK_SKIP_BUILD:-0}" = "1" ]; then
    printf 'build\tskipped: DEVICE_CHECK_SKIP_BUILD=1\t0\t-\n' >>"$PHASES"
else
    # --force: the extension already here may be newer than the sources but built for another torch
    run_phase build "$BUILD_S" "$OUT/build.log" env TORCH_CUDA_ARCH_LIST=9.0a EFFDL_CUDA=1 \
        MAX_JOBS="$(nproc 2>/dev/null || echo 4)" "$PY" setup.py build_ext --inplace --force
fi

if [ -n "$PY" ]; then
    # The cuda tests in SHARDS parallel pytest processes (contiguous slices of the collected
    # node ids, so one test function's cases stay together): Triton's JIT compilation is
    # CPU-bound and the machine has many cores; a shard that hangs costs only its own slice.
    TIMEOUT_ARGS=()
    if "$PY" -c 'import pytest_timeout' >/dev/null 2>&1; then TIMEOUT_ARGS=(--timeout=90); fi
    rm -f "$OUT"/cuda-tests-*.xml "$OUT"/shard-* "$OUT"/validation.json "$OUT"/validated-candidate.json
    PYTHONPATH=python timeout 120 "$PY" -m pytest -m cuda --collect-only -q -p no:cacheprovider tests \
        2>"$OUT/collect.log" | grep '::' >"$OUT/cuda-tests.txt"
    NTESTS=$(wc -l <"$OUT/cuda-tests.txt")
    echo "   $NTESTS cuda tests collected" >&2
    if [ "$NTESTS" -ge "$SHARDS" ] && split -n "l/$SHARDS" -d "$OUT/cuda-tests.txt" "$OUT/shard-" 2>/dev/null; then
        for f in "$OUT"/shard-[0-9][0-9]; do mv "$f" "$f.txt"; done
    else  # few tests, or a split without -n: one shard
        rm -f "$OUT"/shard-*
        cp "$OUT/cuda-tests.txt" "$OUT/shard-00.txt"
    fi
    for shard in "$OUT"/shard-*.txt; do
        i=$(basename "$shard" .txt)
        i=${i#shard-}
        mapfile -t IDS <"$shard"
        if [ "${#IDS[@]}" -eq 0 ]; then IDS=(tests); fi  # collection failed: let pytest report why
        run_phase "cuda-tests-$i" "$TEST_S" "$OUT/tests-$i.log" env PYTHONPATH=python "$PY" -m pytest -m cuda \
            -q -p no:cacheprovider -rfEs --junitxml="$OUT/cuda-tests-$i.xml" ${TIMEOUT_ARGS[@]+"${TIMEOUT_ARGS[@]}"} "${IDS[@]}" &
    done
    wait

    # validate before the bench: a kernel that failed its tests is not benchmarked (a faulting
    # kernel would lose the CUDA context for every later case)
    JUNITS=("$OUT"/cuda-tests-*.xml)
    if [ -f "${JUNITS[0]}" ] && [ -n "$ARCH" ]; then
        run_phase validate 60 "$OUT/validate.log" env PYTHONPATH=python "$PY" -m bench.validate \
            "${JUNITS[@]}" --arch "$ARCH" --out "$OUT/validated-candidate.json" \
            --summary "$OUT/validation.json" --expected "$OUT/cuda-tests.txt"
    else
        printf 'validate\tskipped: no cuda-tests-NN.xml or no GPU arch\t0\t-\n' >>"$PHASES"
    fi

    # The opt-in Hopper int8_linear kernel (EFFDL_CUDA_WGMMA=1: wgmma, sm_90a, M >= 128): the
    # int8_linear tests once more with it on, in a process of their own and outside the validation
    # above (its junit file is not a cuda-tests-NN.xml), so that its result is read on its own and
    # the default can be flipped after a pass. On another arch the kernel is never taken.
    run_phase wgmma-int8-tests "$WGMMA_S" "$OUT/wgmma-tests.log" env EFFDL_CUDA_WGMMA=1 PYTHONPATH=python \
        "$PY" -m pytest -m cuda -q -p no:cacheprovider -rfEs --junitxml="$OUT/wgmma-tests.xml" \
        ${TIMEOUT_ARGS[@]+"${TIMEOUT_ARGS[@]}"} -k "int8_linear and not nm_int8" tests/test_cuda_kernels.py

    # time the wgmma kernel too (a peer column of int8_linear) only once it passed: a faulting
    # kernel would lose the CUDA context for every later case
    WGMMA_BENCH=0
    if [ -f "$OUT/wgmma-tests.xml" ] && [ "$ARCH" = "sm_90" ]; then
        # 1 when some test passed and none failed or errored
        WGMMA_BENCH=$(timeout 30 "$PY" -c '
import sys, xml.etree.ElementTree as ET
s = ET.parse(sys.argv[1]).getroot()
s = s if s.tag == "testsuite" else s.find("testsuite")
n = lambda k: int(s.get(k, 0))
print(int(n("failures") + n("errors") == 0 and n("tests") - n("skipped") > 0))' "$OUT/wgmma-tests.xml" 2>/dev/null || echo 0)
    fi

    BENCH_ARGS=(--device cuda --out "$OUT" --time-budget "$((BENCH_S > 80 ? BENCH_S - 40 : BENCH_S / 2))")
    if [ "${DEVICE_CHECK_QUICK:-0}" = "1" ]; then BENCH_ARGS+=(--quick); fi
    if [ -f "$OUT/validation.json" ]; then BENCH_ARGS+=(--validation "$OUT/validation.json"); fi
    run_phase bench "$BENCH_S" "$OUT/bench.log" env EFFDL_BENCH_WGMMA="$WGMMA_BENCH" PYTHONPATH=python "$PY" \
        -m bench "${BENCH_ARGS[@]}"
fi

# ---------------------------------------------------------------- the final table (always)
{
    echo
    echo "==================== effdl device check: ${ARCH:-no GPU arch} | $(date -u +%Y-%m-%dT%H:%M:%SZ) | $(($(date +%s) - T0)) s"
    grep -E '^(torch|gpu|triton):' "$OUT/env.txt" 2>/dev/null
    echo
    if have column; then column -t -s "$(printf '\t')" "$PHASES"; else cat "$PHASES"; fi
    echo
    if [ -f "$OUT/build.log" ]; then
        echo "build log tail:"
        tail -n 3 "$OUT/build.log"
        echo
    fi
    for log in "$OUT"/tests-*.log; do
        [ -f "$log" ] && echo "$(basename "$log"): $(tail -n 1 "$log")"
    done
    if [ -f "$OUT/wgmma-tests.log" ]; then
        # not part of the validation below: flip the default in csrc/cuda/glue.h after a pass on sm_90
        echo "EFFDL_CUDA_WGMMA=1 int8_linear (${ARCH:-no arch}; the kernel runs on sm_90 only):" \
            "$(tail -n 1 "$OUT/wgmma-tests.log");" \
            "timed as 'effdl cuda wgmma': $([ "${WGMMA_BENCH:-0}" = 1 ] && echo yes || echo no)"
    fi
    if [ -f "$OUT/validate.log" ]; then
        cat "$OUT/validate.log"
    else
        echo "(no per-op test table: see tests-NN.log)"
    fi
    echo
    # shellcheck disable=SC2012  # our own file names: the newest JSON of this run
    BENCH_JSON=$(ls -t "$OUT"/cuda-*.json 2>/dev/null | head -n 1)
    if [ -n "$BENCH_JSON" ] && [ -n "$PY" ]; then
        PYTHONPATH=python timeout 60 "$PY" -c 'import sys; from bench.gpu_run import print_tables; print_tables(sys.argv[1])' \
            "$BENCH_JSON" 2>&1
    else
        echo "(no benchmark JSON: see bench.log)"
        [ -f "$OUT/bench.log" ] && tail -n 5 "$OUT/bench.log"
    fi
    echo "files: $OUT"
} 2>&1 | tee "$OUT/summary.txt"
exit 0
