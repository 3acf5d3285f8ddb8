#!/usr/bin/env bash
# Checks of vagrant/ that need no VM and no cluster (scripts/test.sh runs this; so can you):
#
#   bash vagrant/test.sh
#
# 1. `vagrant validate --ignore-provider` passes on vagrant/Vagrantfile, with the default
#    machines (cp1, w1, w2) and with KUBEBOOT_CONTROL_PLANES=3 (cp1..cp3, w1, w2), and refuses
#    KUBEBOOT_CONTROL_PLANES=2 naming the allowed values. Vagrant must be installed
#    (scripts/setup.sh installs Debian's package); it never calls out (checkpoint off), and its
#    home and .vagrant directory are temporary.
# 2. provision.sh's argument handling, with a recording stand-in for kubeboot (KUBEBOOT=...)
#    and temporary shared and config directories: what `init` and `join` pass to kubeboot, the
#    configuration files they write, the join command files, and each bad input refused with
#    exit status 2 and a message naming it. The real commands run in the e2e scenarios and in
#    scripts/quickstart.sh --nodes N.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROVISION="$HERE/provision.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
pass() { echo "ok   $*"; }
fail() { echo "FAIL $*" >&2; failures=$((failures + 1)); }
check() { # check <description> <command...>: the command must succeed
  local what=$1
  shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
has() { grep -qF -- "$2" "$1" || { echo "  $1 lacks: $2" >&2; cat "$1" >&2; return 1; }; }
lacks() { ! grep -qF -- "$2" "$1" || { echo "  $1 has: $2" >&2; return 1; }; }

echo "== 1. vagrant validate --ignore-provider"
if ! command -v vagrant >/dev/null; then
  fail "vagrant is not installed (scripts/setup.sh installs it: apt-get install vagrant)"
else
  export VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_BOX_UPDATE_CHECK_DISABLE=1
  export VAGRANT_HOME="$work/vagrant-home" VAGRANT_DOTFILE_PATH="$work/dot-vagrant"
  validate() { (cd "$HERE" && env "$@" vagrant validate --ignore-provider) >"$work/validate.out" 2>&1; }
  machines() { grep -o '==> [a-z0-9]*:' "$work/validate.out" | tr -d '=>: ' | tr '\n' ' '; }
  if validate -u KUBEBOOT_CONTROL_PLANES; then
    check "default: cp1 w1 w2" [ "$(machines)" = "cp1 w1 w2 " ]
  else
    fail "validate (default)"; cat "$work/validate.out" >&2
  fi
  if validate KUBEBOOT_CONTROL_PLANES=3; then
    check "KUBEBOOT_CONTROL_PLANES=3: cp1 cp2 cp3 w1 w2" [ "$(machines)" = "cp1 cp2 cp3 w1 w2 " ]
  else
    fail "validate (KUBEBOOT_CONTROL_PLANES=3)"; cat "$work/validate.out" >&2
  fi
  if validate KUBEBOOT_CONTROL_PLANES=2; then
    fail "KUBEBOOT_CONTROL_PLANES=2 is accepted"
  else
    check "KUBEBOOT_CONTROL_PLANES=2 refused" has "$work/validate.out" 'must be one of 1, 3'
  fi
fi

echo "== 2. provision.sh argument handling"
# The stand-in records its arguments and answers the three commands provision.sh asks for.
cat >"$work/fake-kubeboot" <<'FAKE'
#!/usr/bin/env bash
echo "$*" >>"$FAKE_LOG"
case "$*" in
  "certs certificate-key") echo 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef ;;
  "token create --print-join-command") echo "kubeboot join 10.9.0.11:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:aa " ;;
  "token create --print-join-command --certificate-key "*) echo "kubeboot join 10.9.0.11:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:aa --control-plane --certificate-key $5" ;;
esac
FAKE
chmod +x "$work/fake-kubeboot"
mkdir -p "$work/shared" "$work/dev"
echo "KUBEBOOT_BIN_DIR=/opt/from-setup/bin" >"$work/dev/env"
export FAKE_LOG="$work/kubeboot.log" KUBEBOOT="$work/fake-kubeboot"
export KUBEBOOT_SHARED_DIR="$work/shared" KUBEBOOT_DEV_DIR="$work/dev" KUBEBOOT_JOIN_WAIT=0
unset KUBEBOOT_BIN_DIR KUBEBOOT_NODE_CGROUP_ROOT
prov() { # prov <node> <args...>: provision.sh with the node's own config dir; output in $work/out
  local node=$1
  shift
  : >"$FAKE_LOG"
  KUBEBOOT_CONFIG_DIR="$work/$node" bash "$PROVISION" "$@" >"$work/out" 2>&1
}
refused() { # refused <message> <node> <args...>: exit status 2 and the message
  local msg=$1 rc=0
  shift
  prov "$@" || rc=$?
  [ $rc = 2 ] || { echo "  exit status $rc, not 2" >&2; cat "$work/out" >&2; return 1; }
  has "$work/out" "$msg" && [ ! -s "$FAKE_LOG" ]
}

