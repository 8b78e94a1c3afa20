#!/usr/bin/env bash
# This machine's container settings, kept out of the Containerfile (which builds anywhere): run as root before
# `make image` on a Debian host like the project's CI. Idempotent; each step says why it is needed here.
#   bash deploy/podman-host.sh            install podman and friends, write containers.conf, import the base image
# It ends by printing the `make image` line for this machine (the base it imported, the CA bundle as a build secret).
set -euo pipefail
base=${BASE:-localhost/debian-python:bookworm}
need=""
for c in podman buildah mmdebstrap runc podman-compose newuidmap; do command -v "$c" >/dev/null || need=1; done
[ -x /usr/lib/podman/netavark ] || need=1   # the network backend: containers of one stack find each other by name
if [ -n "$need" ]; then   # Debian's podman 4.3, buildah 1.28, runc 1.1, podman-compose 1.0.3
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    podman buildah mmdebstrap uidmap runc podman-compose netavark aardvark-dns iptables >/dev/null
fi
mkdir -p /etc/containers
# runc: crun fails on this kernel's hybrid cgroups; cgroupfs and file events: no systemd here; ulimits: podman's
# defaults exceed the machine's hard limits (ulimit -Hn is 20000 here)
cat > /etc/containers/containers.conf <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
[network]
network_backend = "netavark"
CONF
# the base: Debian's own packages, the suite and mirror this machine's apt uses (no image registry is reachable here)
if ! podman image exists "$base"; then
  suite=$(. /etc/os-release && echo "$VERSION_CODENAME")
  mirror=$(grep -h -m1 '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' || true)
  tmp=$(mktemp -d)
  echo "[podman-host] mmdebstrap $suite (${mirror:-default mirror}) -> $base"
  mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates "$suite" "$tmp/rootfs.tar" ${mirror:+"$mirror"}
  podman import --quiet --change 'CMD ["/bin/bash"]' "$tmp/rootfs.tar" "$base" >/dev/null
  rm -rf "$tmp"
fi
cacert=/etc/ssl/certs/ca-certificates.crt   # this machine's CA bundle, with the proxy's CA: a build secret, never a layer
podman image exists "$base" && echo "[podman-host] ready; build with: make image BASE=$base CACERT=$cacert"
