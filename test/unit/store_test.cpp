// Persisted services: what the local API created survives a restart; corruption is an error.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "lb/store.h"
#include "lb_test_util.h"

namespace np::lb {
namespace {

TEST(ServiceStore, RoundTripsLocalServicesOnly) {
  std::map<std::string, Service> services;
  Service a = test::clusterIpService("demo/echo", "10.43.0.20", 80, {"10.0.1.10:8080", "10.0.2.10:8080"});
  a.nodePort = 30080;
  a.externalIps = {test::ip("192.0.2.10")};
  a.loadBalancerIps = {test::ip("192.168.20.1")};
  a.backends[1].state = BackendState::Terminating;
  a.protocol = Protocol::Udp;
  services[a.name] = a;
  Service q = test::clusterIpService("we\"ird\\name", "10.43.0.22", 81, {});
  services[q.name] = q;
  Service k = test::clusterIpService("kube/svc", "10.43.0.21", 80, {});
  k.source = "kubernetes";
  services[k.name] = k;

  auto back = servicesFromJson(servicesToJson(services));
  ASSERT_TRUE(back) << back.error().message();
  ASSERT_EQ(back->size(), 2u);
  EXPECT_EQ((*back)[0], a);
  EXPECT_EQ((*back)[1], q);
}

TEST(ServiceStore, MissingFileIsEmptyCorruptFileIsAnError) {
  std::filesystem::path p = std::filesystem::temp_directory_path() / ("np-store-" + std::to_string(getpid()) + ".json");
  ServiceStore store(p.string());
  auto empty = store.load();
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->empty());
  std::ofstream(p) << "{\"version\":1,\"services\":[{\"name\":\"x\",\"protocol\":\"SCTP\",\"port\":80}]}";
  auto bad = store.load();
  std::filesystem::remove(p);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("unknown protocol \"SCTP\""), std::string::npos) << bad.error().message();
}

TEST(ServiceStore, SaveIsAtomicAndReadable) {
  std::filesystem::path p = std::filesystem::temp_directory_path() / ("np-store-save-" + std::to_string(getpid()) + ".json");
  ServiceStore store(p.string());
  std::map<std::string, Service> services{{"a", test::clusterIpService("a", "10.43.0.20", 80, {"10.0.1.10:80"})}};
  ASSERT_TRUE(store.save(services));
  EXPECT_EQ(std::filesystem::status(p).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  auto back = store.load();
  std::filesystem::remove(p);
  ASSERT_TRUE(back);
  ASSERT_EQ(back->size(), 1u);
  EXPECT_EQ((*back)[0].name, "a");
}

}  // namespace
}  // namespace np::lb