if prov n1 init 10.9.0.11; then
  check "init: kubeboot init with the config, --upload-certs and setup's --bin-dir" \
    has "$FAKE_LOG" "init --config $work/n1/provision-init.yaml --upload-certs --bin-dir /opt/from-setup/bin"
  for want in "certificateKey: 0123456789abcdef" "advertiseAddress: 10.9.0.11" "node-ip: 10.9.0.11" \
    "controlPlaneEndpoint: 10.9.0.11:6443" "podSubnet: 10.244.0.0/16"; do
    check "init config: $want" has "$work/n1/provision-init.yaml" "$want"
  done
  check "init config: no cgroup root unless asked" lacks "$work/n1/provision-init.yaml" cgroupRoot
  check "init config is private" [ "$(stat -c %a "$work/n1/provision-init.yaml")" = 600 ]
  check "join-worker.sh: token create's command" \
    has "$work/shared/join-worker.sh" "kubeboot join 10.9.0.11:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:aa"
  check "join-control-plane.sh: with the init's certificate key" \
    has "$work/shared/join-control-plane.sh" "--control-plane --certificate-key 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
  check "join command files are private" [ "$(stat -c %a "$work/shared/join-worker.sh")" = 600 ]
else
  fail "provision.sh init"; cat "$work/out" >&2
fi

if KUBEBOOT_NODE_CGROUP_ROOT=/kubeboot-n1 prov n1b init 10.9.0.11 -- --bin-dir /x --bin-dir /usr/bin; then
  check "init: pass-through args replace setup's --bin-dir" \
    has "$FAKE_LOG" "init --config $work/n1b/provision-init.yaml --upload-certs --bin-dir /x --bin-dir /usr/bin"
  check "init: only the pass-through --bin-dir" lacks "$FAKE_LOG" /opt/from-setup/bin
  check "init config: KUBEBOOT_NODE_CGROUP_ROOT's cgroupRoot" has "$work/n1b/provision-init.yaml" "cgroupRoot: /kubeboot-n1"
  check "init config: conntrack left alone" has "$work/n1b/provision-init.yaml" "maxPerCore: 0"
else
  fail "provision.sh init with KUBEBOOT_NODE_CGROUP_ROOT"; cat "$work/out" >&2
fi

if KUBEBOOT_NODE_CGROUP_ROOT=/kubeboot-n2 prov n2 join worker 10.9.0.12 -- --ignore-preflight-errors=all; then
  check "join worker: kubeboot join with the config, setup's --bin-dir, pass-through" \
    has "$FAKE_LOG" "join --config $work/n2/provision-join.yaml --bin-dir /opt/from-setup/bin --ignore-preflight-errors=all"
  for want in "apiServerEndpoint: 10.9.0.11:6443" "token: abcdef.0123456789abcdef" "- sha256:aa" \
    "node-ip: 10.9.0.12" "cgroup-root: /kubeboot-n2"; do
    check "worker join config: $want" has "$work/n2/provision-join.yaml" "$want"
  done
  check "worker join config: no controlPlane" lacks "$work/n2/provision-join.yaml" controlPlane
else
  fail "provision.sh join worker"; cat "$work/out" >&2
fi

if prov n3 join control-plane 10.9.0.13; then
  for want in "controlPlane:" "certificateKey: 0123456789abcdef" "advertiseAddress: 10.9.0.13" "node-ip: 10.9.0.13"; do
    check "control-plane join config: $want" has "$work/n3/provision-join.yaml" "$want"
  done
  check "control-plane join config: no cgroup root unless asked" lacks "$work/n3/provision-join.yaml" cgroup-root
else
  fail "provision.sh join control-plane"; cat "$work/out" >&2
fi

check "refused: no subcommand" refused "install, init or join" n9 frobnicate
check "refused: init without an address" refused "usage: provision.sh init <addr>" n9 init
check "refused: init with a bad address" refused "'10.9.0' is not an IPv4 address" n9 init 10.9.0
check "refused: join with an unknown role" refused "role 'master' is neither 'worker' nor 'control-plane'" n9 join master 10.9.0.14
check "refused: join without an address" refused "usage: provision.sh join" n9 join worker
check "refused: install with an unknown flag" refused "install: unknown argument '--fast'" n9 install --fast
rm -f "$work/shared/join-worker.sh"
check "refused: join before init wrote the command" refused "provision the first control-plane node" n9 join worker 10.9.0.14
KUBEBOOT_SHARED_DIR="$work/nowhere" check "refused: init into a missing shared dir" \
  refused "shared directory $work/nowhere does not exist" n9 init 10.9.0.11
echo "kubeboot join" >"$work/shared/join-worker.sh"
check "refused: a join file without the flags" refused "holds no 'join <endpoint>" n9 join worker 10.9.0.14

if [ "$failures" -gt 0 ]; then
  echo "vagrant/test.sh: $failures check(s) failed" >&2
  exit 1
fi
echo "vagrant/test.sh: all checks passed"
