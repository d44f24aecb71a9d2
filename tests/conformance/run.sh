#!/usr/bin/env bash
# Build the official OCI distribution-spec conformance suite (v1.1.1) and run all four workflows against a fresh
# `k3sreg serve` on a free loopback port. Nothing of the suite is kept in this repository: its source and that of
# the two Go modules Debian lacks (ginkgo v2, gomega, reggie) are read from local bare git mirrors, and the rest of
# its dependencies come from Debian's golang-*-dev packages. It uses no network except apt-get for those packages.
#
# Usage: tests/conformance/run.sh [extra ginkgo flags, e.g. -ginkgo.v -ginkgo.focus=Pull]
# Env:   MIRRORS   directory holding owner+name/repo bare git dirs (default /work/.mirror)
#        SPEC_GIT / GINKGO_GIT / GOMEGA_GIT / REGGIE_GIT   override one mirror each
#        REPORT_DIR  where report.html and junit.xml go (default: a temp dir that is removed)
#        K3SREG    the k3sreg binary (default .venv/bin/k3sreg of this checkout)
#        DELETE_ENABLED  storage.delete.enabled of the server (default true; the management workflow needs it)
# Exit:  the suite's exit code; 2 when a mirror or the toolchain is missing.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo_root="$(cd "$here/../.." && pwd)"
mirrors="${MIRRORS:-/work/.mirror}"
spec_git="${SPEC_GIT:-$mirrors/opencontainers+distribution-spec/repo}"
ginkgo_git="${GINKGO_GIT:-$mirrors/onsi+ginkgo/repo}"
gomega_git="${GOMEGA_GIT:-$mirrors/onsi+gomega/repo}"
reggie_git="${REGGIE_GIT:-$mirrors/bloodorangeio+reggie/repo}"
k3sreg="${K3SREG:-$repo_root/.venv/bin/k3sreg}"

# The versions the suite's go.mod asks for; Debian's older resty (2.6) and x/net (0.7) build it just as well.
spec_ref=v1.1.1 ginkgo_ref=v2.11.0 gomega_ref=v1.27.8 reggie_ref=v0.6.1
debs=(golang-go golang-github-opencontainers-go-digest-dev golang-github-go-resty-resty-dev
  golang-github-google-uuid-dev golang-github-mitchellh-mapstructure-dev golang-golang-x-net-dev
  golang-github-go-logr-logr-dev golang-github-google-go-cmp-dev golang-golang-x-sys-dev golang-golang-x-text-dev
  golang-gopkg-yaml.v3-dev golang-github-google-pprof-dev golang-github-asaskevich-govalidator-dev)

for g in "$spec_git" "$ginkgo_git" "$gomega_git" "$reggie_git"; do
  if ! git --git-dir="$g" rev-parse --verify -q HEAD >/dev/null 2>&1; then
    echo "conformance: no git mirror at $g (set MIRRORS or *_GIT); the suite cannot be built offline" >&2
    exit 2
  fi
done
missing=()
for p in "${debs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  echo "conformance: installing ${missing[*]}" >&2
  apt-get -o DPkg::Lock::Timeout=600 install -y -q "${missing[@]}" >/dev/null || {
    echo "conformance: apt-get install failed (run apt-get update first?)" >&2
    exit 2
  }
fi

work="$(mktemp -d /tmp/k3sreg-conformance.XXXXXX)"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# A GOPATH-mode tree: Debian's sources plus the four checkouts at the import paths the suite uses.
# Laid out at the same path each run so that Go's build cache (keyed by path in GOPATH mode) hits: a first build
# takes about a minute on 2 cores, a later one a few seconds.
gp="${XDG_CACHE_HOME:-$HOME/.cache}/k3sreg-conformance/gopath"
rm -rf "$gp" && mkdir -p "$gp/src"
cp -r /usr/share/gocode/src/. "$gp/src/"
# resty is imported as .../resty/v2, which Debian installs without the /v2 directory.
mv "$gp/src/github.com/go-resty/resty" "$gp/resty-v2" && mkdir -p "$gp/src/github.com/go-resty/resty"
mv "$gp/resty-v2" "$gp/src/github.com/go-resty/resty/v2"
extract() { mkdir -p "$3" && git --git-dir="$1" archive "$2" ${4:-} | tar -x -C "$3"; }
extract "$ginkgo_git" "$ginkgo_ref" "$gp/src/github.com/onsi/ginkgo/v2"
extract "$gomega_git" "$gomega_ref" "$gp/src/github.com/onsi/gomega"
extract "$reggie_git" "$reggie_ref" "$gp/src/github.com/bloodorangeio/reggie"
extract "$spec_git" "$spec_ref" "$gp/src/github.com/opencontainers/distribution-spec" conformance
t0=$SECONDS
(cd "$gp/src/github.com/opencontainers/distribution-spec/conformance" &&
  GO111MODULE=off GOPATH="$gp" GOFLAGS= go test -c -o "$work/conformance.test" .)
echo "conformance: suite built in $((SECONDS - t0)) s" >&2

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cat >"$work/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/data
  delete:
    enabled: ${DELETE_ENABLED:-true}
http:
  addr: 127.0.0.1:$port
EOF
"$k3sreg" serve --config "$work/config.yml" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 200); do
  curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 2; }
  sleep 0.1
done

report="${REPORT_DIR:-$work/report}"
mkdir -p "$report"
rc=0
(cd "$report" &&
  OCI_ROOT_URL="http://127.0.0.1:$port" OCI_NAMESPACE=conformance/main OCI_CROSSMOUNT_NAMESPACE=conformance/other \
    OCI_TEST_PULL=1 OCI_TEST_PUSH=1 OCI_TEST_CONTENT_DISCOVERY=1 OCI_TEST_CONTENT_MANAGEMENT=1 \
    OCI_AUTOMATIC_CROSSMOUNT=1 OCI_HIDE_SKIPPED_WORKFLOWS=0 OCI_DEBUG="${OCI_DEBUG:-0}" OCI_REPORT_DIR="$report" \
    "$work/conformance.test" -ginkgo.no-color "$@") || rc=$?
if [[ -n "${REPORT_DIR:-}" ]]; then echo "conformance: reports in $report" >&2; fi
exit "$rc"
