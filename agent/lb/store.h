// Persistence of the services created through the local API, so a restarted agent restores them.
// Services from Kubernetes are not stored: the API server has them.
//
// Files in the state directory:
//   services.json            snapshot: {"version":2,"seq":N,"services":[...]} (version 1, without
//                            seq, is what the first agents wrote; it is read as seq 0)
//   services.json.last-good  a copy of the newest snapshot, for recovery when services.json is
//                            damaged (see `agentctl state`)
//   services.journal         changes since the snapshot, one record per line:
//                            "<crc32 of the JSON, 8 hex digits> {"seq":N,"upsert":[...],"delete":[...]}"
//                            records with seq <= the snapshot's are already in it.
//
// A change costs one append and one fdatasync (O(change)); the journal is folded into a new
// snapshot when it outgrows the last one. Every write is durable when the call returns (file and,
// where a name changed, directory synced).
//
// Reading is strict and all-or-nothing: a field of the wrong type, an unknown field, a missing
// field or a damaged record is an error naming the file, the record, the service and the field.
// The one thing forgiven is an incomplete last journal record (a crash during the append): it was
// never acknowledged, so it is dropped and reported.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/result.h"
#include "lb/model.h"

namespace np::lb {

class ServiceStore {
 public:
  explicit ServiceStore(std::string dir);
  ~ServiceStore();
  ServiceStore(const ServiceStore&) = delete;
  ServiceStore& operator=(const ServiceStore&) = delete;

  struct Loaded {
    std::vector<Service> services;
    uint64_t seq = 0;             // of the last change included
    size_t journalRecords = 0;    // records applied on top of the snapshot
    size_t droppedTailBytes = 0;  // an incomplete last record that was dropped
    size_t journalValidBytes = 0;
    size_t snapshotBytes = 0;
  };
  // Reads services.json and the journal and makes them the base for later appends. ENOENT when
  // there is no services.json. Nothing is changed on disk.
  Result<Loaded> load();

  // What `agentctl state accept` may fall back to, best first.
  enum class Source { Snapshot, LastGood, SnapshotOnly, LastGoodOnly };
  static const char* sourceName(Source s);  // "services.json + journal", ...
  // Reads one source without making it the base. ENOENT when its snapshot file does not exist.
  Result<Loaded> peek(Source s) const;

  // Persists one change (upserted versions, deleted names) durably.
  Status append(const std::vector<const Service*>& upserts, const std::vector<std::string>& deletes);
  // Writes `services` as the new snapshot and its last-good copy, then empties the journal.
  Status compact(const std::map<std::string, Service>& services);
  // The journal has grown larger than the snapshot: time to compact.
  bool compactionDue() const;

  // Moves services.json and services.journal aside to "<name>.broken-<unix time>" and returns the
  // new paths; forgets the loaded base (the next write is a compact()).
  Result<std::vector<std::string>> quarantine();

  const std::string& dir() const { return dir_; }
  std::string snapshotPath() const { return dir_ + "/services.json"; }
  std::string lastGoodPath() const { return dir_ + "/services.json.last-good"; }
  std::string journalPath() const { return dir_ + "/services.journal"; }
  uint64_t seq() const { return seq_; }
  size_t journalBytes() const { return journalBytes_; }

 private:
  Result<Loaded> read(const std::string& snapshot, bool withJournal) const;
  Status openJournal();

  std::string dir_;
  uint64_t seq_ = 0;
  int journalFd_ = -1;
  size_t journalBytes_ = 0;   // valid bytes of the journal
  size_t snapshotBytes_ = 0;  // size of the last snapshot read or written
  bool base_ = false;         // load() or compact() succeeded: appends have a base
};

// Decoding and encoding, exposed for tests. Errors name the service and the field.
std::string servicesToJson(const std::map<std::string, Service>& services, uint64_t seq = 0);
struct Snapshot {
  std::vector<Service> services;
  uint64_t seq = 0;
};
Result<Snapshot> servicesFromJson(const std::string& text);

}  // namespace np::lb
