// Persisted services: strict all-or-nothing decoding, the journal (append, replay, torn tail,
// damage), compaction and the recovery sources.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "lb/store.h"
#include "lb_test_util.h"

namespace np::lb {
namespace {

namespace fsys = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fsys::temp_directory_path() / "np-store-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { fsys::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string read(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
void write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

std::string why(const Result<Snapshot>& r) { return r ? "" : r.error().message(); }

TEST(ServiceStore, RoundTripsLocalServicesOnly) {
  std::map<std::string, Service> services;
  Service a = test::clusterIpService("demo/echo", "10.43.0.20", 80, {"10.0.1.10:8080", "10.0.2.10:8080"});
  a.nodePort = 30080;
  a.externalIps = {test::ip("192.0.2.10")};
  a.loadBalancerIps = {test::ip("192.168.20.1")};
  a.backends[1].state = BackendState::Terminating;
  a.protocol = Protocol::Udp;
  services[a.name] = a;
  Service q = test::clusterIpService("we\"ird\\name\n", "10.43.0.22", 81, {});
  services[q.name] = q;
  Service k = test::clusterIpService("kube/svc", "10.43.0.21", 80, {});
  k.source = "kubernetes";
  services[k.name] = k;

  auto back = servicesFromJson(servicesToJson(services, 7));
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->seq, 7u);
  ASSERT_EQ(back->services.size(), 2u);
  EXPECT_EQ(back->services[0], a);
  EXPECT_EQ(back->services[1], q);
}

// Finding 4: a wrong-typed or renamed field used to drop that one service with a warning (and
// the next change wrote the loss to disk). Now the file as a whole does not load, and the
// message names the service and the field.
TEST(ServiceStore, DecodingIsStrictAndNamesServiceAndField) {
  auto one = [](const std::string& fields) {
    return servicesFromJson("{\"version\":2,\"seq\":1,\"services\":[{\"name\":\"default/web\",\"protocol\":\"TCP\"," +
                            fields + "}]}");
  };
  EXPECT_EQ(why(one("\"port\":\"80\"")),
            "parse: entry 1: service default/web: field \"port\" must be an integer (is a string)");
  EXPECT_EQ(why(one("\"port\":80.0")),
            "parse: entry 1: service default/web: field \"port\" must be an integer (is a number with a fraction)");
  EXPECT_EQ(why(one("\"Port\":80")).rfind("parse: entry 1: service default/web: unknown field \"Port\" (known: name, ", 0),
            0u)
      << why(one("\"Port\":80"));
  EXPECT_EQ(why(one("\"port\":80,\"clusterIp\":\"10.43.0.1\"")).find("unknown field \"clusterIp\""), 37u)
      << why(one("\"port\":80,\"clusterIp\":\"10.43.0.1\""));
  EXPECT_EQ(why(one("\"nodePort\":30080")), "parse: entry 1: service default/web: field \"port\" is missing");
  EXPECT_EQ(why(one("\"port\":70000")), "parse: entry 1: service default/web: field \"port\" is 70000, outside 1..65535");
  EXPECT_EQ(why(one("\"port\":80,\"backends\":[{\"address\":\"10.0.1.1:80\",\"state\":\"gone\"}]")),
            "parse: entry 1: service default/web: backend 1: field \"state\" is \"gone\" (active or terminating)");
  EXPECT_EQ(why(one("\"port\":80,\"externalIPs\":[\"10.0.0.300\"]")),
            "parse: entry 1: service default/web: field \"externalIPs\" item 1 \"10.0.0.300\" is not an IPv4 address");
  EXPECT_EQ(why(servicesFromJson("{\"version\":2,\"seq\":1,\"services\":[{\"name\":\"a/b\",\"protocol\":\"TCP\",\"port\":1},"
                                 "{\"name\":\"a/b\",\"protocol\":\"TCP\",\"port\":2}]}")),
            "parse: service a/b is stored twice");
  EXPECT_EQ(why(servicesFromJson("{\"version\":3,\"services\":[]}")),
            "parse: field \"version\" is 3, outside 1..2 (this agent reads versions 1 and 2)");
  EXPECT_EQ(why(servicesFromJson("{\"version\":2,\n\"seq\":1,\n\"services\":[}")).rfind("parse: not valid JSON at line 3", 0),
            0u);
  EXPECT_TRUE(one("\"port\":80"));
}

TEST(ServiceStore, VersionOneFilesStillLoad) {
  auto v1 = servicesFromJson(
      "{\"version\":1,\"services\":[\n{\"name\":\"default/web\",\"protocol\":\"TCP\",\"port\":80,\"clusterIP\":\"10.43.0.20\","
      "\"nodePort\":30080,\"backends\":[{\"address\":\"10.0.2.10:8080\",\"state\":\"active\"}]}\n]}\n");
  ASSERT_TRUE(v1) << v1.error().message();
  ASSERT_EQ(v1->services.size(), 1u);
  EXPECT_EQ(v1->seq, 0u);
  EXPECT_EQ(v1->services[0].nodePort, 30080);
}

TEST(ServiceStore, JournalReplaysChangesOnTheSnapshot) {
  TempDir dir;
  ServiceStore store(dir.path());
  auto none = store.load();
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().err, ENOENT);
  ASSERT_TRUE(store.compact({}));
  Service a = test::clusterIpService("t/a", "10.43.0.1", 80, {"10.0.1.1:80"});
  Service b = test::clusterIpService("t/b", "10.43.0.2", 80, {});
  ASSERT_TRUE(store.append({&a}, {}));
  ASSERT_TRUE(store.append({&b}, {}));
  a.port = 81;
  ASSERT_TRUE(store.append({&a}, {"t/b"}));
  const std::string snapshot = read(dir.file("services.json"));

