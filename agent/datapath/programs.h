// Loading the BPF objects with this node's configuration. Maps are pinned by name under a pin
// directory; an object loaded later (another device, a restarted agent) adopts the pinned maps,
// keeping their size when it differs from the configured one (with a warning), since a pinned map
// cannot be resized without losing its state.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "core/config.h"
#include "core/net.h"
#include "core/result.h"
#include "np_abi.h"

struct host_bpf;
struct sock_bpf;
struct bpf_program;

namespace np::datapath {

// Sends libbpf's warnings (verifier logs among them) to the agent's log; drops its debug chatter.
void routeLibbpfLogs();

struct MapSizes {
  uint32_t services = 262144;
  uint32_t backends = 262144;
  uint32_t revNat = 65535;
  uint32_t sockRev = 262144;
  uint32_t ct = 262144;
  uint32_t ctEmbryonic = NP_DEFAULT_CT_EMBRYONIC_MAX;
  uint32_t nodes = 1024;

  static MapSizes fromConfig(const Config& c);
};

struct HostParams {
  std::string device;
  int ifindex = 0;
  std::array<uint8_t, 6> mac{};
  Ipv4 nodeIp;
  uint16_t nodePortMin = 30000;
  uint16_t nodePortMax = 32767;
  uint16_t snatPortMin = 32768;
  uint16_t snatPortMax = 65535;
  LbMode mode = LbMode::Snat;
};

// One loaded instance of host.bpf.o, for one device.
class HostProgram {
 public:
  static Result<std::unique_ptr<HostProgram>> load(const std::string& pinDir, const MapSizes& sizes,
                                                   const HostParams& params);
  ~HostProgram();
  int fromNetdevFd() const;
  int toNetdevFd() const;
  // fd of a map by its name (e.g. "np_ct4_v1"), -1 if unknown.
  int mapFd(const std::string& name) const;
  const HostParams& params() const { return params_; }

 private:
  HostProgram(host_bpf* skel, HostParams params) : skel_(skel), params_(std::move(params)) {}
  host_bpf* skel_;
  HostParams params_;
};

struct SockParams {
  Ipv4 nodeIp;
  uint16_t nodePortMin = 30000;
  uint16_t nodePortMax = 32767;
};

// The loaded sock.bpf.o: the socket-LB hooks.
class SockProgram {
 public:
  static Result<std::unique_ptr<SockProgram>> load(const std::string& pinDir, const MapSizes& sizes,
                                                   const SockParams& params);
  ~SockProgram();
  struct Hook {
    const char* name;  // "connect4", ...
    bpf_program* prog;
  };
  std::array<Hook, 4> hooks() const;
  int mapFd(const std::string& name) const;

 private:
  explicit SockProgram(sock_bpf* skel) : skel_(skel) {}
  sock_bpf* skel_;
};

}  // namespace np::datapath
