#!/usr/bin/env bash
# The main job on defaults: create a repository, publish a sample image, list and read it
# back, verify every object; serve it over HTTP, mount it lazily with FUSE and read through
# the mount; then start the provisioner daemon, prepare the image for Mesos (appc store
# entry, lazily mounted rootfs) and run a task in it with runc, as a Mesos agent would.
# Needs root (FUSE, runc). Leaves its work in ${LAZYROOT_DEMO_DIR:-./demo-work}.
set -euo pipefail
cd "$(dirname "$0")/.."
# getfattr shows downloads; busybox: the image's userland; umoci builds the sample OCI image,
# skopeo pushes it into a local docker-registry (Debian's distribution registry)
bash scripts/setup.sh attr busybox-static runc curl umoci skopeo docker-registry
cargo build --release --locked --bin lazyroot --example run_task
bin=$PWD/target/release/lazyroot
work=${LAZYROOT_DEMO_DIR:-$PWD/demo-work}
rm -rf "$work"
mkdir -p "$work/image/etc" "$work/image/bin" "$work/image/usr/share/doc"
echo "hello from lazyroot" > "$work/image/etc/motd"
ln -s ../etc/motd "$work/image/bin/motd-link"
cp /bin/busybox "$work/image/bin/busybox"                                 # a userland for the task
for applet in sh cat ls; do ln -s busybox "$work/image/bin/$applet"; done
head -c $((20 << 20)) /dev/urandom > "$work/image/usr/share/doc/big.bin"   # chunked: > 4 MiB
touch "$work/image/usr/.cvmfscatalog"                                     # a nested catalog

set -x
"$bin" mkfs demo.example.org --repo "$work/repo" --keys "$work/keys"
"$bin" publish "$work/image" --repo "$work/repo" --keys "$work/keys" --path /images/demo --tag demo-v1
"$bin" ls --repo "$work/repo" --keys "$work/keys" -l /images/demo/etc
"$bin" cat --repo "$work/repo" --keys "$work/keys" /images/demo/etc/motd
"$bin" ls --repo "$work/repo" --keys "$work/keys" -R /images/demo
"$bin" info --repo "$work/repo" --keys "$work/keys"
"$bin" check --repo "$work/repo" --keys "$work/keys"
set +x
cmp <("$bin" cat --repo "$work/repo" --keys "$work/keys" /images/demo/usr/share/doc/big.bin) "$work/image/usr/share/doc/big.bin"
echo "demo: the 20 MiB file reads back byte-identical; repository in $work/repo, keys in $work/keys"

pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# The same tree as a container image, built offline with umoci, pushed into a local
# registry and ingested from it without unpacking: its files are the objects already
# published, so only the image's own catalog and metadata are new. Without a registry
# (docker-registry does not start) the OCI layout is ingested directly; the rest is the same.
umoci init --layout "$work/oci"
umoci new --image "$work/oci:demo"
umoci unpack --image "$work/oci:demo" "$work/bundle" > /dev/null
cp -a "$work/image/." "$work/bundle/rootfs/"
umoci repack --image "$work/oci:demo" "$work/bundle" > /dev/null
umoci config --image "$work/oci:demo" --config.entrypoint /bin/cat --config.cmd /etc/motd --config.env GREETING=hello
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf '%s\n' 'version: 0.1' 'log: {level: warn, accesslog: {disabled: true}}' \
  "storage: {filesystem: {rootdirectory: $work/registry}}" "http: {addr: 127.0.0.1:$port}" > "$work/registry.yml"
docker-registry serve "$work/registry.yml" > "$work/registry.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/v2/" && break; sleep 0.1; done
if curl -sf -o /dev/null "http://127.0.0.1:$port/v2/"; then
  image=127.0.0.1:$port/demo/app:v1
  skopeo --insecure-policy copy --quiet --dest-tls-verify=false "oci:$work/oci:demo" "docker://$image"
  set -x
  "$bin" ingest "$image" --insecure-registry "127.0.0.1:$port" --repo "$work/repo" --keys "$work/keys"
  set +x
else
  echo "demo: docker-registry did not start (see $work/registry.log); ingesting the OCI layout instead"
  image=localhost/oci:demo
  set -x
  "$bin" ingest "oci:$work/oci:demo" --repo "$work/repo" --keys "$work/keys"
  set +x
fi
"$bin" ls --repo "$work/repo" --keys "$work/keys" -l "/${image%/*}"

