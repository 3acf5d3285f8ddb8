#!/usr/bin/env bash
# Makes cmd/link/agent-hot-code.txt: the functions the node agent runs at rest on a
# control-plane node with every pod running, which the release build links together at the
# front of the executable's text (cmd/build.rs). Not a test; run it again when the agent's
# RSS in bench/agent_footprint.sh grows back (the list names symbols, and a toolchain or
# dependency upgrade renames many of them).
#
#   bash bench/agent_code_order.sh [--capture SECS]
#
# 1. Builds a profiling executable: the release build with every function aligned to its own
#    4 KiB page (-C llvm-args=-align-all-functions=12, given to the final crate only, so the
#    symbols keep the plain release build's names), so that a page touched names exactly one
#    function. The flag reaches every crate's code because the release profile links with
#    fat LTO (all code is generated in the final crate's step).
# 2. Puts it on a file system of its own whose block device reads nothing ahead (a loop
#    device with read_ahead_kb 0): the page cache then holds exactly the pages of it that
#    something touched.
# 3. Brings up a control-plane node with it (bench/agent_footprint.sh --keep: init, every pod
#    running), lets it settle, and takes its pages out of the agent, its container shims and
#    the page cache (agent_footprint.py evict: SIGSTOP, process_madvise MADV_PAGEOUT,
#    SIGCONT). Over --capture seconds (240) after that, what comes back is what the agent
#    and its shims run at rest. Pages that two of them map stay (the kernel pages out only
#    pages a process maps alone, mm/madvise.c), about 1,000 of them: they count as touched,
#    so the list holds a little more than what runs at rest, never less.
# 4. Maps those pages to functions (agent_footprint.py hot), writes the list in the
#    executable's own order, destroys the node and the loop device, and builds the plain
#    release executable with the new list.
# Environment: CARGO_TARGET_DIR (default ~/.cache/kubeboot/target, as setup.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CAPTURE=240
SETTLE=30
while [ $# -gt 0 ]; do
  case "$1" in
    --capture) CAPTURE=${2:?--capture takes whole seconds}; shift 2 ;;
    *) echo "unknown argument '$1' (--capture SECS)" >&2; exit 2 ;;
  esac
done
[[ "$CAPTURE" =~ ^[1-9][0-9]*$ ]] || { echo "--capture takes whole seconds" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "run as root (a loop device, the node's namespaces)" >&2; exit 2; }
target=${CARGO_TARGET_DIR:-$HOME/.cache/kubeboot/target}
PY="$ROOT/bench/agent_footprint.py"
NODE_SH="$ROOT/scripts/node.sh"
readonly N=kb-footprint
LIST="$ROOT/cmd/link/agent-hot-code.txt"
# Not under /tmp or /var/tmp: the agent refuses to run from below a world-writable directory.
mkdir -p "$HOME/.cache/kubeboot"
work=$(mktemp -d "$HOME/.cache/kubeboot/code-order.XXXXXX")
loop=""
plain=1
cleanup() {
  bash "$NODE_SH" destroy "$N" >/dev/null 2>&1 || true
  # Never leave the profiling executable where the plain release build belongs.
  if [ "$plain" = 0 ]; then
    (cd "$ROOT" && CARGO_TARGET_DIR="$target" cargo build --release -p kubeboot >&2) || true
  fi
  umount "$work/mnt" 2>/dev/null || true
  if [ -n "$loop" ]; then losetup -d "$loop" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "== the profiling executable (every function on a page of its own)"
plain=0
(cd "$ROOT" && CARGO_TARGET_DIR="$target" cargo rustc --release -p kubeboot --bin kubeboot -- \
  -C llvm-args=-align-all-functions=12 >&2)
cp "$target/release/kubeboot" "$work/kubeboot-aligned"

echo "== a loop device that reads nothing ahead, holding it"
truncate -s 512M "$work/fs.img"
mkfs.ext4 -q -F "$work/fs.img"
loop=$(losetup -f --show "$work/fs.img")
blockdev --setra 0 "$loop"
mkdir -p "$work/mnt"
mount "$loop" "$work/mnt"
cp "$work/kubeboot-aligned" "$work/mnt/kubeboot"
# Mounted again, the pages just written are out of the page cache.
umount "$work/mnt"
mount "$loop" "$work/mnt"
exe=$work/mnt/kubeboot

echo "== a control-plane node run by it (bench/agent_footprint.sh --keep)"
KUBEBOOT_EXE=$exe bash "$ROOT/bench/agent_footprint.sh" --settle 0 --window 1 --keep |
  grep -E 'init returned|every pod running'
agent=$(bash "$NODE_SH" exec "$N" -- "$exe" agent status -o json |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["agent_pid"])')
shims=$(python3 "$PY" shims "$agent" "$exe")
echo "== settling for ${SETTLE}s, then taking the executable's pages out of the agent (pid $agent) and its $(wc -w <<<"$shims") shims"
sleep "$SETTLE"
# shellcheck disable=SC2086
python3 "$PY" evict "$exe" "$agent" $shims
echo "== capturing what they run at rest for ${CAPTURE}s"
sleep "$CAPTURE"
python3 "$PY" pages "$exe" >"$work/pages"
mkdir -p "$(dirname "$LIST")"
python3 "$PY" hot "$work/kubeboot-aligned" "$work/pages" >"$work/list"
[ -s "$work/list" ] || { echo "no function found on the pages touched; $LIST is unchanged" >&2; exit 1; }
mv "$work/list" "$LIST"
echo "== wrote $LIST ($(wc -l <"$LIST") functions)"
echo "== the plain release executable, linked with it"
(cd "$ROOT" && CARGO_TARGET_DIR="$target" cargo build --release -p kubeboot >&2)
plain=1
