// The harness links the module without libmesos (which takes hours to
// build): the generated protobuf code, libprotobuf and glog provide the
// rest. These stand in for the only two symbols still missing, both used by
// the harness, not by the module: process::Latch (Future::get() awaits one;
// the harness only gets futures that are ready) and ContainerID equality
// (hashset<ContainerID> of orphans).
#include <chrono>
#include <thread>
#include <mesos/mesos.hpp>
#include <process/latch.hpp>

namespace process {
Latch::Latch() : triggered(false) {}
Latch::~Latch() {}
bool Latch::trigger() { bool was = triggered.exchange(true); return !was; }
bool Latch::await(const Duration&) { while (!triggered) std::this_thread::sleep_for(std::chrono::milliseconds(1)); return true; }
}  // namespace process

namespace mesos {
bool operator==(const ContainerID& a, const ContainerID& b) {
  return a.value() == b.value() && a.has_parent() == b.has_parent() && (!a.has_parent() || a.parent() == b.parent());
}
}  // namespace mesos