# Serve it over HTTP and mount it lazily: only what is read is downloaded and verified.
"$bin" serve --listen 127.0.0.1:0 --repo "$work/repo" > "$work/serve.log" &
pids+=($!)
for _ in $(seq 100); do grep -q '^serving' "$work/serve.log" 2>/dev/null && break; sleep 0.1; done
url=$(awk '/^serving/ {print $NF}' "$work/serve.log")
echo "demo: $(head -1 "$work/serve.log")"
mkdir -p "$work/mnt"
"$bin" mount demo.example.org "$work/mnt" --server "$url" --key "$work/keys/demo.example.org.pub" \
  --cache "$work/cache" --tag demo-v1 > "$work/mount.log" &
pids+=($!)
for _ in $(seq 100); do grep -q '^mounted' "$work/mount.log" 2>/dev/null && break; sleep 0.1; done
echo "demo: $(cat "$work/mount.log")"
ls -l "$work/mnt/images/demo/etc"
cat "$work/mnt/images/demo/etc/motd"
echo "demo: downloaded so far: $(getfattr --absolute-names --only-values -n user.rx "$work/mnt") KiB in $(getfattr --absolute-names --only-values -n user.ndownload "$work/mnt") requests (the 20 MiB file was not read)"
cmp "$work/mnt/images/demo/usr/share/doc/big.bin" "$work/image/usr/share/doc/big.bin"
echo "demo: after reading the 20 MiB file: $(getfattr --absolute-names --only-values -n user.rx "$work/mnt") KiB; root hash $(getfattr --absolute-names --only-values -n user.root_hash "$work/mnt")"

# The provisioner: what a Mesos agent uses. It prepares the image (a lazy, pinned mount with
# the directories Mesos mounts onto, and an appc store entry), and a task runs in it.
cat > "$work/provisioner.json" <<EOF
{
  "repositories": {
    "demo.example.org": {"servers": ["$url"], "keys": ["$work/keys/demo.example.org.pub"]}
  },
  "cache": "$work/cache",
  "mount_root": "$work/images",
  "appc_store_dir": "$work/appc",
  "state": "$work/provisioner.sqlite",
  "control_socket": "$work/control.sock",
  "csi_socket": "$work/csi.sock",
  "discovery_listen": "127.0.0.1:0"
}
EOF
"$bin" provisioner --config "$work/provisioner.json" > "$work/provisioner.log" &
pids+=($!)
for _ in $(seq 100); do grep -q '^provisioner ready' "$work/provisioner.log" 2>/dev/null && break; sleep 0.1; done
echo "demo: $(head -1 "$work/provisioner.log")"
set -x
"$bin" image prepare demo.example.org /images/demo --tag demo-v1 --socket "$work/control.sock"
target/release/examples/run_task --socket "$work/control.sock" demo.example.org /images/demo --tag demo-v1 \
  -- /bin/sh -c 'cat /etc/motd; echo "root directory of the task:"; ls /'
"$bin" image prepare demo.example.org "$image" --socket "$work/control.sock"
"$bin" image list --socket "$work/control.sock"
set +x
ingested=$("$bin" image list --socket "$work/control.sock" --json | python3 -c 'import json, sys; print([i["appc_dir"] for i in json.load(sys.stdin)["images"] if "/.flat/" in i["path"]][0])')
echo "demo: the ingested image's appc entry runs its own entrypoint: $(python3 -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1]))["app"]))' "$ingested/manifest")"
id=$("$bin" image list --socket "$work/control.sock" --json | python3 -c 'import json, sys; print([i["id"] for i in json.load(sys.stdin)["images"] if i["path"] == "/images/demo"][0])')
echo "demo: Mesos finds the image in $work/appc/images/$id: $(ls "$work/appc/images/$id" | tr '\n' ' ')-> $(readlink "$work/appc/images/$id/rootfs")"
# On demand: what an agent with --appc_simple_discovery_uri_prefix asks when a task names the
# image by name and version only, nothing prepared beforehand.
arch=$(uname -m | sed 's/^x86_64$/amd64/')
aci="demo.example.org/images/demo-demo-v1-linux-$arch.aci"
prefix=$(sed -n 's/.*discovery \(http:[^ ,]*\).*/\1/p' "$work/provisioner.log" | head -1)
curl -sf -A curl "$prefix$aci" -o "$work/demo.aci"
echo "demo: discovery answered $prefix$aci with $(stat -c %s "$work/demo.aci") bytes: $(gunzip -c "$work/demo.aci" | tar -tvf - | awk '{print $6, $7, $8}' | tr '\n' ' ')(the agent names it sha512-$(gunzip -c "$work/demo.aci" | sha512sum | cut -c1-16)...)"
echo "demo: done. A Mesos agent takes the same appc entry with --image_providers=appc --appc_store_dir=$work/appc (see examples/mesos/)."