  ServiceStore again(dir.path());
  auto loaded = again.load();
  ASSERT_TRUE(loaded) << loaded.error().message();
  EXPECT_EQ(loaded->seq, 3u);
  EXPECT_EQ(loaded->journalRecords, 3u);
  ASSERT_EQ(loaded->services.size(), 1u);
  EXPECT_EQ(loaded->services[0], a);
  EXPECT_EQ(read(dir.file("services.json")), snapshot) << "a change rewrote the snapshot (not O(change))";
}

TEST(ServiceStore, AnIncompleteLastRecordIsDroppedAndCutOff) {
  TempDir dir;
  ServiceStore store(dir.path());
  ASSERT_TRUE(store.compact({}));
  Service a = test::clusterIpService("t/a", "10.43.0.1", 80, {});
  ASSERT_TRUE(store.append({&a}, {}));
  std::ofstream(dir.file("services.journal"), std::ios::app) << "0badc0de {\"seq\":2,\"ups";  // crash mid-append

  ServiceStore after(dir.path());
  auto loaded = after.load();
  ASSERT_TRUE(loaded) << loaded.error().message();
  EXPECT_EQ(loaded->droppedTailBytes, 22u);
  EXPECT_EQ(loaded->services.size(), 1u);
  Service b = test::clusterIpService("t/b", "10.43.0.2", 80, {});
  ASSERT_TRUE(after.append({&b}, {}));
  ServiceStore third(dir.path());
  loaded = third.load();
  ASSERT_TRUE(loaded) << loaded.error().message();
  EXPECT_EQ(loaded->droppedTailBytes, 0u);
  EXPECT_EQ(loaded->services.size(), 2u);
}

TEST(ServiceStore, ADamagedRecordMakesTheStateUnreadable) {
  TempDir dir;
  ServiceStore store(dir.path());
  ASSERT_TRUE(store.compact({}));
  Service a = test::clusterIpService("t/a", "10.43.0.1", 80, {});
  ASSERT_TRUE(store.append({&a}, {}));
  ASSERT_TRUE(store.append({}, {"t/a"}));
  std::string j = read(dir.file("services.journal"));
  j[j.find("10.43.0.1") + 8] = '2';  // bit rot in record 1
  write(dir.file("services.journal"), j);
  ServiceStore after(dir.path());
  auto loaded = after.load();
  ASSERT_FALSE(loaded);
  EXPECT_EQ(loaded.error().message(), "services.journal line 1: fails its checksum: the journal is damaged");
}

TEST(ServiceStore, CompactionFoldsTheJournalAndSurvivesACrashHalfWay) {
  TempDir dir;
  ServiceStore store(dir.path());
  ASSERT_TRUE(store.compact({}));
  std::map<std::string, Service> model;
  Service a = test::clusterIpService("t/a", "10.43.0.1", 80, {});
  ASSERT_TRUE(store.append({&a}, {}));
  model[a.name] = a;
  const std::string journal = read(dir.file("services.journal"));
  ASSERT_TRUE(store.compact(model));
  EXPECT_EQ(fsys::file_size(dir.file("services.journal")), 0u);
  EXPECT_EQ(read(dir.file("services.json")), read(dir.file("services.json.last-good")));
  // A crash after the snapshot, before the journal was emptied: its records are in the snapshot.
  write(dir.file("services.journal"), journal);
  ServiceStore after(dir.path());
  auto loaded = after.load();
  ASSERT_TRUE(loaded) << loaded.error().message();
  EXPECT_EQ(loaded->services.size(), 1u);
  EXPECT_EQ(loaded->journalRecords, 0u);
  EXPECT_EQ(loaded->seq, 1u);
  Service b = test::clusterIpService("t/b", "10.43.0.2", 80, {});
  ASSERT_TRUE(after.append({&b}, {}));
  ServiceStore third(dir.path());
  loaded = third.load();
  ASSERT_TRUE(loaded) << loaded.error().message();
  EXPECT_EQ(loaded->services.size(), 2u);
}

