#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace prewarm {

// What SQLite's recovery of a write-ahead log (https://sqlite.org/fileformat2.html#walformat)
// would keep and what it would drop without a word.
//
// SQLite replays a WAL frame by frame while each frame carries the header's salts and a checksum
// that chains from the previous frame; it stops at the first frame that does not, and everything
// after it is ignored. That is right for a torn tail (a crash while a transaction was being
// written), but when a frame in the middle is damaged, the intact *committed* transactions after
// it are dropped too, silently. Those are what `lost_commits` counts: frames after the first bad
// one that carry this WAL generation's salts, verify against their predecessor's stored checksum
// (so they were written as one chain) and end a transaction. Stale frames of an earlier generation
// (other salts) and leftovers of a rolled-back transaction (no commit frame) do not count.
struct WalScan {
  bool present = false;         // The file exists and holds at least a header.
  bool header_valid = false;    // Magic, version, page size and header checksum are right.
  int64_t frames = 0;           // Whole frames in the file.
  int64_t replayed_frames = 0;  // Frames SQLite will replay: up to the last valid commit.
  int64_t replayed_commits = 0;
  int64_t first_bad_frame = -1;  // 0-based; -1 when every frame is valid.
  int64_t lost_frames = 0;       // Intact frames of this generation after first_bad_frame.
  int64_t lost_commits = 0;      // Of those, the ones that end a transaction.
};

// Reads the WAL at `wal_path` (the "-wal" file next to a database). A missing file is an empty
// scan; an unreadable one is UNAVAILABLE naming the file. Reads the file once, a frame at a time.
absl::StatusOr<WalScan> ScanSqliteWal(const std::string& wal_path);

}  // namespace prewarm
