# Shared by the bench/e2e scripts: `bench_sandbox NAME TOOL...` re-executes the calling script
# (as root, once every TOOL is present) inside `unshare --net --mount`, then, inside, gives it a
# private /run/netns, a temporary directory $TMP, and a PIDS array whose processes are killed on
# exit. Nothing a benchmark does touches the machine's own network.
# shellcheck shell=bash
bench_sandbox() {
    local name=$1 t
    shift
    if [ -z "${SLW_BENCH_SANDBOXED:-}" ]; then
        [ "$(id -u)" -eq 0 ] || { echo "bench: needs root (namespaces)" >&2; exit 1; }
        for t in "$@"; do
            command -v "$t" >/dev/null ||
                { echo "bench: $t missing (scripts/deps; cmake --build --preset release)" >&2; exit 1; }
        done
        SLW_BENCH_SANDBOXED=1 exec unshare --net --mount -- bash "$0" "${BENCH_ARGS[@]}"
    fi
    mount --make-rprivate /
    mkdir -p /run/netns
    mount -t tmpfs slw-bench /run/netns
    TMP=$(mktemp -d "/tmp/slw-bench-$name.XXXXXX")
    PIDS=()
    trap bench_cleanup EXIT
}
bench_cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
