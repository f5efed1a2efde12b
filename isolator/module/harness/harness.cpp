// Drives the module's Isolator through its module symbol, as the agent
// would, one command per stdin line, one answer per stdout line:
//   create KEY=VALUE...            the module's create() ('+' in a value: a space)
//   recover ID... [orphan:ID]...   recover(states, orphans)
//   prepare ID [none|docker|id=X name=N label=K=V...]
//   cleanup ID
//   destroy                        deletes the isolator
// A nested id is written parent.child. Answers: created | refused | ready
// [some|none] | failed <message> | pending (after 30 s) | destroyed.
// Built and run by run.sh against a Mesos 1.11 source tree; not part of
// `make check` (no Mesos headers there).
#include <chrono>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <mesos/mesos.hpp>
#include <mesos/module/isolator.hpp>
#include <mesos/slave/isolator.hpp>
#include <process/future.hpp>
#include <stout/hashset.hpp>

extern mesos::modules::Module<mesos::slave::Isolator> org_lazyroot_LazyrootIsolator;

template <typename T>
std::string settle(const process::Future<T>& f) {
  for (int i = 0; i < 3000 && f.isPending(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (f.isPending()) return "pending";
  if (f.isFailed()) return "failed " + f.failure();
  if (f.isDiscarded()) return "discarded";
  return "ready";
}

// "a.b.c" -> ContainerID{value: c, parent: {value: b, parent: {value: a}}}.
mesos::ContainerID cid(const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream ss(text);
  std::string part;
  while (std::getline(ss, part, '.')) parts.push_back(part);
  mesos::ContainerID out;
  out.set_value(parts.back());
  mesos::ContainerID* parent = &out;
  for (int i = static_cast<int>(parts.size()) - 2; i >= 0; --i) {
    parent = parent->mutable_parent();
    parent->set_value(parts[i]);
  }
  return out;
}

int main() {
  mesos::slave::Isolator* isolator = nullptr;
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string cmd;
    in >> cmd;
    std::vector<std::string> args;
    std::string a;
    while (in >> a) args.push_back(a);
    if (cmd == "create") {
      mesos::Parameters params;
      for (const std::string& kv : args) {
        size_t eq = kv.find('=');
        mesos::Parameter* p = params.add_parameter();
        p->set_key(kv.substr(0, eq));
        std::string v = kv.substr(eq + 1);
        for (char& c : v) if (c == '+') c = ' ';
        p->set_value(v);
      }
      isolator = org_lazyroot_LazyrootIsolator.create(params);
      std::cout << (isolator ? "created" : "refused") << std::endl;
    } else if (cmd == "recover") {
      std::vector<mesos::slave::ContainerState> states;
      hashset<mesos::ContainerID> orphans;
      for (const std::string& x : args) {
        if (x.compare(0, 7, "orphan:") == 0) {
          orphans.insert(cid(x.substr(7)));
        } else {
          mesos::slave::ContainerState s;
          s.mutable_container_id()->CopyFrom(cid(x));
          s.set_pid(1);
          s.set_directory("/tmp");
          s.mutable_executor_info()->mutable_executor_id()->set_value("e");
          s.mutable_executor_info()->mutable_command()->set_value("true");
          states.push_back(s);
        }
      }
      std::cout << settle(isolator->recover(states, orphans)) << std::endl;
    } else if (cmd == "prepare") {
      mesos::slave::ContainerConfig config;
      config.set_directory("/tmp");
      if (args.size() > 1 && args[1] != "none") {
        mesos::ContainerInfo* info = config.mutable_container_info();
        info->set_type(mesos::ContainerInfo::MESOS);
        mesos::Image* image = info->mutable_mesos()->mutable_image();
        if (args[1] == "docker") {
          image->set_type(mesos::Image::DOCKER);
          image->mutable_docker()->set_name("busybox");
        } else {
          image->set_type(mesos::Image::APPC);
          for (size_t i = 1; i < args.size(); ++i) {
            const std::string& x = args[i];
            if (x.compare(0, 3, "id=") == 0) image->mutable_appc()->set_id(x.substr(3));
            if (x.compare(0, 5, "name=") == 0) image->mutable_appc()->set_name(x.substr(5));
            if (x.compare(0, 6, "label=") == 0) {
              std::string kv = x.substr(6);
              size_t eq = kv.find('=');
              mesos::Label* l = image->mutable_appc()->mutable_labels()->add_labels();
              l->set_key(kv.substr(0, eq));
              l->set_value(kv.substr(eq + 1));
            }
          }
        }
      }
      process::Future<Option<mesos::slave::ContainerLaunchInfo>> f = isolator->prepare(cid(args[0]), config);
      std::string r = settle(f);
      if (r == "ready") r += f->isSome() ? " some" : " none";
      std::cout << r << std::endl;
    } else if (cmd == "cleanup") {
      std::cout << settle(isolator->cleanup(cid(args[0]))) << std::endl;
    } else if (cmd == "sleep") {
      std::this_thread::sleep_for(std::chrono::milliseconds(std::stoi(args[0])));
      std::cout << "slept" << std::endl;
    } else if (cmd == "destroy") {
      delete isolator;
      isolator = nullptr;
      std::cout << "destroyed" << std::endl;
    }
  }
  return 0;
}
