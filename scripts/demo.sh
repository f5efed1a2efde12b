#!/usr/bin/env bash
# The main job on defaults: create a repository, publish a sample tree, list and read it
# back, verify every object. Leaves its work in ${LAZYROOT_DEMO_DIR:-./demo-work}.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked
bin=$PWD/target/release/lazyroot
work=${LAZYROOT_DEMO_DIR:-$PWD/demo-work}
rm -rf "$work"
mkdir -p "$work/image/etc" "$work/image/bin" "$work/image/usr/share/doc"
echo "hello from lazyroot" > "$work/image/etc/motd"
ln -s ../etc/motd "$work/image/bin/motd-link"
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
