#include "server/sqlite_wal_scan.h"

#include <sqlite3.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace prewarm {
namespace {

// A WAL written by SQLite itself: `commits` transactions over a connection that never
// checkpoints, copied aside while it is still open (what a crash leaves behind).
class SqliteWalScanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "sqlite_wal_scan_test_XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Returns the path of a copy of the WAL after `commits` one-row transactions, in a new file.
  std::string WriteWal(int commits) {
    ++wals_;
    const std::string db_path = absl::StrCat(dir_, "/source", wals_, ".db");
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open(db_path.c_str(), &db), SQLITE_OK);
    Exec(db, "PRAGMA journal_mode = WAL");
    Exec(db, "PRAGMA wal_autocheckpoint = 0");
    Exec(db, "CREATE TABLE t (x BLOB)");
    for (int i = 0; i < commits; ++i) {
      Exec(db, absl::StrCat("INSERT INTO t VALUES (randomblob(100))").c_str());
    }
    const std::string copy = absl::StrCat(dir_, "/copy", wals_, ".db-wal");
    std::filesystem::copy_file(db_path + "-wal", copy);
    sqlite3_close(db);
    return copy;
  }

  static void Exec(sqlite3* db, const char* sql) {
    ASSERT_EQ(sqlite3_exec(db, sql, nullptr, nullptr, nullptr), SQLITE_OK) << sql;
  }

  // Overwrites one byte of the file.
  static void Poke(const std::string& path, int64_t offset, char value) {
    std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(offset);
    f.put(value);
  }

  std::string dir_;
  int wals_ = 0;
};

constexpr int64_t kHeader = 32;

int64_t FrameBytes() { return 24 + 4096; }  // SQLite's default page size.

TEST_F(SqliteWalScanTest, AMissingOrEmptyWalIsNothing) {
  absl::StatusOr<WalScan> scan = ScanSqliteWal(dir_ + "/none-wal");
  ASSERT_TRUE(scan.ok()) << scan.status();
  EXPECT_FALSE(scan->present);
  std::ofstream(dir_ + "/empty-wal").close();
  scan = ScanSqliteWal(dir_ + "/empty-wal");
  ASSERT_TRUE(scan.ok()) << scan.status();
  EXPECT_FALSE(scan->present);
}

TEST_F(SqliteWalScanTest, AnIntactWalIsReplayedWhole) {
  const std::string wal = WriteWal(5);
  absl::StatusOr<WalScan> scan = ScanSqliteWal(wal);
  ASSERT_TRUE(scan.ok()) << scan.status();
  EXPECT_TRUE(scan->present);
  EXPECT_TRUE(scan->header_valid);
  EXPECT_EQ(scan->replayed_commits, 6);  // CREATE TABLE and five inserts.
  EXPECT_EQ(scan->replayed_frames, scan->frames);
  EXPECT_EQ(scan->first_bad_frame, -1);
  EXPECT_EQ(scan->lost_commits, 0);
}

TEST_F(SqliteWalScanTest, ATornTailLosesNoCommit) {
  const std::string wal = WriteWal(5);
  const int64_t frames = ScanSqliteWal(wal)->frames;
  // The last frame half written, as a crash in the middle of a write leaves it.
  std::filesystem::resize_file(wal, kHeader + (frames - 1) * FrameBytes() + FrameBytes() / 2);
  absl::StatusOr<WalScan> scan = ScanSqliteWal(wal);
  ASSERT_TRUE(scan.ok()) << scan.status();
  EXPECT_EQ(scan->lost_commits, 0);
  // And a damaged last frame: nothing after it.
  const std::string whole = WriteWal(5);
  Poke(whole, kHeader + (frames - 1) * FrameBytes() + 24 + 100, 'x');
  scan = ScanSqliteWal(whole);
  ASSERT_TRUE(scan.ok()) << scan.status();
  EXPECT_EQ(scan->first_bad_frame, frames - 1);
  EXPECT_EQ(scan->lost_commits, 0);
}

TEST_F(SqliteWalScanTest, ADamagedFrameInTheMiddleCountsTheCommitsSqliteWouldDrop) {
  const std::string wal = WriteWal(5);
  const int64_t frames = ScanSqliteWal(wal)->frames;
  ASSERT_GE(frames, 6);
  // Damage the page of frame 2: SQLite keeps frames 0-1 and drops the rest.
  Poke(wal, kHeader + 2 * FrameBytes() + 24 + 1000, 'x');
  absl::StatusOr<WalScan> scan = ScanSqliteWal(wal);
  ASSERT_TRUE(scan.ok()) << scan.status();
  EXPECT_EQ(scan->first_bad_frame, 2);
  EXPECT_LE(scan->replayed_frames, 2);
  EXPECT_EQ(scan->lost_frames, frames - 3);
  EXPECT_GE(scan->lost_commits, 1);
}

TEST_F(SqliteWalScanTest, ADamagedHeaderDropsEveryCommit) {
  const std::string wal = WriteWal(3);
  Poke(wal, 12, 'x');  // The checkpoint sequence, covered by the header checksum.
  absl::StatusOr<WalScan> scan = ScanSqliteWal(wal);
  ASSERT_TRUE(scan.ok()) << scan.status();
  EXPECT_FALSE(scan->header_valid);
  EXPECT_EQ(scan->replayed_frames, 0);
  EXPECT_GE(scan->lost_commits, 3);
}

}  // namespace
}  // namespace prewarm
