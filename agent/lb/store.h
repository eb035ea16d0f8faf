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
    size_t droppedRecords = 0;    // Prefix sources: records from the first damaged one on
    size_t journalValidBytes = 0;
    size_t snapshotBytes = 0;
  };
  // Reads services.json and the journal and makes them the base for later appends. ENOENT when
  // there is no services.json. Nothing is changed on disk but leftovers of an interrupted write
  // (*.tmp.<pid>, *.new), which are removed.
  Result<Loaded> load();
  // Whether any state file (snapshot, journal, last-good copy) exists: without any, a node is
  // new; with some but no snapshot, the state is missing.
  bool anyFiles() const;

  // What `agentctl state accept` may fall back to, best first: the snapshot or its last-good copy
  // with the whole journal, then with the journal's records up to the first damaged one.
  enum class Source { Snapshot, LastGood, SnapshotPrefix, LastGoodPrefix };
  static const char* sourceName(Source s);  // "services.json with its journal", ...
  // Reads one source without making it the base. ENOENT when its snapshot file does not exist.
  Result<Loaded> peek(Source s) const;

  // Persists one change (upserted versions, deleted names) durably. Refused while broken().
  Status append(const std::vector<const Service*>& upserts, const std::vector<std::string>& deletes);
  // Writes `services` as the new snapshot and its last-good copy, then empties the journal.
  // Recreates the directory if it went away. Clears broken().
  Status compact(const std::map<std::string, Service>& services);
  // The journal has grown larger than the snapshot: time to compact.
  bool compactionDue() const;

  // Replaces every state file with `services` (agentctl state accept/reset). The files it
  // replaces are kept as "<name>.broken-<unix time>" (returned). All or nothing: on failure the
  // old files are where they were.
  Result<std::vector<std::string>> replaceAll(const std::map<std::string, Service>& services);

  // Set when the disk may hold something the agent did not acknowledge (a record a failed sync
  // could not cut off, the undo of a refused change that could not be written) or the files
  // went away behind the agent. Appends are refused until a compact() writes the model anew.
  const std::string& broken() const { return broken_; }
  void markBroken(std::string why) { broken_ = std::move(why); }

  const std::string& dir() const { return dir_; }
  std::string snapshotPath() const { return dir_ + "/services.json"; }
  std::string lastGoodPath() const { return dir_ + "/services.json.last-good"; }
  std::string journalPath() const { return dir_ + "/services.journal"; }
  uint64_t seq() const { return seq_; }
  size_t journalBytes() const { return journalBytes_; }

 private:
  // All: every record must decode; Prefix: the first damaged one ends the journal there.
  enum class Journal { All, Prefix };
  Result<Loaded> read(const std::string& snapshot, Journal journal) const;
  Status openJournal();
  // The journal and snapshot the agent writes are still the files at their paths.
  Status checkFiles() const;
  void closeJournal();

  std::string dir_;
  uint64_t seq_ = 0;
  int journalFd_ = -1;
  size_t journalBytes_ = 0;   // valid bytes of the journal
  size_t snapshotBytes_ = 0;  // size of the last snapshot read or written
  bool base_ = false;         // load() or compact() succeeded: appends have a base
  std::string broken_;
};

// Decoding and encoding, exposed for tests. Errors name the service and the field.
std::string servicesToJson(const std::map<std::string, Service>& services, uint64_t seq = 0);
struct Snapshot {
  std::vector<Service> services;
  uint64_t seq = 0;
};
Result<Snapshot> servicesFromJson(const std::string& text);

}  // namespace np::lb
