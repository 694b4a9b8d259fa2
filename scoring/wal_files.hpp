#pragma once
// The relaxed log's WAL fsync, done beside RocksDB rather than through
// DB::SyncWAL().
//
// Why: after a WAL append fails, RocksDB 7.8's WritableFileWriter for that
// WAL remembers the error, and a DB::SyncWAL() reaching it trips an assertion
// (AssertFalseAndGetStatusForPrevError) unless an earlier SyncWAL ran on the
// same WAL. The Store marks itself broken and stops syncing, but only once
// DB::Write() has returned the failure; a sync that checked a moment earlier
// still reaches RocksDB. CI's storage-fault test aborted so once. Excluding
// syncs from writes would close that window, but then the storage thread's
// writes wait for every fsync (tens of ms on a busy disk) and records queue
// where a SIGKILL loses them; the kill loop measured exactly that.
//
// What: a FileSystem wrapper the Store installs under RocksDB. It tracks the
// WAL files ("*.log") open for writing and sync() fdatasyncs each one written
// since its last sync, plus the directory of each new one, straight on the
// underlying file: RocksDB's writer state is never consulted, and writes go
// on while it runs. RocksDB writes every WAL record through to the file
// before DB::Write() returns (manual_wal_flush is off), so what sync() finds
// on the file is everything written so far.
//
// Thread-safety: sync() may be called from any thread, concurrently with
// RocksDB's use of the files; a file's Close waits for a sync of it in
// progress.

#include <rocksdb/file_system.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace arbiter::scoring {

class WalFiles : public rocksdb::FileSystemWrapper {
 public:
  explicit WalFiles(const std::shared_ptr<rocksdb::FileSystem>& base);
  ~WalFiles() override;
  const char* Name() const override { return "ArbiterWalFiles"; }

  rocksdb::IOStatus NewWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReopenWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                       std::unique_ptr<rocksdb::FSWritableFile>* result,
                                       rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReuseWritableFile(const std::string& name, const std::string& old_name,
                                      const rocksdb::FileOptions& options,
                                      std::unique_ptr<rocksdb::FSWritableFile>* result,
                                      rocksdb::IODebugContext* dbg) override;

  // fdatasyncs every tracked WAL file appended to since its last sync, then
  // fsyncs the directory of each file created since. The first failure is
  // returned (that file stays due for the next call).
  rocksdb::IOStatus sync();

  // WAL files currently tracked (open for writing); for tests.
  std::size_t tracked() const;

 private:
  struct Tracked;
  class File;
  // Wraps *result when `name` is a WAL file.
  void track(const std::string& name, std::unique_ptr<rocksdb::FSWritableFile>* result);
  void untrack(const Tracked* file);

  mutable std::mutex mu_;
  std::vector<std::shared_ptr<Tracked>> files_;
};

}  // namespace arbiter::scoring
