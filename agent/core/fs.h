// Filesystem helpers: atomic writes for persisted state, and finding or mounting the bpffs and
// cgroup2 filesystems the agent needs.
#pragma once

#include <string>

#include "core/result.h"

namespace np::fs {

Result<std::string> readFile(const std::string& path);
// Writes to a temporary file in the same directory, fsyncs it, renames it over `path` and fsyncs
// the directory: when it returns, the new content survives a crash.
Status writeFileAtomic(const std::string& path, const std::string& content, int mode = 0600);
// fsync(2) on a directory: makes creations, renames and removals in it durable.
Status syncDir(const std::string& dir);
Status makeDirs(const std::string& path, int mode = 0755);
bool exists(const std::string& path);

// The first cgroup2 mount point listed in /proc/self/mountinfo, or an error.
Result<std::string> findCgroup2Mount();
bool isCgroup2(const std::string& path);
bool isBpffs(const std::string& path);
// Makes sure `dir` is on a bpffs: if it is not, creates it and mounts a bpffs there.
Status ensureBpffs(const std::string& dir);

}  // namespace np::fs
