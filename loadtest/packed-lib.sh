# Sourced by shard-scaling.sh and hold-100k.sh (after BIN and OUT are set):
# how to run binaries packed by pack-binaries.sh, and the shared helpers.

# The packed binaries run on the packed loader and libraries, whatever the
# host's C library is.
RUN_WITH=()
[ -x "$BIN/lib/ld-linux-x86-64.so.2" ] &&
  RUN_WITH=("$BIN/lib/ld-linux-x86-64.so.2" --library-path "$BIN/lib")

wait_line() {  # file, pattern: wait until the file has a matching line (10 s)
  for _ in $(seq 100); do
    grep -qE "$2" "$1" 2> /dev/null && return 0
    sleep 0.1
  done
  return 1
}

# OUT/machine.txt: the machine, the commit the binaries came from, and any
# further lines given as arguments.
describe_machine() {
  {
    echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "kernel: $(uname -r); open files: $(ulimit -n)"
    echo "commit: $(cat "$BIN/commit" 2> /dev/null || echo '?')"
    for line in "$@"; do echo "$line"; done
  } > "$OUT/machine.txt"
  cat "$OUT/machine.txt" >&2
}
