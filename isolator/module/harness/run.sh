#!/bin/sh
# Compiles the module against the Mesos 1.11 headers and drives it against
# the mock daemon: the check `make -C isolator check` cannot make (no Mesos
# headers on the project's machines). Needs a Mesos 1.11.x source tree
# (e.g. `git archive 1.11.0` of apache/mesos) and, on Debian 12:
#   apt-get install g++ python3 protobuf-compiler libprotobuf-dev libgoogle-glog-dev \
#     libboost-dev rapidjson-dev libcurl4-openssl-dev zlib1g-dev
# These are Debian's protobuf 3.21 and glog 0.6, not the 3.5 and 0.4 Mesos
# bundles: good for the API, not for the ABI a real agent needs.
#
# usage: isolator/module/harness/run.sh MESOS_SOURCE_DIR [WORK_DIR]
set -eu
src=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
isolator=$(cd "$here/../.." && pwd)
work=${2:-$(mktemp -d /tmp/lazyroot-mesos-check.XXXXXX)}
mkdir -p "$work/gen" "$work/obj" "$work/picojson"
echo "work directory: $work"

version=$(sed -n 's/^AC_INIT(\[mesos\], \[\(.*\)\])$/\1/p' "$src/configure.ac")
case "$version" in 1.11.*) ;; *) echo "Mesos $version is not 1.11.x" >&2; exit 1 ;; esac
patch=${version#1.11.}
sed -e "s/@PACKAGE_VERSION@/$version/; s/@MESOS_MAJOR_VERSION@/1/g; s/@MESOS_MINOR_VERSION@/11/g;" \
    -e "s/@MESOS_PATCH_VERSION@/$patch/g" "$src/include/mesos/version.hpp.in" > "$work/gen/version.hpp"
mkdir -p "$work/gen/mesos" && mv "$work/gen/version.hpp" "$work/gen/mesos/version.hpp"
(cd "$src/include" && protoc -I. --cpp_out="$work/gen" $(find mesos -name '*.proto'))
tar -xzf "$src"/3rdparty/picojson-*.tar.gz -C "$work/picojson" --strip-components=1
(cd "$work/picojson" && patch -s -p1 < "$(ls "$src"/3rdparty/picojson-*.patch)")

# Third-party headers as system headers: their own warnings are not ours.
sys="-isystem $work/gen -isystem $src/include -isystem $src/3rdparty/stout/include"
sys="$sys -isystem $src/3rdparty/libprocess/include -isystem $work/picojson"
defs="-D__STDC_FORMAT_MACROS -DPICOJSON_USE_INT64="

make -s -C "$isolator" all
for std in c++11 c++17; do
  g++ -std=$std -fPIC -Wall -Wextra -Werror $defs -I"$isolator/client" $sys \
      -c "$isolator/module/lazyroot_isolator.cpp" -o "$work/obj/module-$std.o"
  echo "compiled module/lazyroot_isolator.cpp as $std with -Wall -Wextra -Werror"
done

for proto in mesos/mesos mesos/appc/spec mesos/docker/v1 mesos/seccomp/seccomp mesos/slave/containerizer; do
  g++ -std=c++11 -fPIC -w -I"$work/gen" -c "$work/gen/$proto.pb.cc" -o "$work/obj/$(echo $proto | tr / _).pb.o"
done
for f in harness libmesos_standins; do
  g++ -std=c++11 -w $defs $sys -c "$here/$f.cpp" -o "$work/obj/$f.o"
done
g++ -pthread -o "$work/harness" "$work/obj/module-c++11.o" "$work/obj/harness.o" "$work/obj/libmesos_standins.o" \
    "$work"/obj/*.pb.o "$isolator/build/liblazyroot_client.a" -lprotobuf -lglog
timeout 120 python3 "$here/drive.py" "$work/harness"
