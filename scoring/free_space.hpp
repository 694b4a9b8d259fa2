#pragma once
// A free-space floor under every durable write of the request log and the
// score store.
//
// Why: RocksDB 7.8 (Debian's librocksdb, built with assertions) does not
// recover from a WAL append that failed for lack of space. Its WAL writer
// keeps the error, DB::Resume() clears the database's error without
// replacing that writer, and the next write or WAL sync aborts the process
// (assertion `sync_without_flush_called_` in WritableFileWriter). So writes
// are refused *before* RocksDB sees a full disk: below kMinFreeBytes free on
// storage.path, ensure_free_space() fails and the caller keeps (request log)
// or refuses (score store, 503) the write. The floor also leaves room for the
// memtable flushes and compactions already under way.
//
// Thread-safety: a statvfs through the database's Env; any thread.

#include <cstdint>
#include <string>

#include "scoring/expected.hpp"

namespace rocksdb {
class Env;
}

namespace arbiter::scoring {

inline constexpr std::uint64_t kMinFreeBytes = 32ull << 20;

// ok when at least kMinFreeBytes are free on the filesystem holding `path`
// (or when the Env cannot tell); otherwise an kUnavailable error whose
// message starts with "no space left on device".
Expected<void> ensure_free_space(rocksdb::Env& env, const std::string& path);

}  // namespace arbiter::scoring