TEST(ServiceStore, LastGoodCopyAndQuarantineAreTheWayOut) {
  TempDir dir;
  ServiceStore store(dir.path());
  Service a = test::clusterIpService("t/a", "10.43.0.1", 80, {});
  ASSERT_TRUE(store.compact({{a.name, a}}));
  Service b = test::clusterIpService("t/b", "10.43.0.2", 80, {});
  ASSERT_TRUE(store.append({&b}, {}));
  write(dir.file("services.json"), "{\"version\":2,\"seq\":0,\"services\":[{\"name\":\"t/a\",\"port\":\"80\"}]}");
  ServiceStore broken(dir.path());
  ASSERT_FALSE(broken.load());
  ASSERT_FALSE(broken.peek(ServiceStore::Source::Snapshot));
  auto good = broken.peek(ServiceStore::Source::LastGood);
  ASSERT_TRUE(good) << good.error().message();
  EXPECT_EQ(good->services.size(), 2u) << "the last-good copy plus the journal hold both services";
  EXPECT_FALSE(broken.append({&a}, {})) << "append without a loaded base";
  const std::string damaged = read(dir.file("services.json"));
  auto moved = broken.replaceAll({{a.name, a}});
  ASSERT_TRUE(moved) << moved.error().message();
  ASSERT_EQ(moved->size(), 3u);  // services.json, its last-good copy, the journal: kept aside
  for (const std::string& m : *moved) EXPECT_TRUE(fsys::exists(m)) << m;
  EXPECT_EQ(read((*moved)[0]), damaged);
  EXPECT_EQ(fsys::status(dir.file("services.json")).permissions() & fsys::perms::all,
            fsys::perms::owner_read | fsys::perms::owner_write);
  ServiceStore after(dir.path());
  auto loaded = after.load();
  ASSERT_TRUE(loaded) << loaded.error().message();
  ASSERT_EQ(loaded->services.size(), 1u);
  EXPECT_TRUE(after.append({&b}, {}));
}

// A record damaged in the middle: strict reading refuses the state; the prefix source keeps the
// records before it (acknowledged changes) for `state accept`.
TEST(ServiceStore, ThePrefixSourceKeepsTheRecordsBeforeADamagedOne) {
  TempDir dir;
  ServiceStore store(dir.path());
  ASSERT_TRUE(store.compact({}));
  Service a = test::clusterIpService("t/a", "10.43.0.1", 80, {});
  Service b = test::clusterIpService("t/b", "10.43.0.2", 80, {});
  Service c = test::clusterIpService("t/c", "10.43.0.3", 80, {});
  ASSERT_TRUE(store.append({&a}, {}));
  ASSERT_TRUE(store.append({&b}, {}));
  ASSERT_TRUE(store.append({&c}, {}));
  std::string j = read(dir.file("services.journal"));
  const size_t second = j.find('\n') + 1;
  j.erase(second + 20, 15);  // record 2 cut in the middle
  write(dir.file("services.journal"), j);
  ServiceStore after(dir.path());
  ASSERT_FALSE(after.load());
  auto prefix = after.peek(ServiceStore::Source::SnapshotPrefix);
  ASSERT_TRUE(prefix) << prefix.error().message();
  ASSERT_EQ(prefix->services.size(), 1u);
  EXPECT_EQ(prefix->services[0].name, "t/a");
  EXPECT_EQ(prefix->droppedRecords, 2u);
}

// The state directory removed behind a running agent: an acknowledged change must not go into a
// deleted file; the next compaction writes the state anew.
TEST(ServiceStore, FilesRemovedBehindTheStoreAreNoticed) {
  TempDir dir;
  const std::string sub = dir.file("state");
  ServiceStore store(sub);
  EXPECT_FALSE(store.anyFiles());
  ASSERT_TRUE(store.compact({}));
  EXPECT_TRUE(store.anyFiles());
  Service a = test::clusterIpService("t/a", "10.43.0.1", 80, {});
  ASSERT_TRUE(store.append({&a}, {}));
  fsys::remove_all(sub);
  EXPECT_FALSE(store.append({&a}, {}));
  EXPECT_NE(store.broken().find("went away"), std::string::npos) << store.broken();
  EXPECT_FALSE(store.append({&a}, {})) << "a broken store accepted an append";
  ASSERT_TRUE(store.compact({{a.name, a}}));
  EXPECT_TRUE(store.broken().empty());
  ASSERT_TRUE(store.append({}, {"t/a"}));
  ServiceStore after(sub);
  auto loaded = after.load();
  ASSERT_TRUE(loaded) << loaded.error().message();
  EXPECT_TRUE(loaded->services.empty());
}

}  // namespace
}  // namespace np::lb
