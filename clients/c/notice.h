/*
 * notice.h - C11 reader for the announcement board (docs/FORMAT.md, format 1.x).
 *
 * Single-header library in the stb style. In exactly ONE .c file write
 *
 *     #define _GNU_SOURCE            // or include notice.h before any system header
 *     #define NOTICE_IMPLEMENTATION
 *     #include "notice.h"
 *
 * to compile the implementation; everywhere else include notice.h for the declarations only. libnotice.c does
 * exactly that and is built as libnotice.so, which exports the notice_* functions below and nothing else.
 * Dependencies: libc and the Linux futex(2) and mmap(2) syscalls. Requires a little-endian target with
 * always-lock-free 32- and 64-bit atomics (x86-64, arm64; checked at compile time).
 *
 * CRC-32 (the snapshot's slot and record checksums) runs at hardware speed where the CPU allows, chosen at run
 * time with no compiler flags needed: PCLMULQDQ folding on x86-64 (CPUID), the ARMv8 CRC32 instructions on arm64
 * (getauxval(AT_HWCAP) & HWCAP_CRC32), slicing-by-8 tables everywhere else. The environment variable
 * NOTICE_CRC=portable (read once, at the first CRC) forces slicing-by-8: for tests and comparisons; all compute the
 * same CRC-32/IEEE (clients/crc_test.go checks each against Go's hash/crc32).
 *
 * ---------------------------------------------------------------------------------------------------------------
 * Types
 * ---------------------------------------------------------------------------------------------------------------
 * notice_board             An open, validated, mapped board. Created by notice_open, freed by notice_close.
 *                          Treat it as opaque (its layout is in this header only so that notice_version_inline
 *                          can be inlined). About 4.3 KiB plus the mapping.
 * struct notice_snapshot   One consistent copy of the board; typedef notice_snapshot_t. (There is no typedef
 *  / notice_snapshot_t     named notice_snapshot: C puts typedefs and functions in one namespace, and
 *                          notice_snapshot is the function.) Public members, read them directly: version,
 *                          published_at, count, attempts (copies it took, 1 = first try), records, and the header
 *                          fields major, minor, state, region_size, capacity, stride, writer_pid, generation,
 *                          heartbeat_ns. The last four dynamic ones are read right after the copy was accepted;
 *                          major ... stride are the board's, from notice_open. Members priv_* are private.
 * notice_follower          A follower of a path (opaque): the board at the path, reopened whenever the writer
 *                          replaces the file. Created by notice_follow_open, freed by notice_follow_close.
 * notice_follow_status     What notice_follow_wait reports: version, reopens, reopened, changed, stale, lost.
 * notice_record            One decoded record: id, effective_at, expires_at (unix ns, 0 = never), priority,
 *                          content_len (0..256) and content, a NUL-terminated copy of the content_len bytes of
 *                          UTF-8 (the text itself may contain NUL: use content_len when that matters).
 *
 * ---------------------------------------------------------------------------------------------------------------
 * Errors
 * ---------------------------------------------------------------------------------------------------------------
 * Every function that can fail returns an int: 0 (NOTICE_OK) or a negative code. The names (notice_error_name)
 * are those of FORMAT.md §8, plus timed_out for notice_wait and two C-only codes:
 *
 *     NOTICE_EIO               -1  "io"                 open, fstat or mmap failed (errno tells why); futex failed
 *     NOTICE_ETRUNCATED        -2  "truncated"          file shorter than 1344 bytes or than region_size; or
 *                                                           the file shrank during a read (the fault guard caught
 *                                                           it): close the board and reopen the path
 *     NOTICE_EBADMAGIC         -3  "bad_magic"          not a board
 *     NOTICE_EUNSUPPORTEDMAJOR -4  "unsupported_major"  major != 1
 *     NOTICE_EBADLAYOUT        -5  "bad_layout"         geometry or record layout table invalid
 *     NOTICE_ENOTPUBLISHED     -6  "not_published"      version is 0
 *     NOTICE_ESUPERSEDED       -7  "superseded"         state is 2: close and reopen the path
 *     NOTICE_ESNAPSHOTCHECKSUM -8  "snapshot_checksum"  a stable slot fails its crc (or its version check) twice
 *     NOTICE_ERECORDCHECKSUM   -9  "record_checksum"    a record of a consistent copy fails its crc
 *     NOTICE_EBADRECORD       -10  "bad_record"         content_len > 256, content not UTF-8, or id 0
 *     NOTICE_EBUSY            -11  "busy"               100 attempts, none consistent
 *     NOTICE_ETIMEDOUT        -12  "timed_out"          notice_wait: the timeout passed without a new version
 *     NOTICE_ENOMEM           -13  "out_of_memory"      (C only) malloc failed
 *     NOTICE_EINVAL           -14  "invalid_argument"   (C only) a required pointer argument was NULL
 *     NOTICE_EWENTBACK        -15  "version_went_back"  (followers) the path shows a version below one returned
 *
 * ---------------------------------------------------------------------------------------------------------------
 * Functions (b must be a board from notice_open that is not closed; that is not checked)
 * ---------------------------------------------------------------------------------------------------------------
 * int  notice_open(const char *path, notice_board **out)
 *     Opens path O_RDONLY|O_CLOEXEC, maps the whole file PROT_READ/MAP_SHARED, closes the fd and validates the
 *     header (FORMAT.md §5 steps 1-3: size, magic, major, region_size, geometry, layout table with the record
 *     fields found by name; unknown names are ignored, any minor is accepted). On success *out is a new board
 *     owned by the caller; on error *out is NULL. The mapping is registered with the fault guard (below).
 * void notice_close(notice_board *b)
 *     Unmaps and frees b; NULL is allowed. Snapshots taken from b stay valid (they are copies).
 * uint64_t notice_version(const notice_board *b)                        (exported: what FFI callers use)
 * static inline uint64_t notice_version_inline(const notice_board *b)   (the same, inlined for C callers)
 *     One acquire load of the published version (offset 0); 0 = nothing published yet. This is the cheap poll:
 *     take a snapshot when it differs from the last version seen. On a faulted board (the guard caught a SIGBUS
 *     in it: notice_faulted) it may read 0, or whatever the file holds now: take the snapshot, which says
 *     truncated, and treat the board as retired (below).
 * int  notice_state(const notice_board *b)
 *     The state word: 1 live, 2 superseded (other values are passed through). May read 0 on a faulted board.
 * int64_t notice_heartbeat_ns(const notice_board *b)
 *     The writer's last heartbeat, CLOCK_MONOTONIC ns. May read 0 on a faulted board (notice_is_stale: stale).
 * int  notice_is_stale(const notice_board *b, int64_t threshold_ns)
 *     1 if CLOCK_MONOTONIC now - heartbeat_ns > threshold_ns (a negative threshold counts as 0), else 0. Whether
 *     the version also stood still is the caller's concern (FORMAT.md §7; readers default to 5 s).
 * int  notice_wait(notice_board *b, uint64_t last_version, int timeout_ms, uint64_t *version_out)
 *     Blocks on the board's shared futex (FORMAT.md §6) until the version differs from last_version, then
 *     returns 0. timeout_ms < 0 waits without limit, 0 only checks. Returns NOTICE_ETIMEDOUT when the timeout
 *     passes, NOTICE_ESUPERSEDED when state is 2, NOTICE_ETRUNCATED when the board faulted (notice_faulted),
 *     NOTICE_EIO if futex(2) fails unexpectedly (EFAULT: the file shrank while it slept). Spurious wake-ups
 *     and EINTR are absorbed. If version_out is not NULL it receives the last version read, also on errors.
 * int  notice_snapshot(notice_board *b, struct notice_snapshot **out)
 *     Takes one consistent snapshot (the whole of FORMAT.md §5, up to 100 attempts) into a newly allocated
 *     snapshot owned by the caller (free it with notice_snapshot_free). On error *out is NULL. Returns
 *     NOTICE_ETRUNCATED when the guard caught a fault in the board, before or during the copy: bytes read from
 *     a faulted mapping are never accepted (the board is checked after every copy, before seq and crcs).
 * int  notice_snapshot_reuse(notice_board *b, struct notice_snapshot **snap)
 *     The same without allocating in steady state, for hot loops: if *snap is NULL a snapshot is allocated (as
 *     notice_snapshot does), otherwise *snap is refilled in place and its buffers grow only when a bigger
 *     snapshot arrives. On error an existing *snap keeps its previous contents (a reader can keep showing the
 *     last good snapshot); a snapshot allocated by this call is freed again and *snap stays NULL. A snapshot may
 *     be refilled from another board (e.g. after reopening a superseded path).
 * void notice_snapshot_free(struct notice_snapshot *s)
 *     Frees s and its records; NULL is allowed.
 * size_t notice_count(const struct notice_snapshot *s)
 *     The number of records (0 for NULL).
 * const notice_record *notice_record_at(const struct notice_snapshot *s, size_t i)
 *     Record i (records are sorted by id), or NULL if i >= count. Valid until s is freed or refilled.
 * int  notice_iterate(const struct notice_snapshot *s, int (*fn)(const notice_record *, void *), void *arg)
 *     Calls fn(record, arg) on each record in order; stops at and returns the first non-zero value fn returns,
 *     else returns 0 (NOTICE_EINVAL if s or fn is NULL).
 * const char *notice_strerror(int err)      A human-readable description (static storage).
 * const char *notice_error_name(int err)    The name in the table above (static storage); "ok" for 0.
 *
 * ---------------------------------------------------------------------------------------------------------------
 * Truncation and SIGBUS: the fault guard (opt-in, process-wide)
 * ---------------------------------------------------------------------------------------------------------------
 * A reader maps the board; if the file is truncated (shrunk) while it reads, the load of a vanished page raises
 * SIGBUS. The writer (announcementd) repairs a truncated board within milliseconds, in place (same file, its
 * size restored, the set republished), so a reader that survives the fault only has to notice it and reopen.
 * notice_open checks the file's size when it maps it, and a follower before each read (fstat); that leaves a
 * truncation during a read (for a board read without a follower: any time after notice_open). Surviving it
 * needs a process-wide SIGBUS handler, which a library must not install behind the host program's back. So:
 *
 *   WITHOUT notice_guard_faults, a truncation during a read kills the process with SIGBUS (the default action),
 *   as it does any program that reads an mmap'ed file. A program that must survive it calls
 *   notice_guard_faults() once at start, or installs its own SIGBUS handler that does the same.
 *
 * int  notice_guard_faults(void)
 *     Installs the guard, once per process: a SIGBUS handler (sigaction, SA_SIGINFO|SA_ONSTACK|SA_RESTART) that
 *     replaces the current action and keeps it. Every board opened by notice_open (before or after this call)
 *     is registered in a small lock-free table (NOTICE_GUARD_SLOTS entries, 64 unless defined before the
 *     implementation; a board opened while it is full works unguarded) and unregistered by notice_close. When a
 *     SIGBUS hits an address inside a registered board's mapping, the handler flags that board as faulted, maps
 *     a read-only page of zeros over the faulting page (MAP_FIXED, raw mmap syscall) and returns: the load runs
 *     again and reads zeros, and the reader, which checks the flag after every copy, reports NOTICE_ETRUNCATED.
 *     Any other SIGBUS goes to the action the guard replaced: its handler is called (with the siginfo if it
 *     takes one; not with its own sa_mask or flags); if it was SIG_DFL (or SIG_IGN, which a fault overrides),
 *     SIG_DFL is restored and the signal raised again, so the process dies of SIGBUS as it would have (a SIGBUS
 *     sent by kill(2) to a process that ignored it is still ignored). The handler is async-signal-safe and
 *     preserves errno. Thread-safe; calling it again does nothing and returns 0. Returns 0, or NOTICE_EIO if
 *     sigaction failed (errno set) or the handler did not take (errno ENOTSUP: something kept its own, e.g.
 *     AddressSanitizer with handle_sigbus=2); nothing is installed then. Call it early, before other threads
 *     install SIGBUS handlers: a handler installed after it replaces it (and must chain to it for the boards to
 *     stay guarded). Under AddressSanitizer, ASAN_OPTIONS=handle_sigbus=0 leaves SIGBUS to the guard alone;
 *     with the default handle_sigbus=1 the guard replaces ASan's handler and passes other faults on to it.
 * int  notice_faulted(const notice_board *b)
 *     1 if the guard caught a fault in b's mapping, else 0 (always 0 without the guard; 0 for NULL). A faulted
 *     board is truncated for good: some of its pages are zeros now, whatever the file holds. Its reads return
 *     NOTICE_ETRUNCATED (snapshots, notice_wait) or zeros (notice_version, notice_state, notice_heartbeat_ns).
 *     The caller must treat it as retired: notice_close it and notice_open the path again (the writer restores
 *     the file within milliseconds; until then the open fails with truncated or bad_magic: retry). A follower
 *     does that itself.
 * uint64_t notice_faults_caught(void)
 *     How many SIGBUS the guard caught in board mappings since the process started (diagnostics).
 *
 * ---------------------------------------------------------------------------------------------------------------
 * Following the path (FORMAT.md §5, "Following the path")
 * ---------------------------------------------------------------------------------------------------------------
 * The daemon replaces its file when it must (a new file renamed over the path, then the old one marked superseded
 * and its waiters woken); the version continues above the old one there. A follower keeps reading the board at
 * the path across those replacements. Before each read it checks the open file and reopens the path when:
 *   - the open file is superseded (state 2);
 *   - the path names another file than the open one (stat(path) dev/ino differs from the open file's: unlinked
 *     and recreated, or renamed over, even before the old one is marked). A path that names nothing keeps the
 *     open file: its writer may still publish into it until it recreates the path;
 *   - the open file is shorter than its mapping (fstat on the descriptor the follower keeps open), or a read of
 *     it faulted (the fault guard caught a SIGBUS in it; without the guard that SIGBUS kills the process):
 *     truncated. The follower then never touches that mapping again, keeps its last good snapshot, and reopens
 *     the path (the same file, once its writer restored it, or another one).
 * A reopen that fails (no file yet, truncated, bad_magic while the new file is being created) keeps the open file
 * and is retried at the next check; when the open file is retired (superseded or truncated) the follower is
 * "lost" until the path names a usable board. It never returns a version lower than one it returned before. A
 * check costs an fstat and a stat (about a microsecond on tmpfs). A follower is not thread-safe: use it from one
 * thread at a time. It holds one descriptor and one mapping.
 *
 * int  notice_follow_open(const char *path, int64_t stale_after_ns, notice_follower **out)
 *     Opens the board at path (as notice_open; its errors) and returns a follower of path in *out (NULL on
 *     error). stale_after_ns <= 0 means the default, 5 s.
 * void notice_follow_close(notice_follower *f)
 *     Unmaps, closes and frees f; NULL is allowed. Snapshots it filled stay valid.
 * int  notice_follow_snapshot(notice_follower *f, struct notice_snapshot **snap)
 *     Checks (and reopens) as above, then takes a snapshot into *snap with notice_snapshot_reuse's rules: *snap
 *     NULL is allocated, otherwise refilled; on error *snap keeps its previous contents. Returns the snapshot
 *     errors (busy and not_published are transient), NOTICE_ESUPERSEDED or NOTICE_ETRUNCATED while lost (try
 *     again later; a snapshot that faulted is retried on the reopened path first), NOTICE_EWENTBACK if the path
 *     shows a lower version than one returned before.
 * int  notice_follow_wait(notice_follower *f, uint64_t last_version, int timeout_ms,
 *                         struct notice_snapshot **snap, notice_follow_status *status)
 *     Blocks until there is something to report and returns 0 with *status filled (status may be NULL):
 *       changed   1 when *snap was refilled with a snapshot above last_version (and not below any version
 *                 returned before; a lower one is not reported: it keeps waiting);
 *       reopened  the files it moved to since the previous report (reopens: the total);
 *       stale     1 when the heartbeat is older than stale_after_ns (or the open file is truncated). A wait
 *                 returns when stale flips either way: "stale" and "no change" are told apart, and the
 *                 snapshot is still consistent;
 *       lost      0, or NOTICE_ESUPERSEDED / NOTICE_ETRUNCATED while the open file is retired and nothing usable
 *                 is at the path. A wait returns when lost is set and when it clears.
 *     version is the newest accepted snapshot's. Pass 0 at first to get the current snapshot at once, then the
 *     version seen. It sleeps on the board's futex and wakes every NOTICE_FOLLOW_CHECK_MS (100 ms) to check the
 *     path and the heartbeat. timeout_ms < 0 waits without limit, 0 only checks; when it passes, it returns
 *     NOTICE_ETIMEDOUT with *status filled: no change. Other errors: corrupt bytes (snapshot_checksum,
 *     record_checksum, bad_record: calling again retries), NOTICE_ENOMEM, NOTICE_EINVAL.
 * int  notice_follow_is_stale(notice_follower *f)
 *     Checks (and reopens) as above; 1 if the heartbeat of the open file is older than stale_after_ns or the file
 *     is truncated, else 0.
 * uint64_t notice_follow_reopens(const notice_follower *f)
 *     The number of files the follower moved to since notice_follow_open.
 *
 * ---------------------------------------------------------------------------------------------------------------
 * Thread safety
 * ---------------------------------------------------------------------------------------------------------------
 * A notice_board is immutable after notice_open: any number of threads may call notice_version, notice_state,
 * notice_heartbeat_ns, notice_is_stale, notice_wait and notice_snapshot(_reuse) on one board at once, each thread
 * with its own snapshot. A snapshot is not synchronised: refill it from one thread at a time (reading it from
 * several threads while nobody refills it is fine). notice_close must not race with other calls on that board.
 * A notice_follower changes as it follows: one thread at a time.
 * The CRC tables are static const data; the CRC implementation is chosen once, at the first CRC, into an atomic
 * (threads racing to choose choose the same). The only other global state is the fault guard's: its registry of
 * mappings (lock-free atomics, written by notice_open and notice_close, read by the handler), whether it is
 * installed, and the action it replaced; no lock anywhere. Each copy of the implementation (a program that compiles it in,
 * libnotice.so) has its own registry and guard; each guards the boards it opened, and passes other faults on.
 *
 * ---------------------------------------------------------------------------------------------------------------
 * Memory safety
 * ---------------------------------------------------------------------------------------------------------------
 * Every geometry value is validated with overflow-free 64-bit arithmetic at open and copied into the board, so
 * later changes to the mapped header cannot make the reader step outside the mapping: garbage, truncated or
 * wrong-size files produce an error, never an out-of-bounds read. One hazard remains: if the file is truncated
 * (shrunk) after notice_open, touching the vanished pages raises SIGBUS. A conforming writer never shrinks a
 * region in place (FORMAT.md §7), but someone else may, and the daemon then restores it in place. A follower
 * fstats its file before every read and stops reading a file that shrank, which narrows the hazard to a
 * truncation during one read; that one kills the process unless the host installed the fault guard
 * (notice_guard_faults, above), which turns it into NOTICE_ETRUNCATED. The guard's page of zeros makes the
 * faulting load succeed; the reader never accepts what it read from a faulted board.
 */
#ifndef NOTICE_H
#define NOTICE_H

/* The implementation needs POSIX and syscall(2). This only helps when notice.h is the first include. */
#if defined(NOTICE_IMPLEMENTATION) && !defined(_GNU_SOURCE) && !defined(_DEFAULT_SOURCE)
#define _DEFAULT_SOURCE 1
#endif

#include <stddef.h>
#include <stdint.h>
#ifndef __cplusplus /* C++ can use the declarations (and libnotice.so), not the C11-atomics inline poll */
#include <stdatomic.h>
#if ATOMIC_INT_LOCK_FREE != 2 || ATOMIC_LLONG_LOCK_FREE != 2
#error "notice.h: needs always-lock-free 32- and 64-bit atomics (a locking atomic would write to a read-only map)"
#endif
#endif

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "notice.h: the board is little-endian and is read with native atomic loads; big-endian hosts are unsupported"
#endif

#ifndef NOTICE_API
#if defined(__GNUC__) || defined(__clang__)
#define NOTICE_API __attribute__((visibility("default")))
#else
#define NOTICE_API
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

enum {
    NOTICE_OK = 0,
    NOTICE_EIO = -1,
    NOTICE_ETRUNCATED = -2,
    NOTICE_EBADMAGIC = -3,
    NOTICE_EUNSUPPORTEDMAJOR = -4,
    NOTICE_EBADLAYOUT = -5,
    NOTICE_ENOTPUBLISHED = -6,
    NOTICE_ESUPERSEDED = -7,
    NOTICE_ESNAPSHOTCHECKSUM = -8,
    NOTICE_ERECORDCHECKSUM = -9,
    NOTICE_EBADRECORD = -10,
    NOTICE_EBUSY = -11,
    NOTICE_ETIMEDOUT = -12,
    NOTICE_ENOMEM = -13,
    NOTICE_EINVAL = -14,
    NOTICE_EWENTBACK = -15
};

enum {
    NOTICE_STATE_LIVE = 1,
    NOTICE_STATE_SUPERSEDED = 2,
    NOTICE_MAX_CONTENT = 256,
    NOTICE_MAX_ATTEMPTS = 100,
    NOTICE_FOLLOW_CHECK_MS = 100 /* how often notice_follow_wait checks the path and the heartbeat */
};

/* One decoded record. content is a NUL-terminated copy of the content_len bytes of UTF-8 text (the text itself
 * may contain NUL bytes: use content_len, not strlen, when that matters). */
typedef struct notice_record {
    uint64_t id;
    int64_t effective_at; /* unix ns */
    int64_t expires_at;   /* unix ns, 0 = never */
    int32_t priority;
    uint32_t content_len; /* 0..256 */
    char content[NOTICE_MAX_CONTENT + 1];
} notice_record;

/* One consistent copy of the board. There is no typedef named notice_snapshot: that identifier is the function
 * that takes a snapshot (C has one namespace for both). Write struct notice_snapshot or notice_snapshot_t. */
typedef struct notice_snapshot {
    uint64_t version;      /* the version in the accepted slot copy */
    int64_t published_at;  /* unix ns */
    uint64_t count;        /* number of records */
    uint64_t region_size;
    uint64_t generation;
    int64_t heartbeat_ns;
    uint32_t attempts;     /* copies it took, 1 = the first was consistent */
    uint32_t state;
    uint32_t capacity;
    uint32_t stride;
    uint32_t writer_pid;
    uint16_t major;
    uint16_t minor;
    const notice_record *records; /* count records, sorted by id */
    /* private */
    notice_record *priv_records;
    size_t priv_records_cap;
    unsigned char *priv_raw;
    size_t priv_raw_cap;
} notice_snapshot_t;

/* The board. Its members are private; the struct is public only so that notice_version_inline can be inlined. */
typedef struct notice_board {
    const unsigned char *base; /* the mapping, PROT_READ */
    size_t map_size;
    int guard; /* its entry in the fault guard's registry, or -1 (the registry was full) */
    uint64_t region_size;
    uint32_t header_size, capacity, stride, slot_size;
    uint16_t major, minor;
    uint32_t off_content_len, off_id, off_effective_at, off_expires_at, off_priority, off_content;
    uint32_t skip[4][256]; /* the CRC operator "append stride zero bytes", see notice__skip_setup */
    uint32_t skip_k;       /* "append stride - 4 zero bytes" applied to 0xFFFFFFFF */
} notice_board;

NOTICE_API int notice_open(const char *path, notice_board **out);
NOTICE_API void notice_close(notice_board *b);
NOTICE_API uint64_t notice_version(const notice_board *b);
NOTICE_API int notice_state(const notice_board *b);
NOTICE_API int64_t notice_heartbeat_ns(const notice_board *b);
NOTICE_API int notice_is_stale(const notice_board *b, int64_t threshold_ns);
NOTICE_API int notice_wait(notice_board *b, uint64_t last_version, int timeout_ms, uint64_t *version_out);
NOTICE_API int notice_snapshot(notice_board *b, struct notice_snapshot **out);
NOTICE_API int notice_snapshot_reuse(notice_board *b, struct notice_snapshot **snap);
NOTICE_API void notice_snapshot_free(struct notice_snapshot *s);
NOTICE_API size_t notice_count(const struct notice_snapshot *s);
NOTICE_API const notice_record *notice_record_at(const struct notice_snapshot *s, size_t i);
NOTICE_API int notice_iterate(const struct notice_snapshot *s, int (*fn)(const notice_record *, void *), void *arg);
NOTICE_API const char *notice_strerror(int err);
NOTICE_API const char *notice_error_name(int err);

/* The fault guard (opt-in, process-wide): a SIGBUS in a board's mapping marks the board truncated instead of
 * killing the process. */
NOTICE_API int notice_guard_faults(void);
NOTICE_API int notice_faulted(const notice_board *b);
NOTICE_API uint64_t notice_faults_caught(void);

/* Following the path: an opaque follower, and what notice_follow_wait reports. */
typedef struct notice_follower notice_follower;

typedef struct notice_follow_status {
    uint64_t version;  /* the version of the newest snapshot the follower accepted; 0 = none yet */
    uint64_t reopens;  /* files the follower moved to since notice_follow_open */
    uint32_t reopened; /* files it moved to since the previous report */
    int32_t changed;   /* 1: the snapshot was refilled with a version above last_version */
    int32_t stale;     /* 1: the heartbeat is older than stale_after_ns, or the open file cannot be read */
    int32_t lost;      /* 0, or why the open file is retired with no usable replacement at the path yet:
                          NOTICE_ESUPERSEDED or NOTICE_ETRUNCATED */
} notice_follow_status;

NOTICE_API int notice_follow_open(const char *path, int64_t stale_after_ns, notice_follower **out);
NOTICE_API void notice_follow_close(notice_follower *f);
NOTICE_API int notice_follow_snapshot(notice_follower *f, struct notice_snapshot **snap);
NOTICE_API int notice_follow_wait(notice_follower *f, uint64_t last_version, int timeout_ms,
                                  struct notice_snapshot **snap, notice_follow_status *status);
NOTICE_API int notice_follow_is_stale(notice_follower *f);
NOTICE_API uint64_t notice_follow_reopens(const notice_follower *f);

#ifndef __cplusplus
/* The poll: one acquire load of the version word at offset 0. The acquire pairs with the writer's release store
 * of the version (FORMAT.md §4 step 5), so a snapshot taken after seeing version V finds V's slot complete. */
static inline uint64_t notice_version_inline(const notice_board *b)
{
    return atomic_load_explicit((const _Atomic uint64_t *)(const void *)b->base, memory_order_acquire);
}
#endif

#ifdef __cplusplus
}
#endif

#endif /* NOTICE_H */

/* ============================================================================================================= */
#if defined(NOTICE_IMPLEMENTATION) && !defined(NOTICE_IMPLEMENTATION_DONE)
#define NOTICE_IMPLEMENTATION_DONE 1

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* ---- format constants (FORMAT.md §2, §3) ---- */
#define NOTICE__OFF_VERSION 0u
#define NOTICE__OFF_MAGIC 8u
#define NOTICE__OFF_FUTEX 16u
#define NOTICE__OFF_STATE 20u
#define NOTICE__OFF_MAJOR 24u
#define NOTICE__OFF_MINOR 26u
#define NOTICE__OFF_HEADER_SIZE 28u
#define NOTICE__OFF_REGION_SIZE 32u
#define NOTICE__OFF_CAPACITY 40u
#define NOTICE__OFF_STRIDE 44u
#define NOTICE__OFF_SLOT_SIZE 48u
#define NOTICE__OFF_HEARTBEAT 64u
#define NOTICE__OFF_WRITER_PID 128u
#define NOTICE__OFF_GENERATION 136u
#define NOTICE__OFF_FIELD_COUNT 256u
#define NOTICE__OFF_LAYOUT_CRC 260u
#define NOTICE__OFF_FIELDS 272u
#define NOTICE__FIELD_ENTRY 32u
#define NOTICE__FIELD_NAME 20u
#define NOTICE__MAX_FIELDS 32u
#define NOTICE__MIN_FILE 1344u /* header lines + a full layout table, rounded up to 64 */
#define NOTICE__MAX_FILE (1ull << 30) /* FORMAT.md §9 */
#define NOTICE__MIN_STRIDE 292u
#define NOTICE__SLOT_HDR 64u
#define NOTICE__SLOT_OFF_SEQ 0u
#define NOTICE__SLOT_OFF_CRC 8u
#define NOTICE__SLOT_OFF_COUNT 12u
#define NOTICE__SLOT_OFF_VERSION 16u
#define NOTICE__SLOT_OFF_PUBLISHED 24u
#define NOTICE__SLOT_CRC_START 12u

enum { NOTICE__T_U32 = 1, NOTICE__T_U64 = 2, NOTICE__T_I32 = 3, NOTICE__T_I64 = 4, NOTICE__T_BYTES = 5 };

/* ---- little-endian decoding of plain (non-racing or already copied) bytes ----
 * The host is little-endian (checked above), so these are plain unaligned loads: memcpy compiles to one mov. */
static inline uint16_t notice__le16(const unsigned char *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline uint32_t notice__le32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline uint64_t notice__le64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}
static int32_t notice__i32(uint32_t u)
{
    int32_t v;
    memcpy(&v, &u, sizeof v);
    return v;
}
static int64_t notice__i64(uint64_t u)
{
    int64_t v;
    memcpy(&v, &u, sizeof v); /* two's complement reinterpretation without implementation-defined casts */
    return v;
}

/* ---- atomic access to words of the live mapping (all offsets are aligned to the word size) ---- */
static uint64_t notice__load64(const notice_board *b, uint64_t off, memory_order mo)
{
    return atomic_load_explicit((const _Atomic uint64_t *)(const void *)(b->base + off), mo);
}
static uint32_t notice__load32(const notice_board *b, uint64_t off, memory_order mo)
{
    return atomic_load_explicit((const _Atomic uint32_t *)(const void *)(b->base + off), mo);
}

/* ---- the fault guard (notice_guard_faults) ----
 * A registry of the boards' mappings that the SIGBUS handler can read: a fixed array of entries, each a seqlock
 * over (base, len) and the board's faulted flag. An entry is free when its base is 0 and its seq even. notice_open
 * claims a free entry (seq even -> odd by CAS), fills it and publishes it (seq odd -> even, release);
 * notice_close empties it the same way before it unmaps. The handler only reads entries (seq, base, len, seq
 * again: a pair read while an owner changes it is skipped; that entry cannot be the faulting board, whose reads
 * may not race with its close) and stores the faulted flag and the counter: no lock, no allocation, nothing that
 * is not async-signal-safe. A board opened while the registry is full works unguarded (its guard is -1). The
 * registry exists whether or not the handler is installed, so boards opened before notice_guard_faults are
 * guarded from then on. */
#ifndef NOTICE_GUARD_SLOTS
#define NOTICE_GUARD_SLOTS 64 /* open boards that can be guarded at once; a follower holds one (two briefly) */
#endif

struct notice__guard_entry {
    _Atomic uint64_t seq;     /* even: stable; odd: its owner is changing it */
    _Atomic uint64_t base;    /* the mapping's address; 0: the entry is free */
    _Atomic uint64_t len;     /* the mapping's length in bytes */
    _Atomic uint32_t faulted; /* 1 once a SIGBUS hit the mapping */
};

static struct notice__guard_entry notice__guard_reg[NOTICE_GUARD_SLOTS];
static _Atomic int notice__guard_state;     /* 0 not installed, 1 being installed, 2 installed */
static _Atomic uint64_t notice__guard_page; /* the page size, set before the handler is installed */
static _Atomic uint64_t notice__guard_caught; /* faults caught in board mappings */
static struct sigaction notice__guard_prev;   /* the action the guard replaced: what other SIGBUS go to */

/* Registers the mapping [base, base + len); returns its entry, or -1 when the registry is full. */
static int notice__guard_register(const void *base, size_t len)
{
    int i;
    for (i = 0; i < NOTICE_GUARD_SLOTS; i++) {
        struct notice__guard_entry *e = &notice__guard_reg[i];
        uint64_t q = atomic_load_explicit(&e->seq, memory_order_acquire);
        if ((q & 1) || atomic_load_explicit(&e->base, memory_order_relaxed) != 0)
            continue;
        /* seq unchanged since base read 0: nobody claimed the entry in between */
        if (!atomic_compare_exchange_strong_explicit(&e->seq, &q, q + 1, memory_order_acquire,
                                                     memory_order_relaxed))
            continue;
        atomic_thread_fence(memory_order_release); /* the odd seq before the stores below (seqlock writer) */
        atomic_store_explicit(&e->faulted, 0, memory_order_relaxed);
        atomic_store_explicit(&e->len, (uint64_t)len, memory_order_relaxed);
        atomic_store_explicit(&e->base, (uint64_t)(uintptr_t)base, memory_order_relaxed);
        atomic_store_explicit(&e->seq, q + 2, memory_order_release);
        return i;
    }
    return -1;
}

/* Frees entry i (its owner's call, before the mapping is unmapped). */
static void notice__guard_unregister(int i)
{
    struct notice__guard_entry *e;
    uint64_t q;
    if (i < 0)
        return;
    e = &notice__guard_reg[i];
    q = atomic_load_explicit(&e->seq, memory_order_relaxed);
    atomic_store_explicit(&e->seq, q + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&e->base, 0, memory_order_relaxed);
    atomic_store_explicit(&e->len, 0, memory_order_relaxed);
    atomic_store_explicit(&e->seq, q + 2, memory_order_release);
}

/* 1 if a SIGBUS hit b's mapping. Call it after the loads it must cover: the signal fence keeps the compiler from
 * moving them (the memcpy included) past this check; a fault is synchronous, so when one of those loads faulted,
 * the handler ran on this thread before the flag is read. */
static int notice__faulted(const notice_board *b)
{
    atomic_signal_fence(memory_order_seq_cst);
    return b->guard >= 0 && atomic_load_explicit(&notice__guard_reg[b->guard].faulted, memory_order_acquire) != 0;
}

/* The SIGBUS handler. A fault inside a registered mapping: flag the board, then map a read-only page of zeros over
 * the faulting page (raw mmap syscall, MAP_FIXED), and return: the faulting load runs again and reads zeros,
 * which the reader never accepts (it checks the flag after every copy). Anything else goes where it would have
 * gone without the guard. errno is preserved. */
static void notice__on_sigbus(int sig, siginfo_t *si, void *uctx)
{
    int saved = errno, i;
    if (si != NULL && si->si_code == BUS_ADRERR) { /* a fault of the kernel's: past the end of a mapped file */
        uint64_t a = (uint64_t)(uintptr_t)si->si_addr;
        for (i = 0; i < NOTICE_GUARD_SLOTS; i++) {
            struct notice__guard_entry *e = &notice__guard_reg[i];
            uint64_t q1 = atomic_load_explicit(&e->seq, memory_order_acquire), q2, base, len, page;
            if (q1 & 1)
                continue;
            base = atomic_load_explicit(&e->base, memory_order_relaxed);
            len = atomic_load_explicit(&e->len, memory_order_relaxed);
            atomic_thread_fence(memory_order_acquire);
            q2 = atomic_load_explicit(&e->seq, memory_order_relaxed);
            if (q1 != q2 || base == 0 || a - base >= len)
                continue;
            /* The flag first: a thread that reads the zero page (without faulting: it is already there) and then
             * checks the flag finds it set. */
            atomic_store_explicit(&e->faulted, 1, memory_order_seq_cst);
            page = atomic_load_explicit(&notice__guard_page, memory_order_relaxed);
            if (syscall(SYS_mmap, (void *)(uintptr_t)(a & ~(page - 1)), (size_t)page, PROT_READ,
                        MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, (off_t)0) == -1)
                break; /* cannot patch it (out of memory, map count): die as without the guard */
            atomic_fetch_add_explicit(&notice__guard_caught, 1, memory_order_relaxed);
            errno = saved;
            return;
        }
    }
    errno = saved;
    if (notice__guard_prev.sa_flags & SA_SIGINFO) {
        notice__guard_prev.sa_sigaction(sig, si, uctx);
    } else if (notice__guard_prev.sa_handler == SIG_IGN && si != NULL && si->si_code <= 0) {
        /* ignored, and sent by a process (a fault ignores SIG_IGN and kills): ignore it as before */
    } else if (notice__guard_prev.sa_handler != SIG_DFL && notice__guard_prev.sa_handler != SIG_IGN) {
        notice__guard_prev.sa_handler(sig);
    } else {
        /* The default action: put it back and raise the signal again. It is blocked in this handler, so it is
         * delivered when the handler returns, and the process dies of SIGBUS as it would have. */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        sigaction(SIGBUS, &dfl, NULL);
        raise(SIGBUS);
        errno = saved;
    }
}

NOTICE_API int notice_guard_faults(void)
{
    for (;;) {
        int expect = 0;
        struct sigaction sa, old;
        if (atomic_compare_exchange_strong(&notice__guard_state, &expect, 1)) {
            long page = sysconf(_SC_PAGESIZE);
            atomic_store(&notice__guard_page, (uint64_t)(page > 0 ? page : 4096));
            memset(&sa, 0, sizeof sa);
            sa.sa_sigaction = notice__on_sigbus;
            sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
            sigemptyset(&sa.sa_mask);
            /* The previous action is read before ours goes in, so the handler never sees it half written; if it
             * changed in between, the later one is what we replaced. */
            if (sigaction(SIGBUS, NULL, &notice__guard_prev) != 0 || sigaction(SIGBUS, &sa, &old) != 0) {
                int saved = errno;
                atomic_store(&notice__guard_state, 0);
                errno = saved;
                return NOTICE_EIO;
            }
            if (memcmp(&old, &notice__guard_prev, sizeof old) != 0)
                notice__guard_prev = old;
            /* Did it take? A sanitizer that owns SIGBUS (ASan with handle_sigbus=2) accepts the call and keeps
             * its own handler: report that rather than promise a guard that is not there. */
            if (sigaction(SIGBUS, NULL, &old) != 0 || !(old.sa_flags & SA_SIGINFO) ||
                old.sa_sigaction != notice__on_sigbus) {
                atomic_store(&notice__guard_state, 0);
                errno = ENOTSUP;
                return NOTICE_EIO;
            }
            atomic_store(&notice__guard_state, 2);
            return NOTICE_OK;
        }
        if (expect == 2)
            return NOTICE_OK;
        sched_yield(); /* another thread is installing it: wait for its result (it may fail: then try) */
    }
}

NOTICE_API int notice_faulted(const notice_board *b) { return b != NULL && notice__faulted(b); }

NOTICE_API uint64_t notice_faults_caught(void)
{
    return atomic_load_explicit(&notice__guard_caught, memory_order_relaxed);
}

/* ---- CRC-32/IEEE (reflected 0xEDB88320, init and final xor 0xFFFFFFFF) ----
 * Slicing-by-8: notice__crc_table[0] is the classic byte-at-a-time table, and notice__crc_table[k][i] is the CRC
 * register after byte i followed by k zero bytes, so eight input bytes are folded per step with eight independent
 * lookups. The tables are generated constants (8 KiB, read-only): no initialisation, nothing for threads to race
 * on. Functions named *_update work on the running register (pre-inverted); notice__crc32 is the whole CRC. The
 * table is the portable implementation; faster ones by CPU follow. */
static const uint32_t notice__crc_table[8][256] = {
    {
        0x00000000u, 0x77073096u, 0xee0e612cu, 0x990951bau, 0x076dc419u, 0x706af48fu, 0xe963a535u, 0x9e6495a3u,
        0x0edb8832u, 0x79dcb8a4u, 0xe0d5e91eu, 0x97d2d988u, 0x09b64c2bu, 0x7eb17cbdu, 0xe7b82d07u, 0x90bf1d91u,
        0x1db71064u, 0x6ab020f2u, 0xf3b97148u, 0x84be41deu, 0x1adad47du, 0x6ddde4ebu, 0xf4d4b551u, 0x83d385c7u,
        0x136c9856u, 0x646ba8c0u, 0xfd62f97au, 0x8a65c9ecu, 0x14015c4fu, 0x63066cd9u, 0xfa0f3d63u, 0x8d080df5u,
        0x3b6e20c8u, 0x4c69105eu, 0xd56041e4u, 0xa2677172u, 0x3c03e4d1u, 0x4b04d447u, 0xd20d85fdu, 0xa50ab56bu,
        0x35b5a8fau, 0x42b2986cu, 0xdbbbc9d6u, 0xacbcf940u, 0x32d86ce3u, 0x45df5c75u, 0xdcd60dcfu, 0xabd13d59u,
        0x26d930acu, 0x51de003au, 0xc8d75180u, 0xbfd06116u, 0x21b4f4b5u, 0x56b3c423u, 0xcfba9599u, 0xb8bda50fu,
        0x2802b89eu, 0x5f058808u, 0xc60cd9b2u, 0xb10be924u, 0x2f6f7c87u, 0x58684c11u, 0xc1611dabu, 0xb6662d3du,
        0x76dc4190u, 0x01db7106u, 0x98d220bcu, 0xefd5102au, 0x71b18589u, 0x06b6b51fu, 0x9fbfe4a5u, 0xe8b8d433u,
        0x7807c9a2u, 0x0f00f934u, 0x9609a88eu, 0xe10e9818u, 0x7f6a0dbbu, 0x086d3d2du, 0x91646c97u, 0xe6635c01u,
        0x6b6b51f4u, 0x1c6c6162u, 0x856530d8u, 0xf262004eu, 0x6c0695edu, 0x1b01a57bu, 0x8208f4c1u, 0xf50fc457u,
        0x65b0d9c6u, 0x12b7e950u, 0x8bbeb8eau, 0xfcb9887cu, 0x62dd1ddfu, 0x15da2d49u, 0x8cd37cf3u, 0xfbd44c65u,
        0x4db26158u, 0x3ab551ceu, 0xa3bc0074u, 0xd4bb30e2u, 0x4adfa541u, 0x3dd895d7u, 0xa4d1c46du, 0xd3d6f4fbu,
        0x4369e96au, 0x346ed9fcu, 0xad678846u, 0xda60b8d0u, 0x44042d73u, 0x33031de5u, 0xaa0a4c5fu, 0xdd0d7cc9u,
        0x5005713cu, 0x270241aau, 0xbe0b1010u, 0xc90c2086u, 0x5768b525u, 0x206f85b3u, 0xb966d409u, 0xce61e49fu,
        0x5edef90eu, 0x29d9c998u, 0xb0d09822u, 0xc7d7a8b4u, 0x59b33d17u, 0x2eb40d81u, 0xb7bd5c3bu, 0xc0ba6cadu,
        0xedb88320u, 0x9abfb3b6u, 0x03b6e20cu, 0x74b1d29au, 0xead54739u, 0x9dd277afu, 0x04db2615u, 0x73dc1683u,
        0xe3630b12u, 0x94643b84u, 0x0d6d6a3eu, 0x7a6a5aa8u, 0xe40ecf0bu, 0x9309ff9du, 0x0a00ae27u, 0x7d079eb1u,
        0xf00f9344u, 0x8708a3d2u, 0x1e01f268u, 0x6906c2feu, 0xf762575du, 0x806567cbu, 0x196c3671u, 0x6e6b06e7u,
        0xfed41b76u, 0x89d32be0u, 0x10da7a5au, 0x67dd4accu, 0xf9b9df6fu, 0x8ebeeff9u, 0x17b7be43u, 0x60b08ed5u,
        0xd6d6a3e8u, 0xa1d1937eu, 0x38d8c2c4u, 0x4fdff252u, 0xd1bb67f1u, 0xa6bc5767u, 0x3fb506ddu, 0x48b2364bu,
        0xd80d2bdau, 0xaf0a1b4cu, 0x36034af6u, 0x41047a60u, 0xdf60efc3u, 0xa867df55u, 0x316e8eefu, 0x4669be79u,
        0xcb61b38cu, 0xbc66831au, 0x256fd2a0u, 0x5268e236u, 0xcc0c7795u, 0xbb0b4703u, 0x220216b9u, 0x5505262fu,
        0xc5ba3bbeu, 0xb2bd0b28u, 0x2bb45a92u, 0x5cb36a04u, 0xc2d7ffa7u, 0xb5d0cf31u, 0x2cd99e8bu, 0x5bdeae1du,
        0x9b64c2b0u, 0xec63f226u, 0x756aa39cu, 0x026d930au, 0x9c0906a9u, 0xeb0e363fu, 0x72076785u, 0x05005713u,
        0x95bf4a82u, 0xe2b87a14u, 0x7bb12baeu, 0x0cb61b38u, 0x92d28e9bu, 0xe5d5be0du, 0x7cdcefb7u, 0x0bdbdf21u,
        0x86d3d2d4u, 0xf1d4e242u, 0x68ddb3f8u, 0x1fda836eu, 0x81be16cdu, 0xf6b9265bu, 0x6fb077e1u, 0x18b74777u,
        0x88085ae6u, 0xff0f6a70u, 0x66063bcau, 0x11010b5cu, 0x8f659effu, 0xf862ae69u, 0x616bffd3u, 0x166ccf45u,
        0xa00ae278u, 0xd70dd2eeu, 0x4e048354u, 0x3903b3c2u, 0xa7672661u, 0xd06016f7u, 0x4969474du, 0x3e6e77dbu,
        0xaed16a4au, 0xd9d65adcu, 0x40df0b66u, 0x37d83bf0u, 0xa9bcae53u, 0xdebb9ec5u, 0x47b2cf7fu, 0x30b5ffe9u,
        0xbdbdf21cu, 0xcabac28au, 0x53b39330u, 0x24b4a3a6u, 0xbad03605u, 0xcdd70693u, 0x54de5729u, 0x23d967bfu,
        0xb3667a2eu, 0xc4614ab8u, 0x5d681b02u, 0x2a6f2b94u, 0xb40bbe37u, 0xc30c8ea1u, 0x5a05df1bu, 0x2d02ef8du,
    },
    {
        0x00000000u, 0x191b3141u, 0x32366282u, 0x2b2d53c3u, 0x646cc504u, 0x7d77f445u, 0x565aa786u, 0x4f4196c7u,
        0xc8d98a08u, 0xd1c2bb49u, 0xfaefe88au, 0xe3f4d9cbu, 0xacb54f0cu, 0xb5ae7e4du, 0x9e832d8eu, 0x87981ccfu,
        0x4ac21251u, 0x53d92310u, 0x78f470d3u, 0x61ef4192u, 0x2eaed755u, 0x37b5e614u, 0x1c98b5d7u, 0x05838496u,
        0x821b9859u, 0x9b00a918u, 0xb02dfadbu, 0xa936cb9au, 0xe6775d5du, 0xff6c6c1cu, 0xd4413fdfu, 0xcd5a0e9eu,
        0x958424a2u, 0x8c9f15e3u, 0xa7b24620u, 0xbea97761u, 0xf1e8e1a6u, 0xe8f3d0e7u, 0xc3de8324u, 0xdac5b265u,
        0x5d5daeaau, 0x44469febu, 0x6f6bcc28u, 0x7670fd69u, 0x39316baeu, 0x202a5aefu, 0x0b07092cu, 0x121c386du,
        0xdf4636f3u, 0xc65d07b2u, 0xed705471u, 0xf46b6530u, 0xbb2af3f7u, 0xa231c2b6u, 0x891c9175u, 0x9007a034u,
        0x179fbcfbu, 0x0e848dbau, 0x25a9de79u, 0x3cb2ef38u, 0x73f379ffu, 0x6ae848beu, 0x41c51b7du, 0x58de2a3cu,
        0xf0794f05u, 0xe9627e44u, 0xc24f2d87u, 0xdb541cc6u, 0x94158a01u, 0x8d0ebb40u, 0xa623e883u, 0xbf38d9c2u,
        0x38a0c50du, 0x21bbf44cu, 0x0a96a78fu, 0x138d96ceu, 0x5ccc0009u, 0x45d73148u, 0x6efa628bu, 0x77e153cau,
        0xbabb5d54u, 0xa3a06c15u, 0x888d3fd6u, 0x91960e97u, 0xded79850u, 0xc7cca911u, 0xece1fad2u, 0xf5facb93u,
        0x7262d75cu, 0x6b79e61du, 0x4054b5deu, 0x594f849fu, 0x160e1258u, 0x0f152319u, 0x243870dau, 0x3d23419bu,
        0x65fd6ba7u, 0x7ce65ae6u, 0x57cb0925u, 0x4ed03864u, 0x0191aea3u, 0x188a9fe2u, 0x33a7cc21u, 0x2abcfd60u,
        0xad24e1afu, 0xb43fd0eeu, 0x9f12832du, 0x8609b26cu, 0xc94824abu, 0xd05315eau, 0xfb7e4629u, 0xe2657768u,
        0x2f3f79f6u, 0x362448b7u, 0x1d091b74u, 0x04122a35u, 0x4b53bcf2u, 0x52488db3u, 0x7965de70u, 0x607eef31u,
        0xe7e6f3feu, 0xfefdc2bfu, 0xd5d0917cu, 0xcccba03du, 0x838a36fau, 0x9a9107bbu, 0xb1bc5478u, 0xa8a76539u,
        0x3b83984bu, 0x2298a90au, 0x09b5fac9u, 0x10aecb88u, 0x5fef5d4fu, 0x46f46c0eu, 0x6dd93fcdu, 0x74c20e8cu,
        0xf35a1243u, 0xea412302u, 0xc16c70c1u, 0xd8774180u, 0x9736d747u, 0x8e2de606u, 0xa500b5c5u, 0xbc1b8484u,
        0x71418a1au, 0x685abb5bu, 0x4377e898u, 0x5a6cd9d9u, 0x152d4f1eu, 0x0c367e5fu, 0x271b2d9cu, 0x3e001cddu,
        0xb9980012u, 0xa0833153u, 0x8bae6290u, 0x92b553d1u, 0xddf4c516u, 0xc4eff457u, 0xefc2a794u, 0xf6d996d5u,
        0xae07bce9u, 0xb71c8da8u, 0x9c31de6bu, 0x852aef2au, 0xca6b79edu, 0xd37048acu, 0xf85d1b6fu, 0xe1462a2eu,
        0x66de36e1u, 0x7fc507a0u, 0x54e85463u, 0x4df36522u, 0x02b2f3e5u, 0x1ba9c2a4u, 0x30849167u, 0x299fa026u,
        0xe4c5aeb8u, 0xfdde9ff9u, 0xd6f3cc3au, 0xcfe8fd7bu, 0x80a96bbcu, 0x99b25afdu, 0xb29f093eu, 0xab84387fu,
        0x2c1c24b0u, 0x350715f1u, 0x1e2a4632u, 0x07317773u, 0x4870e1b4u, 0x516bd0f5u, 0x7a468336u, 0x635db277u,
        0xcbfad74eu, 0xd2e1e60fu, 0xf9ccb5ccu, 0xe0d7848du, 0xaf96124au, 0xb68d230bu, 0x9da070c8u, 0x84bb4189u,
        0x03235d46u, 0x1a386c07u, 0x31153fc4u, 0x280e0e85u, 0x674f9842u, 0x7e54a903u, 0x5579fac0u, 0x4c62cb81u,
        0x8138c51fu, 0x9823f45eu, 0xb30ea79du, 0xaa1596dcu, 0xe554001bu, 0xfc4f315au, 0xd7626299u, 0xce7953d8u,
        0x49e14f17u, 0x50fa7e56u, 0x7bd72d95u, 0x62cc1cd4u, 0x2d8d8a13u, 0x3496bb52u, 0x1fbbe891u, 0x06a0d9d0u,
        0x5e7ef3ecu, 0x4765c2adu, 0x6c48916eu, 0x7553a02fu, 0x3a1236e8u, 0x230907a9u, 0x0824546au, 0x113f652bu,
        0x96a779e4u, 0x8fbc48a5u, 0xa4911b66u, 0xbd8a2a27u, 0xf2cbbce0u, 0xebd08da1u, 0xc0fdde62u, 0xd9e6ef23u,
        0x14bce1bdu, 0x0da7d0fcu, 0x268a833fu, 0x3f91b27eu, 0x70d024b9u, 0x69cb15f8u, 0x42e6463bu, 0x5bfd777au,
        0xdc656bb5u, 0xc57e5af4u, 0xee530937u, 0xf7483876u, 0xb809aeb1u, 0xa1129ff0u, 0x8a3fcc33u, 0x9324fd72u,
    },
    {
        0x00000000u, 0x01c26a37u, 0x0384d46eu, 0x0246be59u, 0x0709a8dcu, 0x06cbc2ebu, 0x048d7cb2u, 0x054f1685u,
        0x0e1351b8u, 0x0fd13b8fu, 0x0d9785d6u, 0x0c55efe1u, 0x091af964u, 0x08d89353u, 0x0a9e2d0au, 0x0b5c473du,
        0x1c26a370u, 0x1de4c947u, 0x1fa2771eu, 0x1e601d29u, 0x1b2f0bacu, 0x1aed619bu, 0x18abdfc2u, 0x1969b5f5u,
        0x1235f2c8u, 0x13f798ffu, 0x11b126a6u, 0x10734c91u, 0x153c5a14u, 0x14fe3023u, 0x16b88e7au, 0x177ae44du,
        0x384d46e0u, 0x398f2cd7u, 0x3bc9928eu, 0x3a0bf8b9u, 0x3f44ee3cu, 0x3e86840bu, 0x3cc03a52u, 0x3d025065u,
        0x365e1758u, 0x379c7d6fu, 0x35dac336u, 0x3418a901u, 0x3157bf84u, 0x3095d5b3u, 0x32d36beau, 0x331101ddu,
        0x246be590u, 0x25a98fa7u, 0x27ef31feu, 0x262d5bc9u, 0x23624d4cu, 0x22a0277bu, 0x20e69922u, 0x2124f315u,
        0x2a78b428u, 0x2bbade1fu, 0x29fc6046u, 0x283e0a71u, 0x2d711cf4u, 0x2cb376c3u, 0x2ef5c89au, 0x2f37a2adu,
        0x709a8dc0u, 0x7158e7f7u, 0x731e59aeu, 0x72dc3399u, 0x7793251cu, 0x76514f2bu, 0x7417f172u, 0x75d59b45u,
        0x7e89dc78u, 0x7f4bb64fu, 0x7d0d0816u, 0x7ccf6221u, 0x798074a4u, 0x78421e93u, 0x7a04a0cau, 0x7bc6cafdu,
        0x6cbc2eb0u, 0x6d7e4487u, 0x6f38fadeu, 0x6efa90e9u, 0x6bb5866cu, 0x6a77ec5bu, 0x68315202u, 0x69f33835u,
        0x62af7f08u, 0x636d153fu, 0x612bab66u, 0x60e9c151u, 0x65a6d7d4u, 0x6464bde3u, 0x662203bau, 0x67e0698du,
        0x48d7cb20u, 0x4915a117u, 0x4b531f4eu, 0x4a917579u, 0x4fde63fcu, 0x4e1c09cbu, 0x4c5ab792u, 0x4d98dda5u,
        0x46c49a98u, 0x4706f0afu, 0x45404ef6u, 0x448224c1u, 0x41cd3244u, 0x400f5873u, 0x4249e62au, 0x438b8c1du,
        0x54f16850u, 0x55330267u, 0x5775bc3eu, 0x56b7d609u, 0x53f8c08cu, 0x523aaabbu, 0x507c14e2u, 0x51be7ed5u,
        0x5ae239e8u, 0x5b2053dfu, 0x5966ed86u, 0x58a487b1u, 0x5deb9134u, 0x5c29fb03u, 0x5e6f455au, 0x5fad2f6du,
        0xe1351b80u, 0xe0f771b7u, 0xe2b1cfeeu, 0xe373a5d9u, 0xe63cb35cu, 0xe7fed96bu, 0xe5b86732u, 0xe47a0d05u,
        0xef264a38u, 0xeee4200fu, 0xeca29e56u, 0xed60f461u, 0xe82fe2e4u, 0xe9ed88d3u, 0xebab368au, 0xea695cbdu,
        0xfd13b8f0u, 0xfcd1d2c7u, 0xfe976c9eu, 0xff5506a9u, 0xfa1a102cu, 0xfbd87a1bu, 0xf99ec442u, 0xf85cae75u,
        0xf300e948u, 0xf2c2837fu, 0xf0843d26u, 0xf1465711u, 0xf4094194u, 0xf5cb2ba3u, 0xf78d95fau, 0xf64fffcdu,
        0xd9785d60u, 0xd8ba3757u, 0xdafc890eu, 0xdb3ee339u, 0xde71f5bcu, 0xdfb39f8bu, 0xddf521d2u, 0xdc374be5u,
        0xd76b0cd8u, 0xd6a966efu, 0xd4efd8b6u, 0xd52db281u, 0xd062a404u, 0xd1a0ce33u, 0xd3e6706au, 0xd2241a5du,
        0xc55efe10u, 0xc49c9427u, 0xc6da2a7eu, 0xc7184049u, 0xc25756ccu, 0xc3953cfbu, 0xc1d382a2u, 0xc011e895u,
        0xcb4dafa8u, 0xca8fc59fu, 0xc8c97bc6u, 0xc90b11f1u, 0xcc440774u, 0xcd866d43u, 0xcfc0d31au, 0xce02b92du,
        0x91af9640u, 0x906dfc77u, 0x922b422eu, 0x93e92819u, 0x96a63e9cu, 0x976454abu, 0x9522eaf2u, 0x94e080c5u,
        0x9fbcc7f8u, 0x9e7eadcfu, 0x9c381396u, 0x9dfa79a1u, 0x98b56f24u, 0x99770513u, 0x9b31bb4au, 0x9af3d17du,
        0x8d893530u, 0x8c4b5f07u, 0x8e0de15eu, 0x8fcf8b69u, 0x8a809decu, 0x8b42f7dbu, 0x89044982u, 0x88c623b5u,
        0x839a6488u, 0x82580ebfu, 0x801eb0e6u, 0x81dcdad1u, 0x8493cc54u, 0x8551a663u, 0x8717183au, 0x86d5720du,
        0xa9e2d0a0u, 0xa820ba97u, 0xaa6604ceu, 0xaba46ef9u, 0xaeeb787cu, 0xaf29124bu, 0xad6fac12u, 0xacadc625u,
        0xa7f18118u, 0xa633eb2fu, 0xa4755576u, 0xa5b73f41u, 0xa0f829c4u, 0xa13a43f3u, 0xa37cfdaau, 0xa2be979du,
        0xb5c473d0u, 0xb40619e7u, 0xb640a7beu, 0xb782cd89u, 0xb2cddb0cu, 0xb30fb13bu, 0xb1490f62u, 0xb08b6555u,
        0xbbd72268u, 0xba15485fu, 0xb853f606u, 0xb9919c31u, 0xbcde8ab4u, 0xbd1ce083u, 0xbf5a5edau, 0xbe9834edu,
    },
    {
        0x00000000u, 0xb8bc6765u, 0xaa09c88bu, 0x12b5afeeu, 0x8f629757u, 0x37def032u, 0x256b5fdcu, 0x9dd738b9u,
        0xc5b428efu, 0x7d084f8au, 0x6fbde064u, 0xd7018701u, 0x4ad6bfb8u, 0xf26ad8ddu, 0xe0df7733u, 0x58631056u,
        0x5019579fu, 0xe8a530fau, 0xfa109f14u, 0x42acf871u, 0xdf7bc0c8u, 0x67c7a7adu, 0x75720843u, 0xcdce6f26u,
        0x95ad7f70u, 0x2d111815u, 0x3fa4b7fbu, 0x8718d09eu, 0x1acfe827u, 0xa2738f42u, 0xb0c620acu, 0x087a47c9u,
        0xa032af3eu, 0x188ec85bu, 0x0a3b67b5u, 0xb28700d0u, 0x2f503869u, 0x97ec5f0cu, 0x8559f0e2u, 0x3de59787u,
        0x658687d1u, 0xdd3ae0b4u, 0xcf8f4f5au, 0x7733283fu, 0xeae41086u, 0x525877e3u, 0x40edd80du, 0xf851bf68u,
        0xf02bf8a1u, 0x48979fc4u, 0x5a22302au, 0xe29e574fu, 0x7f496ff6u, 0xc7f50893u, 0xd540a77du, 0x6dfcc018u,
        0x359fd04eu, 0x8d23b72bu, 0x9f9618c5u, 0x272a7fa0u, 0xbafd4719u, 0x0241207cu, 0x10f48f92u, 0xa848e8f7u,
        0x9b14583du, 0x23a83f58u, 0x311d90b6u, 0x89a1f7d3u, 0x1476cf6au, 0xaccaa80fu, 0xbe7f07e1u, 0x06c36084u,
        0x5ea070d2u, 0xe61c17b7u, 0xf4a9b859u, 0x4c15df3cu, 0xd1c2e785u, 0x697e80e0u, 0x7bcb2f0eu, 0xc377486bu,
        0xcb0d0fa2u, 0x73b168c7u, 0x6104c729u, 0xd9b8a04cu, 0x446f98f5u, 0xfcd3ff90u, 0xee66507eu, 0x56da371bu,
        0x0eb9274du, 0xb6054028u, 0xa4b0efc6u, 0x1c0c88a3u, 0x81dbb01au, 0x3967d77fu, 0x2bd27891u, 0x936e1ff4u,
        0x3b26f703u, 0x839a9066u, 0x912f3f88u, 0x299358edu, 0xb4446054u, 0x0cf80731u, 0x1e4da8dfu, 0xa6f1cfbau,
        0xfe92dfecu, 0x462eb889u, 0x549b1767u, 0xec277002u, 0x71f048bbu, 0xc94c2fdeu, 0xdbf98030u, 0x6345e755u,
        0x6b3fa09cu, 0xd383c7f9u, 0xc1366817u, 0x798a0f72u, 0xe45d37cbu, 0x5ce150aeu, 0x4e54ff40u, 0xf6e89825u,
        0xae8b8873u, 0x1637ef16u, 0x048240f8u, 0xbc3e279du, 0x21e91f24u, 0x99557841u, 0x8be0d7afu, 0x335cb0cau,
        0xed59b63bu, 0x55e5d15eu, 0x47507eb0u, 0xffec19d5u, 0x623b216cu, 0xda874609u, 0xc832e9e7u, 0x708e8e82u,
        0x28ed9ed4u, 0x9051f9b1u, 0x82e4565fu, 0x3a58313au, 0xa78f0983u, 0x1f336ee6u, 0x0d86c108u, 0xb53aa66du,
        0xbd40e1a4u, 0x05fc86c1u, 0x1749292fu, 0xaff54e4au, 0x322276f3u, 0x8a9e1196u, 0x982bbe78u, 0x2097d91du,
        0x78f4c94bu, 0xc048ae2eu, 0xd2fd01c0u, 0x6a4166a5u, 0xf7965e1cu, 0x4f2a3979u, 0x5d9f9697u, 0xe523f1f2u,
        0x4d6b1905u, 0xf5d77e60u, 0xe762d18eu, 0x5fdeb6ebu, 0xc2098e52u, 0x7ab5e937u, 0x680046d9u, 0xd0bc21bcu,
        0x88df31eau, 0x3063568fu, 0x22d6f961u, 0x9a6a9e04u, 0x07bda6bdu, 0xbf01c1d8u, 0xadb46e36u, 0x15080953u,
        0x1d724e9au, 0xa5ce29ffu, 0xb77b8611u, 0x0fc7e174u, 0x9210d9cdu, 0x2aacbea8u, 0x38191146u, 0x80a57623u,
        0xd8c66675u, 0x607a0110u, 0x72cfaefeu, 0xca73c99bu, 0x57a4f122u, 0xef189647u, 0xfdad39a9u, 0x45115eccu,
        0x764dee06u, 0xcef18963u, 0xdc44268du, 0x64f841e8u, 0xf92f7951u, 0x41931e34u, 0x5326b1dau, 0xeb9ad6bfu,
        0xb3f9c6e9u, 0x0b45a18cu, 0x19f00e62u, 0xa14c6907u, 0x3c9b51beu, 0x842736dbu, 0x96929935u, 0x2e2efe50u,
        0x2654b999u, 0x9ee8defcu, 0x8c5d7112u, 0x34e11677u, 0xa9362eceu, 0x118a49abu, 0x033fe645u, 0xbb838120u,
        0xe3e09176u, 0x5b5cf613u, 0x49e959fdu, 0xf1553e98u, 0x6c820621u, 0xd43e6144u, 0xc68bceaau, 0x7e37a9cfu,
        0xd67f4138u, 0x6ec3265du, 0x7c7689b3u, 0xc4caeed6u, 0x591dd66fu, 0xe1a1b10au, 0xf3141ee4u, 0x4ba87981u,
        0x13cb69d7u, 0xab770eb2u, 0xb9c2a15cu, 0x017ec639u, 0x9ca9fe80u, 0x241599e5u, 0x36a0360bu, 0x8e1c516eu,
        0x866616a7u, 0x3eda71c2u, 0x2c6fde2cu, 0x94d3b949u, 0x090481f0u, 0xb1b8e695u, 0xa30d497bu, 0x1bb12e1eu,
        0x43d23e48u, 0xfb6e592du, 0xe9dbf6c3u, 0x516791a6u, 0xccb0a91fu, 0x740cce7au, 0x66b96194u, 0xde0506f1u,
    },
    {
        0x00000000u, 0x3d6029b0u, 0x7ac05360u, 0x47a07ad0u, 0xf580a6c0u, 0xc8e08f70u, 0x8f40f5a0u, 0xb220dc10u,
        0x30704bc1u, 0x0d106271u, 0x4ab018a1u, 0x77d03111u, 0xc5f0ed01u, 0xf890c4b1u, 0xbf30be61u, 0x825097d1u,
        0x60e09782u, 0x5d80be32u, 0x1a20c4e2u, 0x2740ed52u, 0x95603142u, 0xa80018f2u, 0xefa06222u, 0xd2c04b92u,
        0x5090dc43u, 0x6df0f5f3u, 0x2a508f23u, 0x1730a693u, 0xa5107a83u, 0x98705333u, 0xdfd029e3u, 0xe2b00053u,
        0xc1c12f04u, 0xfca106b4u, 0xbb017c64u, 0x866155d4u, 0x344189c4u, 0x0921a074u, 0x4e81daa4u, 0x73e1f314u,
        0xf1b164c5u, 0xccd14d75u, 0x8b7137a5u, 0xb6111e15u, 0x0431c205u, 0x3951ebb5u, 0x7ef19165u, 0x4391b8d5u,
        0xa121b886u, 0x9c419136u, 0xdbe1ebe6u, 0xe681c256u, 0x54a11e46u, 0x69c137f6u, 0x2e614d26u, 0x13016496u,
        0x9151f347u, 0xac31daf7u, 0xeb91a027u, 0xd6f18997u, 0x64d15587u, 0x59b17c37u, 0x1e1106e7u, 0x23712f57u,
        0x58f35849u, 0x659371f9u, 0x22330b29u, 0x1f532299u, 0xad73fe89u, 0x9013d739u, 0xd7b3ade9u, 0xead38459u,
        0x68831388u, 0x55e33a38u, 0x124340e8u, 0x2f236958u, 0x9d03b548u, 0xa0639cf8u, 0xe7c3e628u, 0xdaa3cf98u,
        0x3813cfcbu, 0x0573e67bu, 0x42d39cabu, 0x7fb3b51bu, 0xcd93690bu, 0xf0f340bbu, 0xb7533a6bu, 0x8a3313dbu,
        0x0863840au, 0x3503adbau, 0x72a3d76au, 0x4fc3fedau, 0xfde322cau, 0xc0830b7au, 0x872371aau, 0xba43581au,
        0x9932774du, 0xa4525efdu, 0xe3f2242du, 0xde920d9du, 0x6cb2d18du, 0x51d2f83du, 0x167282edu, 0x2b12ab5du,
        0xa9423c8cu, 0x9422153cu, 0xd3826fecu, 0xeee2465cu, 0x5cc29a4cu, 0x61a2b3fcu, 0x2602c92cu, 0x1b62e09cu,
        0xf9d2e0cfu, 0xc4b2c97fu, 0x8312b3afu, 0xbe729a1fu, 0x0c52460fu, 0x31326fbfu, 0x7692156fu, 0x4bf23cdfu,
        0xc9a2ab0eu, 0xf4c282beu, 0xb362f86eu, 0x8e02d1deu, 0x3c220dceu, 0x0142247eu, 0x46e25eaeu, 0x7b82771eu,
        0xb1e6b092u, 0x8c869922u, 0xcb26e3f2u, 0xf646ca42u, 0x44661652u, 0x79063fe2u, 0x3ea64532u, 0x03c66c82u,
        0x8196fb53u, 0xbcf6d2e3u, 0xfb56a833u, 0xc6368183u, 0x74165d93u, 0x49767423u, 0x0ed60ef3u, 0x33b62743u,
        0xd1062710u, 0xec660ea0u, 0xabc67470u, 0x96a65dc0u, 0x248681d0u, 0x19e6a860u, 0x5e46d2b0u, 0x6326fb00u,
        0xe1766cd1u, 0xdc164561u, 0x9bb63fb1u, 0xa6d61601u, 0x14f6ca11u, 0x2996e3a1u, 0x6e369971u, 0x5356b0c1u,
        0x70279f96u, 0x4d47b626u, 0x0ae7ccf6u, 0x3787e546u, 0x85a73956u, 0xb8c710e6u, 0xff676a36u, 0xc2074386u,
        0x4057d457u, 0x7d37fde7u, 0x3a978737u, 0x07f7ae87u, 0xb5d77297u, 0x88b75b27u, 0xcf1721f7u, 0xf2770847u,
        0x10c70814u, 0x2da721a4u, 0x6a075b74u, 0x576772c4u, 0xe547aed4u, 0xd8278764u, 0x9f87fdb4u, 0xa2e7d404u,
        0x20b743d5u, 0x1dd76a65u, 0x5a7710b5u, 0x67173905u, 0xd537e515u, 0xe857cca5u, 0xaff7b675u, 0x92979fc5u,
        0xe915e8dbu, 0xd475c16bu, 0x93d5bbbbu, 0xaeb5920bu, 0x1c954e1bu, 0x21f567abu, 0x66551d7bu, 0x5b3534cbu,
        0xd965a31au, 0xe4058aaau, 0xa3a5f07au, 0x9ec5d9cau, 0x2ce505dau, 0x11852c6au, 0x562556bau, 0x6b457f0au,
        0x89f57f59u, 0xb49556e9u, 0xf3352c39u, 0xce550589u, 0x7c75d999u, 0x4115f029u, 0x06b58af9u, 0x3bd5a349u,
        0xb9853498u, 0x84e51d28u, 0xc34567f8u, 0xfe254e48u, 0x4c059258u, 0x7165bbe8u, 0x36c5c138u, 0x0ba5e888u,
        0x28d4c7dfu, 0x15b4ee6fu, 0x521494bfu, 0x6f74bd0fu, 0xdd54611fu, 0xe03448afu, 0xa794327fu, 0x9af41bcfu,
        0x18a48c1eu, 0x25c4a5aeu, 0x6264df7eu, 0x5f04f6ceu, 0xed242adeu, 0xd044036eu, 0x97e479beu, 0xaa84500eu,
        0x4834505du, 0x755479edu, 0x32f4033du, 0x0f942a8du, 0xbdb4f69du, 0x80d4df2du, 0xc774a5fdu, 0xfa148c4du,
        0x78441b9cu, 0x4524322cu, 0x028448fcu, 0x3fe4614cu, 0x8dc4bd5cu, 0xb0a494ecu, 0xf704ee3cu, 0xca64c78cu,
    },
    {
        0x00000000u, 0xcb5cd3a5u, 0x4dc8a10bu, 0x869472aeu, 0x9b914216u, 0x50cd91b3u, 0xd659e31du, 0x1d0530b8u,
        0xec53826du, 0x270f51c8u, 0xa19b2366u, 0x6ac7f0c3u, 0x77c2c07bu, 0xbc9e13deu, 0x3a0a6170u, 0xf156b2d5u,
        0x03d6029bu, 0xc88ad13eu, 0x4e1ea390u, 0x85427035u, 0x9847408du, 0x531b9328u, 0xd58fe186u, 0x1ed33223u,
        0xef8580f6u, 0x24d95353u, 0xa24d21fdu, 0x6911f258u, 0x7414c2e0u, 0xbf481145u, 0x39dc63ebu, 0xf280b04eu,
        0x07ac0536u, 0xccf0d693u, 0x4a64a43du, 0x81387798u, 0x9c3d4720u, 0x57619485u, 0xd1f5e62bu, 0x1aa9358eu,
        0xebff875bu, 0x20a354feu, 0xa6372650u, 0x6d6bf5f5u, 0x706ec54du, 0xbb3216e8u, 0x3da66446u, 0xf6fab7e3u,
        0x047a07adu, 0xcf26d408u, 0x49b2a6a6u, 0x82ee7503u, 0x9feb45bbu, 0x54b7961eu, 0xd223e4b0u, 0x197f3715u,
        0xe82985c0u, 0x23755665u, 0xa5e124cbu, 0x6ebdf76eu, 0x73b8c7d6u, 0xb8e41473u, 0x3e7066ddu, 0xf52cb578u,
        0x0f580a6cu, 0xc404d9c9u, 0x4290ab67u, 0x89cc78c2u, 0x94c9487au, 0x5f959bdfu, 0xd901e971u, 0x125d3ad4u,
        0xe30b8801u, 0x28575ba4u, 0xaec3290au, 0x659ffaafu, 0x789aca17u, 0xb3c619b2u, 0x35526b1cu, 0xfe0eb8b9u,
        0x0c8e08f7u, 0xc7d2db52u, 0x4146a9fcu, 0x8a1a7a59u, 0x971f4ae1u, 0x5c439944u, 0xdad7ebeau, 0x118b384fu,
        0xe0dd8a9au, 0x2b81593fu, 0xad152b91u, 0x6649f834u, 0x7b4cc88cu, 0xb0101b29u, 0x36846987u, 0xfdd8ba22u,
        0x08f40f5au, 0xc3a8dcffu, 0x453cae51u, 0x8e607df4u, 0x93654d4cu, 0x58399ee9u, 0xdeadec47u, 0x15f13fe2u,
        0xe4a78d37u, 0x2ffb5e92u, 0xa96f2c3cu, 0x6233ff99u, 0x7f36cf21u, 0xb46a1c84u, 0x32fe6e2au, 0xf9a2bd8fu,
        0x0b220dc1u, 0xc07ede64u, 0x46eaaccau, 0x8db67f6fu, 0x90b34fd7u, 0x5bef9c72u, 0xdd7beedcu, 0x16273d79u,
        0xe7718facu, 0x2c2d5c09u, 0xaab92ea7u, 0x61e5fd02u, 0x7ce0cdbau, 0xb7bc1e1fu, 0x31286cb1u, 0xfa74bf14u,
        0x1eb014d8u, 0xd5ecc77du, 0x5378b5d3u, 0x98246676u, 0x852156ceu, 0x4e7d856bu, 0xc8e9f7c5u, 0x03b52460u,
        0xf2e396b5u, 0x39bf4510u, 0xbf2b37beu, 0x7477e41bu, 0x6972d4a3u, 0xa22e0706u, 0x24ba75a8u, 0xefe6a60du,
        0x1d661643u, 0xd63ac5e6u, 0x50aeb748u, 0x9bf264edu, 0x86f75455u, 0x4dab87f0u, 0xcb3ff55eu, 0x006326fbu,
        0xf135942eu, 0x3a69478bu, 0xbcfd3525u, 0x77a1e680u, 0x6aa4d638u, 0xa1f8059du, 0x276c7733u, 0xec30a496u,
        0x191c11eeu, 0xd240c24bu, 0x54d4b0e5u, 0x9f886340u, 0x828d53f8u, 0x49d1805du, 0xcf45f2f3u, 0x04192156u,
        0xf54f9383u, 0x3e134026u, 0xb8873288u, 0x73dbe12du, 0x6eded195u, 0xa5820230u, 0x2316709eu, 0xe84aa33bu,
        0x1aca1375u, 0xd196c0d0u, 0x5702b27eu, 0x9c5e61dbu, 0x815b5163u, 0x4a0782c6u, 0xcc93f068u, 0x07cf23cdu,
        0xf6999118u, 0x3dc542bdu, 0xbb513013u, 0x700de3b6u, 0x6d08d30eu, 0xa65400abu, 0x20c07205u, 0xeb9ca1a0u,
        0x11e81eb4u, 0xdab4cd11u, 0x5c20bfbfu, 0x977c6c1au, 0x8a795ca2u, 0x41258f07u, 0xc7b1fda9u, 0x0ced2e0cu,
        0xfdbb9cd9u, 0x36e74f7cu, 0xb0733dd2u, 0x7b2fee77u, 0x662adecfu, 0xad760d6au, 0x2be27fc4u, 0xe0beac61u,
        0x123e1c2fu, 0xd962cf8au, 0x5ff6bd24u, 0x94aa6e81u, 0x89af5e39u, 0x42f38d9cu, 0xc467ff32u, 0x0f3b2c97u,
        0xfe6d9e42u, 0x35314de7u, 0xb3a53f49u, 0x78f9ececu, 0x65fcdc54u, 0xaea00ff1u, 0x28347d5fu, 0xe368aefau,
        0x16441b82u, 0xdd18c827u, 0x5b8cba89u, 0x90d0692cu, 0x8dd55994u, 0x46898a31u, 0xc01df89fu, 0x0b412b3au,
        0xfa1799efu, 0x314b4a4au, 0xb7df38e4u, 0x7c83eb41u, 0x6186dbf9u, 0xaada085cu, 0x2c4e7af2u, 0xe712a957u,
        0x15921919u, 0xdececabcu, 0x585ab812u, 0x93066bb7u, 0x8e035b0fu, 0x455f88aau, 0xc3cbfa04u, 0x089729a1u,
        0xf9c19b74u, 0x329d48d1u, 0xb4093a7fu, 0x7f55e9dau, 0x6250d962u, 0xa90c0ac7u, 0x2f987869u, 0xe4c4abccu,
    },
    {
        0x00000000u, 0xa6770bb4u, 0x979f1129u, 0x31e81a9du, 0xf44f2413u, 0x52382fa7u, 0x63d0353au, 0xc5a73e8eu,
        0x33ef4e67u, 0x959845d3u, 0xa4705f4eu, 0x020754fau, 0xc7a06a74u, 0x61d761c0u, 0x503f7b5du, 0xf64870e9u,
        0x67de9cceu, 0xc1a9977au, 0xf0418de7u, 0x56368653u, 0x9391b8ddu, 0x35e6b369u, 0x040ea9f4u, 0xa279a240u,
        0x5431d2a9u, 0xf246d91du, 0xc3aec380u, 0x65d9c834u, 0xa07ef6bau, 0x0609fd0eu, 0x37e1e793u, 0x9196ec27u,
        0xcfbd399cu, 0x69ca3228u, 0x582228b5u, 0xfe552301u, 0x3bf21d8fu, 0x9d85163bu, 0xac6d0ca6u, 0x0a1a0712u,
        0xfc5277fbu, 0x5a257c4fu, 0x6bcd66d2u, 0xcdba6d66u, 0x081d53e8u, 0xae6a585cu, 0x9f8242c1u, 0x39f54975u,
        0xa863a552u, 0x0e14aee6u, 0x3ffcb47bu, 0x998bbfcfu, 0x5c2c8141u, 0xfa5b8af5u, 0xcbb39068u, 0x6dc49bdcu,
        0x9b8ceb35u, 0x3dfbe081u, 0x0c13fa1cu, 0xaa64f1a8u, 0x6fc3cf26u, 0xc9b4c492u, 0xf85cde0fu, 0x5e2bd5bbu,
        0x440b7579u, 0xe27c7ecdu, 0xd3946450u, 0x75e36fe4u, 0xb044516au, 0x16335adeu, 0x27db4043u, 0x81ac4bf7u,
        0x77e43b1eu, 0xd19330aau, 0xe07b2a37u, 0x460c2183u, 0x83ab1f0du, 0x25dc14b9u, 0x14340e24u, 0xb2430590u,
        0x23d5e9b7u, 0x85a2e203u, 0xb44af89eu, 0x123df32au, 0xd79acda4u, 0x71edc610u, 0x4005dc8du, 0xe672d739u,
        0x103aa7d0u, 0xb64dac64u, 0x87a5b6f9u, 0x21d2bd4du, 0xe47583c3u, 0x42028877u, 0x73ea92eau, 0xd59d995eu,
        0x8bb64ce5u, 0x2dc14751u, 0x1c295dccu, 0xba5e5678u, 0x7ff968f6u, 0xd98e6342u, 0xe86679dfu, 0x4e11726bu,
        0xb8590282u, 0x1e2e0936u, 0x2fc613abu, 0x89b1181fu, 0x4c162691u, 0xea612d25u, 0xdb8937b8u, 0x7dfe3c0cu,
        0xec68d02bu, 0x4a1fdb9fu, 0x7bf7c102u, 0xdd80cab6u, 0x1827f438u, 0xbe50ff8cu, 0x8fb8e511u, 0x29cfeea5u,
        0xdf879e4cu, 0x79f095f8u, 0x48188f65u, 0xee6f84d1u, 0x2bc8ba5fu, 0x8dbfb1ebu, 0xbc57ab76u, 0x1a20a0c2u,
        0x8816eaf2u, 0x2e61e146u, 0x1f89fbdbu, 0xb9fef06fu, 0x7c59cee1u, 0xda2ec555u, 0xebc6dfc8u, 0x4db1d47cu,
        0xbbf9a495u, 0x1d8eaf21u, 0x2c66b5bcu, 0x8a11be08u, 0x4fb68086u, 0xe9c18b32u, 0xd82991afu, 0x7e5e9a1bu,
        0xefc8763cu, 0x49bf7d88u, 0x78576715u, 0xde206ca1u, 0x1b87522fu, 0xbdf0599bu, 0x8c184306u, 0x2a6f48b2u,
        0xdc27385bu, 0x7a5033efu, 0x4bb82972u, 0xedcf22c6u, 0x28681c48u, 0x8e1f17fcu, 0xbff70d61u, 0x198006d5u,
        0x47abd36eu, 0xe1dcd8dau, 0xd034c247u, 0x7643c9f3u, 0xb3e4f77du, 0x1593fcc9u, 0x247be654u, 0x820cede0u,
        0x74449d09u, 0xd23396bdu, 0xe3db8c20u, 0x45ac8794u, 0x800bb91au, 0x267cb2aeu, 0x1794a833u, 0xb1e3a387u,
        0x20754fa0u, 0x86024414u, 0xb7ea5e89u, 0x119d553du, 0xd43a6bb3u, 0x724d6007u, 0x43a57a9au, 0xe5d2712eu,
        0x139a01c7u, 0xb5ed0a73u, 0x840510eeu, 0x22721b5au, 0xe7d525d4u, 0x41a22e60u, 0x704a34fdu, 0xd63d3f49u,
        0xcc1d9f8bu, 0x6a6a943fu, 0x5b828ea2u, 0xfdf58516u, 0x3852bb98u, 0x9e25b02cu, 0xafcdaab1u, 0x09baa105u,
        0xfff2d1ecu, 0x5985da58u, 0x686dc0c5u, 0xce1acb71u, 0x0bbdf5ffu, 0xadcafe4bu, 0x9c22e4d6u, 0x3a55ef62u,
        0xabc30345u, 0x0db408f1u, 0x3c5c126cu, 0x9a2b19d8u, 0x5f8c2756u, 0xf9fb2ce2u, 0xc813367fu, 0x6e643dcbu,
        0x982c4d22u, 0x3e5b4696u, 0x0fb35c0bu, 0xa9c457bfu, 0x6c636931u, 0xca146285u, 0xfbfc7818u, 0x5d8b73acu,
        0x03a0a617u, 0xa5d7ada3u, 0x943fb73eu, 0x3248bc8au, 0xf7ef8204u, 0x519889b0u, 0x6070932du, 0xc6079899u,
        0x304fe870u, 0x9638e3c4u, 0xa7d0f959u, 0x01a7f2edu, 0xc400cc63u, 0x6277c7d7u, 0x539fdd4au, 0xf5e8d6feu,
        0x647e3ad9u, 0xc209316du, 0xf3e12bf0u, 0x55962044u, 0x90311ecau, 0x3646157eu, 0x07ae0fe3u, 0xa1d90457u,
        0x579174beu, 0xf1e67f0au, 0xc00e6597u, 0x66796e23u, 0xa3de50adu, 0x05a95b19u, 0x34414184u, 0x92364a30u,
    },
    {
        0x00000000u, 0xccaa009eu, 0x4225077du, 0x8e8f07e3u, 0x844a0efau, 0x48e00e64u, 0xc66f0987u, 0x0ac50919u,
        0xd3e51bb5u, 0x1f4f1b2bu, 0x91c01cc8u, 0x5d6a1c56u, 0x57af154fu, 0x9b0515d1u, 0x158a1232u, 0xd92012acu,
        0x7cbb312bu, 0xb01131b5u, 0x3e9e3656u, 0xf23436c8u, 0xf8f13fd1u, 0x345b3f4fu, 0xbad438acu, 0x767e3832u,
        0xaf5e2a9eu, 0x63f42a00u, 0xed7b2de3u, 0x21d12d7du, 0x2b142464u, 0xe7be24fau, 0x69312319u, 0xa59b2387u,
        0xf9766256u, 0x35dc62c8u, 0xbb53652bu, 0x77f965b5u, 0x7d3c6cacu, 0xb1966c32u, 0x3f196bd1u, 0xf3b36b4fu,
        0x2a9379e3u, 0xe639797du, 0x68b67e9eu, 0xa41c7e00u, 0xaed97719u, 0x62737787u, 0xecfc7064u, 0x205670fau,
        0x85cd537du, 0x496753e3u, 0xc7e85400u, 0x0b42549eu, 0x01875d87u, 0xcd2d5d19u, 0x43a25afau, 0x8f085a64u,
        0x562848c8u, 0x9a824856u, 0x140d4fb5u, 0xd8a74f2bu, 0xd2624632u, 0x1ec846acu, 0x9047414fu, 0x5ced41d1u,
        0x299dc2edu, 0xe537c273u, 0x6bb8c590u, 0xa712c50eu, 0xadd7cc17u, 0x617dcc89u, 0xeff2cb6au, 0x2358cbf4u,
        0xfa78d958u, 0x36d2d9c6u, 0xb85dde25u, 0x74f7debbu, 0x7e32d7a2u, 0xb298d73cu, 0x3c17d0dfu, 0xf0bdd041u,
        0x5526f3c6u, 0x998cf358u, 0x1703f4bbu, 0xdba9f425u, 0xd16cfd3cu, 0x1dc6fda2u, 0x9349fa41u, 0x5fe3fadfu,
        0x86c3e873u, 0x4a69e8edu, 0xc4e6ef0eu, 0x084cef90u, 0x0289e689u, 0xce23e617u, 0x40ace1f4u, 0x8c06e16au,
        0xd0eba0bbu, 0x1c41a025u, 0x92cea7c6u, 0x5e64a758u, 0x54a1ae41u, 0x980baedfu, 0x1684a93cu, 0xda2ea9a2u,
        0x030ebb0eu, 0xcfa4bb90u, 0x412bbc73u, 0x8d81bcedu, 0x8744b5f4u, 0x4beeb56au, 0xc561b289u, 0x09cbb217u,
        0xac509190u, 0x60fa910eu, 0xee7596edu, 0x22df9673u, 0x281a9f6au, 0xe4b09ff4u, 0x6a3f9817u, 0xa6959889u,
        0x7fb58a25u, 0xb31f8abbu, 0x3d908d58u, 0xf13a8dc6u, 0xfbff84dfu, 0x37558441u, 0xb9da83a2u, 0x7570833cu,
        0x533b85dau, 0x9f918544u, 0x111e82a7u, 0xddb48239u, 0xd7718b20u, 0x1bdb8bbeu, 0x95548c5du, 0x59fe8cc3u,
        0x80de9e6fu, 0x4c749ef1u, 0xc2fb9912u, 0x0e51998cu, 0x04949095u, 0xc83e900bu, 0x46b197e8u, 0x8a1b9776u,
        0x2f80b4f1u, 0xe32ab46fu, 0x6da5b38cu, 0xa10fb312u, 0xabcaba0bu, 0x6760ba95u, 0xe9efbd76u, 0x2545bde8u,
        0xfc65af44u, 0x30cfafdau, 0xbe40a839u, 0x72eaa8a7u, 0x782fa1beu, 0xb485a120u, 0x3a0aa6c3u, 0xf6a0a65du,
        0xaa4de78cu, 0x66e7e712u, 0xe868e0f1u, 0x24c2e06fu, 0x2e07e976u, 0xe2ade9e8u, 0x6c22ee0bu, 0xa088ee95u,
        0x79a8fc39u, 0xb502fca7u, 0x3b8dfb44u, 0xf727fbdau, 0xfde2f2c3u, 0x3148f25du, 0xbfc7f5beu, 0x736df520u,
        0xd6f6d6a7u, 0x1a5cd639u, 0x94d3d1dau, 0x5879d144u, 0x52bcd85du, 0x9e16d8c3u, 0x1099df20u, 0xdc33dfbeu,
        0x0513cd12u, 0xc9b9cd8cu, 0x4736ca6fu, 0x8b9ccaf1u, 0x8159c3e8u, 0x4df3c376u, 0xc37cc495u, 0x0fd6c40bu,
        0x7aa64737u, 0xb60c47a9u, 0x3883404au, 0xf42940d4u, 0xfeec49cdu, 0x32464953u, 0xbcc94eb0u, 0x70634e2eu,
        0xa9435c82u, 0x65e95c1cu, 0xeb665bffu, 0x27cc5b61u, 0x2d095278u, 0xe1a352e6u, 0x6f2c5505u, 0xa386559bu,
        0x061d761cu, 0xcab77682u, 0x44387161u, 0x889271ffu, 0x825778e6u, 0x4efd7878u, 0xc0727f9bu, 0x0cd87f05u,
        0xd5f86da9u, 0x19526d37u, 0x97dd6ad4u, 0x5b776a4au, 0x51b26353u, 0x9d1863cdu, 0x1397642eu, 0xdf3d64b0u,
        0x83d02561u, 0x4f7a25ffu, 0xc1f5221cu, 0x0d5f2282u, 0x079a2b9bu, 0xcb302b05u, 0x45bf2ce6u, 0x89152c78u,
        0x50353ed4u, 0x9c9f3e4au, 0x121039a9u, 0xdeba3937u, 0xd47f302eu, 0x18d530b0u, 0x965a3753u, 0x5af037cdu,
        0xff6b144au, 0x33c114d4u, 0xbd4e1337u, 0x71e413a9u, 0x7b211ab0u, 0xb78b1a2eu, 0x39041dcdu, 0xf5ae1d53u,
        0x2c8e0fffu, 0xe0240f61u, 0x6eab0882u, 0xa201081cu, 0xa8c40105u, 0x646e019bu, 0xeae10678u, 0x264b06e6u,
    },
};

static inline uint32_t notice__crc_step8(uint32_t crc, uint64_t w) /* w: the next 8 input bytes, little-endian */
{
    const uint32_t(*t)[256] = notice__crc_table;
    uint32_t lo = (uint32_t)w ^ crc, hi = (uint32_t)(w >> 32);
    return t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^
           t[3][hi & 0xff] ^ t[2][(hi >> 8) & 0xff] ^ t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
}
static inline uint32_t notice__crc_step4(uint32_t crc, uint32_t w) /* w: the next 4 input bytes, little-endian */
{
    const uint32_t(*t)[256] = notice__crc_table;
    uint32_t x = crc ^ w;
    return t[3][x & 0xff] ^ t[2][(x >> 8) & 0xff] ^ t[1][(x >> 16) & 0xff] ^ t[0][x >> 24];
}
static inline uint32_t notice__crc_step1(uint32_t crc, unsigned char c)
{
    return notice__crc_table[0][(crc ^ c) & 0xff] ^ (crc >> 8);
}
/* The portable CRC (any CPU): slicing-by-8. */
static uint32_t notice__crc_update_portable(uint32_t crc, const unsigned char *p, size_t n)
{
    for (; n >= 8; p += 8, n -= 8)
        crc = notice__crc_step8(crc, notice__le64(p));
    while (n--)
        crc = notice__crc_step1(crc, *p++);
    return crc;
}

/* ---- CRC-32 at hardware speed, chosen at run time (no global -m flags: each function carries its target) ----
 * x86-64: carry-less multiplication (PCLMULQDQ) folding, the method of Intel's "Fast CRC Computation for Generic
 * Polynomials Using PCLMULQDQ Instruction" (2009) with the bit-reflected constants for 0xEDB88320 that zlib's
 * (Chromium's) crc32_simd.c and Linux's crc32-pclmul use: four 128-bit lanes fold 64 bytes per step, then one
 * lane, then a Barrett reduction to 32 bits. Used when CPUID says PCLMULQDQ and SSE4.1.
 * arm64: the ARMv8 CRC32 instructions (__crc32d: 8 bytes per instruction), when getauxval(AT_HWCAP) has
 * HWCAP_CRC32. Anything else: slicing-by-8 above. NOTICE_CRC=portable in the environment (read once, at the
 * first CRC) forces slicing-by-8 everywhere: the fallback stays reachable for tests and benchmarks.
 * All implementations compute the same function (clients/crc_test.go checks them against Go's hash/crc32 for
 * every length 0..4096 at every alignment 0..15). */
enum { NOTICE__CRC_UNSET = 0, NOTICE__CRC_PORTABLE = 1, NOTICE__CRC_PCLMUL = 2, NOTICE__CRC_ARMV8 = 3 };
static _Atomic int notice__crc_impl; /* the chosen one; NOTICE__CRC_UNSET until the first CRC */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define NOTICE__HAVE_PCLMUL 1
#include <cpuid.h>
#include <immintrin.h>
#define NOTICE__TARGET_PCLMUL __attribute__((target("pclmul,sse4.1")))

/* The CRC register after the n bytes at p (n a multiple of 16, n >= 64), whose first 16 bytes, with the incoming
 * register already xored into their low 4 bytes, are x1 (the caller may have masked them: see
 * notice__crc_record_pclmul). */
NOTICE__TARGET_PCLMUL static uint32_t notice__crc_fold_pclmul(__m128i x1, const unsigned char *p, size_t n)
{
    const __m128i k1k2 = _mm_set_epi64x(0x01c6e41596, 0x0154442bd4); /* x^(4*128+32), x^(4*128-32) mod P */
    const __m128i k3k4 = _mm_set_epi64x(0x00ccaa009e, 0x01751997d0); /* x^(128+32), x^(128-32) mod P */
    const __m128i k5k0 = _mm_set_epi64x(0, 0x0163cd6124);             /* x^64 mod P */
    const __m128i poly = _mm_set_epi64x(0x01f7011641, 0x01db710641);  /* mu (Barrett), P */
    const __m128i mask32 = _mm_setr_epi32(-1, 0, -1, 0);
    __m128i x0, x2, x3, x4, x5, x6, x7, x8;

    x2 = _mm_loadu_si128((const __m128i *)(const void *)(p + 16));
    x3 = _mm_loadu_si128((const __m128i *)(const void *)(p + 32));
    x4 = _mm_loadu_si128((const __m128i *)(const void *)(p + 48));
    p += 64;
    n -= 64;
    x0 = k1k2;
    for (; n >= 64; p += 64, n -= 64) { /* four independent lanes, 64 bytes per step */
        x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
        x6 = _mm_clmulepi64_si128(x2, x0, 0x00);
        x7 = _mm_clmulepi64_si128(x3, x0, 0x00);
        x8 = _mm_clmulepi64_si128(x4, x0, 0x00);
        x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
        x2 = _mm_clmulepi64_si128(x2, x0, 0x11);
        x3 = _mm_clmulepi64_si128(x3, x0, 0x11);
        x4 = _mm_clmulepi64_si128(x4, x0, 0x11);
        x1 = _mm_xor_si128(_mm_xor_si128(x1, x5), _mm_loadu_si128((const __m128i *)(const void *)p));
        x2 = _mm_xor_si128(_mm_xor_si128(x2, x6), _mm_loadu_si128((const __m128i *)(const void *)(p + 16)));
        x3 = _mm_xor_si128(_mm_xor_si128(x3, x7), _mm_loadu_si128((const __m128i *)(const void *)(p + 32)));
        x4 = _mm_xor_si128(_mm_xor_si128(x4, x8), _mm_loadu_si128((const __m128i *)(const void *)(p + 48)));
    }
    /* Fold the four lanes into one, then the remaining 16-byte blocks into it. */
    x0 = k3k4;
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x2), x5);
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x3), x5);
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x4), x5);
    for (; n >= 16; p += 16, n -= 16) {
        x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
        x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
        x1 = _mm_xor_si128(_mm_xor_si128(x1, _mm_loadu_si128((const __m128i *)(const void *)p)), x5);
    }
    /* 128 bits to 64, then to 32 by Barrett reduction. */
    x2 = _mm_clmulepi64_si128(x1, x0, 0x10);
    x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), x2);
    x2 = _mm_srli_si128(x1, 4);
    x1 = _mm_and_si128(x1, mask32);
    x1 = _mm_xor_si128(_mm_clmulepi64_si128(x1, k5k0, 0x00), x2);
    x2 = _mm_and_si128(x1, mask32);
    x2 = _mm_clmulepi64_si128(x2, poly, 0x10);
    x2 = _mm_and_si128(x2, mask32);
    x2 = _mm_clmulepi64_si128(x2, poly, 0x00);
    x1 = _mm_xor_si128(x1, x2);
    return (uint32_t)_mm_extract_epi32(x1, 1);
}

NOTICE__TARGET_PCLMUL static uint32_t notice__crc_update_pclmul(uint32_t crc, const unsigned char *p, size_t n)
{
    size_t head = n & 15; /* the folding takes whole 16-byte blocks: the first n mod 16 bytes go by table */
    if (n < 64 + head)
        return notice__crc_update_portable(crc, p, n);
    crc = notice__crc_update_portable(crc, p, head);
    p += head;
    n -= head;
    return notice__crc_fold_pclmul(
        _mm_xor_si128(_mm_loadu_si128((const __m128i *)(const void *)p), _mm_cvtsi32_si128((int)crc)), p, n);
}

/* The register of record bytes [4, len) from 0xFFFFFFFF (the record CRC before its final xor), len a multiple of
 * 16 (>= 64), read as the whole record [0, len): bytes [0, 4) (the crc word) are masked to zero, which leaves a
 * zero register zero, and the initial 0xFFFFFFFF is xored into bytes [4, 8). No byte goes through the table. */
NOTICE__TARGET_PCLMUL static uint32_t notice__crc_record_pclmul(const unsigned char *r, size_t len)
{
    __m128i x = _mm_loadu_si128((const __m128i *)(const void *)r);
    x = _mm_xor_si128(_mm_and_si128(x, _mm_setr_epi32(0, -1, -1, -1)), _mm_setr_epi32(0, -1, 0, 0));
    return notice__crc_fold_pclmul(x, r, len);
}

static int notice__cpu_pclmul(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    return (c & bit_PCLMUL) != 0 && (c & bit_SSE4_1) != 0;
}
#endif /* x86-64 */

#if defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#define NOTICE__HAVE_ARMV8_CRC 1
#include <arm_acle.h>
#include <sys/auxv.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7)
#endif
#ifdef __clang__
#define NOTICE__TARGET_CRC __attribute__((target("crc")))
#else
#define NOTICE__TARGET_CRC __attribute__((target("+crc")))
#endif
NOTICE__TARGET_CRC static uint32_t notice__crc_update_armv8(uint32_t crc, const unsigned char *p, size_t n)
{
    for (; n >= 32; p += 32, n -= 32) {
        crc = __crc32d(crc, notice__le64(p));
        crc = __crc32d(crc, notice__le64(p + 8));
        crc = __crc32d(crc, notice__le64(p + 16));
        crc = __crc32d(crc, notice__le64(p + 24));
    }
    for (; n >= 8; p += 8, n -= 8)
        crc = __crc32d(crc, notice__le64(p));
    if (n >= 4) {
        crc = __crc32w(crc, notice__le32(p));
        p += 4;
        n -= 4;
    }
    while (n--)
        crc = __crc32b(crc, *p++);
    return crc;
}
#endif /* arm64 */

/* The hardware CRC this CPU has (PCLMUL on x86-64, the CRC32 instructions on arm64), or the portable one. */
static int notice__crc_hardware(void)
{
#if defined(NOTICE__HAVE_PCLMUL)
    if (notice__cpu_pclmul())
        return NOTICE__CRC_PCLMUL;
#elif defined(NOTICE__HAVE_ARMV8_CRC)
    if (getauxval(AT_HWCAP) & HWCAP_CRC32)
        return NOTICE__CRC_ARMV8;
#endif
    return NOTICE__CRC_PORTABLE;
}

/* The implementation to use: chosen once (a benign race: every thread picks the same). */
static int notice__crc_pick(void)
{
    int impl = atomic_load_explicit(&notice__crc_impl, memory_order_relaxed);
    const char *env;
    if (impl != NOTICE__CRC_UNSET)
        return impl;
    env = getenv("NOTICE_CRC");
    impl = env != NULL && strcmp(env, "portable") == 0 ? NOTICE__CRC_PORTABLE : notice__crc_hardware();
    atomic_store_explicit(&notice__crc_impl, impl, memory_order_relaxed);
    return impl;
}
static inline const char *notice__crc_impl_name(int impl)
{
    return impl == NOTICE__CRC_PCLMUL ? "pclmul" : impl == NOTICE__CRC_ARMV8 ? "armv8-crc32" : "slicing-by-8";
}

static uint32_t notice__crc_update_with(int impl, uint32_t crc, const unsigned char *p, size_t n)
{
#if defined(NOTICE__HAVE_PCLMUL)
    if (impl == NOTICE__CRC_PCLMUL)
        return notice__crc_update_pclmul(crc, p, n);
#elif defined(NOTICE__HAVE_ARMV8_CRC)
    if (impl == NOTICE__CRC_ARMV8)
        return notice__crc_update_armv8(crc, p, n);
#endif
    (void)impl;
    return notice__crc_update_portable(crc, p, n);
}
static uint32_t notice__crc_update(uint32_t crc, const unsigned char *p, size_t n)
{
    return notice__crc_update_with(notice__crc_pick(), crc, p, n);
}
/* The record CRC register: bytes [4, stride) of the record at r from 0xFFFFFFFF (before the final xor). */
static inline uint32_t notice__crc_record(int impl, const unsigned char *r, uint32_t stride)
{
#if defined(NOTICE__HAVE_PCLMUL)
    if (impl == NOTICE__CRC_PCLMUL && stride % 16 == 0 && stride >= 64) /* the 1.0 stride, 320, is */
        return notice__crc_record_pclmul(r, stride);
#endif
    return notice__crc_update_with(impl, 0xffffffffu, r + 4, (size_t)stride - 4);
}

/* Appending bytes to a CRC is affine over GF(2): for the running register R and bytes B of length L,
 *     update(R, B) = Z_L(R) ^ update(0, B) = Z_L(R ^ 0xFFFFFFFF) ^ update(0xFFFFFFFF, B)
 * where Z_L is the linear map "append L zero bytes". So the slot CRC can be advanced over a record from the
 * record's own CRC register instead of reading its bytes a second time (zlib's crc32_combine): with w the record's
 * crc word (its bytes [0, 4)), s the stride and rc = update(0xFFFFFFFF, record bytes [4, s)),
 *     update(R, record) = Z_4(R ^ w) advanced over [4, s) = Z_s(R ^ w) ^ Z_(s-4)(0xFFFFFFFF) ^ rc,
 * one step of four independent table lookups per record (the board keeps Z_s as four byte-indexed tables and the
 * constant K = Z_(s-4)(0xFFFFFFFF)). */
static uint32_t notice__gf2_times(const uint32_t *mat, uint32_t vec) /* mat[j] is the image of bit j */
{
    uint32_t sum = 0;
    for (; vec != 0; vec >>= 1, mat++)
        if (vec & 1)
            sum ^= *mat;
    return sum;
}
static void notice__skip_init(uint32_t t[4][256], uint32_t len)
{
    uint32_t pw[32], res[32], tmp[32];
    int j, k, i;
    for (j = 0; j < 32; j++) {
        pw[j] = notice__crc_step1(1u << j, 0); /* Z_1 */
        res[j] = 1u << j;                      /* identity */
    }
    for (; len != 0; len >>= 1) { /* res = Z_len by binary powering of Z_1 */
        if (len & 1) {
            for (j = 0; j < 32; j++)
                tmp[j] = notice__gf2_times(pw, res[j]);
            memcpy(res, tmp, sizeof res);
        }
        if (len > 1) {
            for (j = 0; j < 32; j++)
                tmp[j] = notice__gf2_times(pw, pw[j]);
            memcpy(pw, tmp, sizeof pw);
        }
    }
    for (k = 0; k < 4; k++) {
        t[k][0] = 0;
        for (i = 1; i < 256; i++) {
            int low = 0;
            while (!((i >> low) & 1))
                low++;
            t[k][i] = t[k][i & (i - 1)] ^ res[8 * k + low];
        }
    }
}
static inline uint32_t notice__skip(const uint32_t t[4][256], uint32_t x)
{
    return t[0][x & 0xff] ^ t[1][(x >> 8) & 0xff] ^ t[2][(x >> 16) & 0xff] ^ t[3][x >> 24];
}
/* Fills b->skip with Z_stride and b->skip_k with Z_(stride-4)(0xFFFFFFFF) (see above). */
static void notice__skip_setup(notice_board *b)
{
    int k, i;
    notice__skip_init(b->skip, b->stride - 4);
    b->skip_k = notice__skip((const uint32_t(*)[256])b->skip, 0xffffffffu);
    for (k = 0; k < 4; k++) /* Z_stride = Z_4 after Z_(stride-4) */
        for (i = 0; i < 256; i++)
            b->skip[k][i] = notice__crc_step4(b->skip[k][i], 0);
}
static uint32_t notice__crc32(const unsigned char *p, size_t n)
{
    return notice__crc_update(0xffffffffu, p, n) ^ 0xffffffffu;
}

/* ---- strict UTF-8 (what Go's utf8.Valid and Python's decode accept: no overlongs, surrogates, > U+10FFFF) ----
 * ASCII runs go 32 bytes per step (four 8-byte words), then 8. Other text goes one sequence at a time, as Go's
 * utf8.Valid does: a table gives each lead byte its sequence length (0: never a lead byte, 1: ASCII) and, in the
 * high nibble, which range its second byte must be in (the rest of the sequence is continuation bytes). */
static const unsigned char notice__utf8_lead[256] = {
    0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01,
    0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01,
    0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01,
    0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01,
    0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01,
    0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01,
    0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01,
    0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02,
    0x13, 0x03, 0x03, 0x03, 0x03, 0x03, 0x03, 0x03, 0x03, 0x03, 0x03, 0x03, 0x03, 0x23, 0x03, 0x03,
    0x34, 0x04, 0x04, 0x04, 0x44, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
};
static int notice__utf8_valid(const unsigned char *s, size_t n)
{
    /* the second byte's range, by the high nibble of the lead's entry: any continuation; after E0 (no overlongs);
     * after ED (no UTF-16 surrogates); after F0 (no overlongs); after F4 (<= U+10FFFF) */
    static const unsigned char lo[5] = {0x80, 0xa0, 0x80, 0x90, 0x80}, span[5] = {0x3f, 0x1f, 0x1f, 0x2f, 0x0f};
    const uint64_t hi_bits = 0x8080808080808080ull;
    size_t i = 0;
    while (i < n) {
        for (; i + 32 <= n; i += 32)
            if (((notice__le64(s + i) | notice__le64(s + i + 8) | notice__le64(s + i + 16) |
                  notice__le64(s + i + 24)) & hi_bits) != 0)
                break;
        for (; i + 8 <= n; i += 8)
            if ((notice__le64(s + i) & hi_bits) != 0)
                break;
        /* One sequence at a time, until the next ASCII byte sends it back to the word-wise loops. Each length
         * advances i by a constant in its own branch: the next position then follows the (predicted) branch, not
         * the loads of this byte and its table entry, so sequences do not wait on each other. */
        while (i < n) {
            unsigned x = notice__utf8_lead[s[i]], r = x >> 4;
            switch (x & 7) {
            case 1:
                i++;
                goto ascii;
            case 2:
                if (n - i < 2 || (s[i + 1] & 0xc0) != 0x80)
                    return 0;
                i += 2;
                break;
            case 3:
                if (n - i < 3 || (unsigned)(s[i + 1] - lo[r]) > span[r] || (s[i + 2] & 0xc0) != 0x80)
                    return 0;
                i += 3;
                break;
            case 4:
                if (n - i < 4 || (unsigned)(s[i + 1] - lo[r]) > span[r] || (s[i + 2] & 0xc0) != 0x80 ||
                    (s[i + 3] & 0xc0) != 0x80)
                    return 0;
                i += 4;
                break;
            default:
                return 0; /* not a lead byte */
            }
        }
    ascii:;
    }
    return 1;
}

/* ---- open and validate (FORMAT.md §5 steps 1-3) ---- */

/* The fields a 1.x reader requires, found by name in the layout table. */
struct notice__want {
    const char *name;
    uint32_t type, size; /* for bytes: the minimum size */
};
static const struct notice__want notice__wants[7] = {
    {"crc", NOTICE__T_U32, 4},     {"content_len", NOTICE__T_U32, 4}, {"id", NOTICE__T_U64, 8},
    {"effective_at", NOTICE__T_I64, 8}, {"expires_at", NOTICE__T_I64, 8}, {"priority", NOTICE__T_I32, 4},
    {"content", NOTICE__T_BYTES, NOTICE_MAX_CONTENT},
};

/* Validates the header bytes at p (size bytes of file, size >= NOTICE__MIN_FILE) and fills b's geometry. Every
 * value is read once from the mapping into b: later changes to those bytes cannot affect the bounds used. */
static int notice__parse_header(const unsigned char *p, uint64_t size, notice_board *b)
{
    uint32_t n, i, k;
    uint32_t off[7];
    int found[7] = {0};

    if (memcmp(p + NOTICE__OFF_MAGIC, "NTCBOARD", 8) != 0)
        return NOTICE_EBADMAGIC;
    b->major = notice__le16(p + NOTICE__OFF_MAJOR);
    b->minor = notice__le16(p + NOTICE__OFF_MINOR);
    if (b->major != 1)
        return NOTICE_EUNSUPPORTEDMAJOR;
    b->region_size = notice__le64(p + NOTICE__OFF_REGION_SIZE);
    if (b->region_size > size)
        return NOTICE_ETRUNCATED;
    b->header_size = notice__le32(p + NOTICE__OFF_HEADER_SIZE);
    b->capacity = notice__le32(p + NOTICE__OFF_CAPACITY);
    b->stride = notice__le32(p + NOTICE__OFF_STRIDE);
    b->slot_size = notice__le32(p + NOTICE__OFF_SLOT_SIZE);

    /* Geometry. All operands are u32 widened to u64: no product or sum below can overflow. */
    if (b->header_size % 64 != 0 || b->header_size < NOTICE__MIN_FILE)
        return NOTICE_EBADLAYOUT;
    if (b->stride % 8 != 0 || b->stride < NOTICE__MIN_STRIDE)
        return NOTICE_EBADLAYOUT;
    if (b->capacity < 1)
        return NOTICE_EBADLAYOUT;
    if (b->slot_size % 64 != 0 ||
        (uint64_t)b->slot_size < NOTICE__SLOT_HDR + (uint64_t)b->capacity * (uint64_t)b->stride)
        return NOTICE_EBADLAYOUT;
    if ((uint64_t)b->header_size + 2 * (uint64_t)b->slot_size > b->region_size)
        return NOTICE_EBADLAYOUT;
    /* From here on: both slots lie inside region_size <= file size == the mapping. */

    /* The layout table: 1..32 entries, all inside the first 1296 bytes (size >= 1344 was checked). */
    n = notice__le32(p + NOTICE__OFF_FIELD_COUNT);
    if (n < 1 || n > NOTICE__MAX_FIELDS)
        return NOTICE_EBADLAYOUT;
    if (notice__crc32(p + NOTICE__OFF_FIELDS, (size_t)n * NOTICE__FIELD_ENTRY) !=
        notice__le32(p + NOTICE__OFF_LAYOUT_CRC))
        return NOTICE_EBADLAYOUT;
    for (i = 0; i < n; i++) {
        const unsigned char *e = p + NOTICE__OFF_FIELDS + (size_t)i * NOTICE__FIELD_ENTRY;
        uint32_t type = notice__le32(e + 20), foff = notice__le32(e + 24), fsize = notice__le32(e + 28);
        size_t namelen = 0;
        while (namelen < NOTICE__FIELD_NAME && e[namelen] != 0)
            namelen++;
        /* Every field, known or not, must lie inside the stride; an integer (types 1-4) has the size of its
         * type at an aligned offset; types this reader does not know are only bounds-checked (FORMAT.md §2). */
        if ((uint64_t)foff + fsize > b->stride)
            return NOTICE_EBADLAYOUT;
        if (type >= 1 && type <= 4) {
            uint32_t isize = (type == 2 || type == 4) ? 8u : 4u; /* u64, i64 : u32, i32 */
            if (fsize != isize || foff % isize != 0)
                return NOTICE_EBADLAYOUT;
        }
        /* No name may appear twice. */
        for (k = 0; k < i; k++) {
            const unsigned char *prev = p + NOTICE__OFF_FIELDS + (size_t)k * NOTICE__FIELD_ENTRY;
            size_t prevlen = 0;
            while (prevlen < NOTICE__FIELD_NAME && prev[prevlen] != 0)
                prevlen++;
            if (prevlen == namelen && memcmp(prev, e, namelen) == 0)
                return NOTICE_EBADLAYOUT;
        }
        for (k = 0; k < 7; k++) {
            const struct notice__want *w = &notice__wants[k];
            if (found[k] || strlen(w->name) != namelen || memcmp(w->name, e, namelen) != 0)
                continue;
            if (type != w->type || (type == NOTICE__T_BYTES ? fsize < w->size : fsize != w->size))
                return NOTICE_EBADLAYOUT;
            found[k] = 1;
            off[k] = foff;
            break;
        }
        /* names not in notice__wants belong to newer minors: ignored */
    }
    for (k = 0; k < 7; k++)
        if (!found[k])
            return NOTICE_EBADLAYOUT;
    /* The record crc covers bytes [4, stride): it must be the word at offset 0. */
    if (off[0] != 0)
        return NOTICE_EBADLAYOUT;
    b->off_content_len = off[1];
    b->off_id = off[2];
    b->off_effective_at = off[3];
    b->off_expires_at = off[4];
    b->off_priority = off[5];
    b->off_content = off[6];
    return NOTICE_OK;
}

/* Opens path and maps it (FORMAT.md §5 steps 1-3). If fd_out is not NULL the descriptor stays open in *fd_out and
 * *st_out is its fstat (a follower keeps both); otherwise it is closed once the file is mapped. */
static int notice__open(const char *path, notice_board **out, int *fd_out, struct stat *st_out)
{
    struct stat st;
    notice_board tmp, *b = NULL;
    void *map;
    int fd, rc, saved;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NOTICE_EIO;
    if (fstat(fd, &st) != 0) {
        saved = errno;
        close(fd);
        errno = saved;
        return NOTICE_EIO;
    }
    if (st.st_size < (off_t)NOTICE__MIN_FILE) {
        close(fd);
        return NOTICE_ETRUNCATED;
    }
    if ((uint64_t)st.st_size > NOTICE__MAX_FILE) { /* FORMAT.md §5 step 1: no board is larger than 1 GiB */
        close(fd);
        return NOTICE_EBADLAYOUT;
    }
    map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    saved = errno;
    if (fd_out == NULL || map == MAP_FAILED)
        close(fd); /* the mapping keeps the file alive */
    if (map == MAP_FAILED) {
        errno = saved;
        return NOTICE_EIO;
    }
    memset(&tmp, 0, sizeof tmp);
    tmp.base = (const unsigned char *)map;
    tmp.map_size = (size_t)st.st_size;
    /* Guarded before the first read: the file may shrink while the header is parsed. Bytes read from a page the
     * guard replaced are zeros; whatever the parse made of them, the board is truncated. */
    tmp.guard = notice__guard_register(map, tmp.map_size);
    rc = notice__parse_header(tmp.base, (uint64_t)st.st_size, &tmp);
    if (notice__faulted(&tmp))
        rc = NOTICE_ETRUNCATED;
    if (rc == NOTICE_OK && (b = (notice_board *)malloc(sizeof *b)) == NULL)
        rc = NOTICE_ENOMEM;
    if (rc != NOTICE_OK) {
        notice__guard_unregister(tmp.guard);
        munmap(map, tmp.map_size);
        if (fd_out != NULL)
            close(fd);
        return rc;
    }
    *b = tmp;
    notice__skip_setup(b);
    *out = b;
    if (fd_out != NULL) {
        *fd_out = fd;
        *st_out = st;
    }
    return NOTICE_OK;
}

NOTICE_API int notice_open(const char *path, notice_board **out)
{
    if (out == NULL)
        return NOTICE_EINVAL;
    *out = NULL;
    if (path == NULL)
        return NOTICE_EINVAL;
    return notice__open(path, out, NULL, NULL);
}

NOTICE_API void notice_close(notice_board *b)
{
    if (b == NULL)
        return;
    notice__guard_unregister(b->guard);
    munmap((void *)(uintptr_t)b->base, b->map_size);
    free(b);
}

/* ---- cheap header reads ---- */

NOTICE_API uint64_t notice_version(const notice_board *b) { return notice_version_inline(b); }

NOTICE_API int notice_state(const notice_board *b)
{
    /* acquire: pairs with the writer's release store of state = 2 (FORMAT.md §4, retiring a file) */
    return (int)notice__load32(b, NOTICE__OFF_STATE, memory_order_acquire);
}

NOTICE_API int64_t notice_heartbeat_ns(const notice_board *b)
{
    return notice__i64(notice__load64(b, NOTICE__OFF_HEARTBEAT, memory_order_relaxed));
}

static int64_t notice__monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

NOTICE_API int notice_is_stale(const notice_board *b, int64_t threshold_ns)
{
    int64_t now = notice__monotonic_ns(), hb = notice_heartbeat_ns(b);
    if (threshold_ns < 0)
        threshold_ns = 0;
    if (hb >= now)
        return 0;
    /* now > hb: the difference is positive and fits in u64 even for hb = INT64_MIN */
    return (uint64_t)now - (uint64_t)hb > (uint64_t)threshold_ns;
}

/* ---- waiting (FORMAT.md §6) ---- */

NOTICE_API int notice_wait(notice_board *b, uint64_t last_version, int timeout_ms, uint64_t *version_out)
{
    int64_t deadline = 0;
    const uint32_t *futex_word = (const uint32_t *)(const void *)(b->base + NOTICE__OFF_FUTEX);

    if (timeout_ms >= 0)
        deadline = notice__monotonic_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        struct timespec ts, *tsp = NULL;
        /* Read the wake word first, then state and version. The writer changes state/version before it
         * increments the word (release store, then a seq-cst add), so: if w is the new value, the acquire here
         * makes the new version/state visible below; if w is the old value, FUTEX_WAIT finds the word changed
         * (EAGAIN) or is woken by the FUTEX_WAKE that follows the increment. No wake-up can be lost. */
        uint32_t w = notice__load32(b, NOTICE__OFF_FUTEX, memory_order_acquire);
        uint32_t state = notice__load32(b, NOTICE__OFF_STATE, memory_order_acquire);
        uint64_t v = notice_version_inline(b);
        if (version_out != NULL)
            *version_out = v;
        if (notice__faulted(b)) /* the words above may be zeros; sleeping on a page of zeros would never wake */
            return NOTICE_ETRUNCATED;
        if (state == NOTICE_STATE_SUPERSEDED)
            return NOTICE_ESUPERSEDED;
        if (v != last_version)
            return NOTICE_OK;
        if (timeout_ms >= 0) {
            int64_t left = deadline - notice__monotonic_ns();
            if (left <= 0)
                return NOTICE_ETIMEDOUT;
            ts.tv_sec = (time_t)(left / 1000000000);
            ts.tv_nsec = (long)(left % 1000000000);
            tsp = &ts;
        }
        /* Shared futex (no FUTEX_PRIVATE_FLAG): the word is shared with the writer's process. FUTEX_WAIT only
         * reads the word, so a PROT_READ mapping is fine. The timeout is relative. */
        if (syscall(SYS_futex, futex_word, FUTEX_WAIT, w, tsp, NULL, 0) != 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ETIMEDOUT)
                return NOTICE_EIO;
        }
        /* woken, changed, interrupted or timed out: re-check (wake-ups are not proof of change) */
    }
}

/* ---- snapshots (FORMAT.md §5) ---- */

/* Which check of step 5 a stable copy failed; used for the "twice the same => corrupt" rule. */
enum { NOTICE__FAIL_NONE = 0, NOTICE__FAIL_CRC = 1, NOTICE__FAIL_VERSION = 2, NOTICE__FAIL_COUNT = 3 };

static int notice__grow(void **p, size_t *cap, size_t need, size_t elem)
{
    size_t n;
    void *q;
    if (need <= *cap)
        return 0;
    n = *cap ? *cap : 16;
    while (n < need)
        n = n > SIZE_MAX / 2 ? need : n * 2;
    if (n > SIZE_MAX / elem)
        return -1;
    q = realloc(*p, n * elem);
    if (q == NULL)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

/* Step 6's checks of record r (index i; prev_id is record i-1's id): 1 if it is not a bad_record (content_len
 * <= 256, the content valid UTF-8, id non-zero and above prev_id). Its crc is checked with the slot crc, in the same
 * pass (notice__take), and so is this, while the record is in cache; the results are used only once the copy is
 * known to be consistent, and in record order: a record's crc is checked before the rest. */
static inline int notice__record_ok(const notice_board *b, const unsigned char *r, uint32_t i, uint64_t prev_id)
{
    uint32_t len = notice__le32(r + b->off_content_len);
    uint64_t id = notice__le64(r + b->off_id);
    if (len > NOTICE_MAX_CONTENT) /* 256 whatever the size of the content field (FORMAT.md §5 rules) */
        return 0;
    if (id == 0 || (i > 0 && id <= prev_id)) /* ids non-zero and strictly ascending */
        return 0;
    return notice__utf8_valid(r + b->off_content, len);
}

/* dst[0, 257) = the first len bytes of src, then zeros. src has 256 readable bytes (the content field is at
 * least 256 bytes long), so the copy is of a constant size, which compilers inline as a few vector moves, rather
 * than a call for len bytes; the bytes past len are then cleared. */
static inline void notice__copy_content(char *dst, const unsigned char *src, uint32_t len)
{
    memcpy(dst, src, NOTICE_MAX_CONTENT);
    memset(dst + len, 0, NOTICE_MAX_CONTENT + 1 - len);
}
/* Steps 5 and 6 in one pass over a copied slot (its header hdr, its count records at recs): returns the slot CRC
 * (over [12, 64 + count*stride)) and sets *bad_crc to the index of the first record whose crc fails and *bad_rec to
 * the first that fails notice__record_ok, each count if none. The record CRCs are folded into the slot CRC
 * (notice__skip_setup), so every byte is read once, and the other record checks run while the record is in cache. */
static uint32_t notice__slot_pass(const notice_board *b, int impl, const unsigned char *hdr,
                                  const unsigned char *recs, uint32_t count, uint32_t *bad_crc, uint32_t *bad_rec)
{
    uint32_t crc, i, bc = count, br = count;
    uint64_t prev_id = 0;
    crc = notice__crc_update_with(impl, 0xffffffffu, hdr + NOTICE__SLOT_CRC_START,
                                  NOTICE__SLOT_HDR - NOTICE__SLOT_CRC_START);
    for (i = 0; i < count; i++) {
        const unsigned char *r = recs + (size_t)i * b->stride;
        uint32_t w = notice__le32(r), rcrc = notice__crc_record(impl, r, b->stride);
        if (bc == count && (rcrc ^ 0xffffffffu) != w)
            bc = i;
        /* the record's crc word w, then its bytes [4, stride) */
        crc = notice__skip((const uint32_t(*)[256])b->skip, crc ^ w) ^ b->skip_k ^ rcrc;
        if (br == count) { /* step 6's other checks, up to the first bad record */
            if (!notice__record_ok(b, r, i, prev_id))
                br = i;
            prev_id = notice__le64(r + b->off_id);
        }
    }
    *bad_crc = bc;
    *bad_rec = br;
    return crc ^ 0xffffffffu;
}

static void notice__decode_record(const notice_board *b, const unsigned char *r, notice_record *out)
{
    uint32_t len = notice__le32(r + b->off_content_len); /* <= 256, checked */
    out->id = notice__le64(r + b->off_id);
    out->effective_at = notice__i64(notice__le64(r + b->off_effective_at));
    out->expires_at = notice__i64(notice__le64(r + b->off_expires_at));
    out->priority = notice__i32(notice__le32(r + b->off_priority));
    out->content_len = len;
    notice__copy_content(out->content, r + b->off_content, len);
}

/* Called after a failed attempt. A writer preempted in the middle of a publish can keep a slot odd for a whole
 * scheduler tick; spinning 100 times through it would end in busy. Every 8th failure sleeps 1 us, which lets the
 * writer run when it shares the CPU, and costs nothing on the common path (the first attempt succeeds). */
static void notice__backoff(uint32_t attempt)
{
    if (attempt % 8 == 0) {
        struct timespec ts = {0, 1000};
        nanosleep(&ts, NULL);
    }
}

/* The read algorithm. s is filled only on success. */
static int notice__take(notice_board *b, struct notice_snapshot *s)
{
    unsigned char hdr[NOTICE__SLOT_HDR];
    uint64_t prev_v = 0, prev_q = 0;
    int prev_fail = NOTICE__FAIL_NONE;
    uint32_t attempt;
    int impl = notice__crc_pick();

    for (attempt = 1; attempt <= NOTICE_MAX_ATTEMPTS; attempt++) {
        uint64_t v, q1, q2, slot_off, copy_version, generation, heartbeat;
        uint32_t count, crc, bad_crc, bad_rec, i, state, writer_pid;
        size_t rec_bytes;
        const unsigned char *slot;
        int fail;

        /* A fault in this board's mapping (caught by the guard) in an earlier attempt or call: the file shrank
         * under the mapping, and some of its pages are zeros now. Nothing read from it is trusted again. */
        if (notice__faulted(b))
            return NOTICE_ETRUNCATED;

        /* Step 1. The state first: a superseded board says "reopen the path" whatever its version. Acquire pairs
         * with the writer's release store of version (§4 step 5): everything the writer did before publishing V,
         * in particular the even seq store of V's slot (§4 step 4), is visible. */
        if (notice__load32(b, NOTICE__OFF_STATE, memory_order_acquire) == NOTICE_STATE_SUPERSEDED)
            return notice__faulted(b) ? NOTICE_ETRUNCATED : NOTICE_ESUPERSEDED;
        v = notice_version_inline(b);
        if (v == 0)
            return notice__faulted(b) ? NOTICE_ETRUNCATED : NOTICE_ENOTPUBLISHED;

        /* Step 2. slot_off + slot_size <= region_size <= map_size (checked at open). The acquire load of seq
         * pairs with the writer's release store of the even seq (§4 step 4): an even q1 means the data of that
         * publish is visible, and the acquire keeps the copy below from being performed before this load. */
        slot_off = (uint64_t)b->header_size + (v & 1) * (uint64_t)b->slot_size;
        slot = b->base + slot_off;
        q1 = notice__load64(b, slot_off + NOTICE__SLOT_OFF_SEQ, memory_order_acquire);
        if (q1 & 1) {
            prev_fail = NOTICE__FAIL_NONE;
            notice__backoff(attempt);
            continue;
        }

        /* Step 3. Copy the slot header, then count records (count from the copy, bounded by capacity so the
         * copy stays inside the slot: 64 + capacity * stride <= slot_size). */
        memcpy(hdr, slot, sizeof hdr);
        count = notice__le32(hdr + NOTICE__SLOT_OFF_COUNT);
        fail = NOTICE__FAIL_NONE;
        if (count > b->capacity) {
            /* Torn by a publish (seq changed), or a stable slot with a count it cannot hold: a failed check that
             * counts for the "twice in a row" rule below, as a failed crc does. */
            atomic_thread_fence(memory_order_acquire);
            if (notice__faulted(b))
                return NOTICE_ETRUNCATED;
            if (notice__load64(b, slot_off + NOTICE__SLOT_OFF_SEQ, memory_order_relaxed) != q1) {
                prev_fail = NOTICE__FAIL_NONE;
                notice__backoff(attempt);
                continue;
            }
            fail = NOTICE__FAIL_COUNT;
            goto failed;
        }
        rec_bytes = (size_t)count * b->stride; /* <= slot_size - 64 < 4 GiB */
        if (notice__grow((void **)&s->priv_raw, &s->priv_raw_cap, rec_bytes ? rec_bytes : 1, 1) != 0)
            return NOTICE_ENOMEM;
        memcpy(s->priv_raw, slot + NOTICE__SLOT_HDR, rec_bytes);

        /* Step 4. Seqlock read-retry (the kernel's read_seqcount_retry): the acquire fence orders every load of
         * the copy above before the re-load of seq. It pairs with the writer's odd seq store (§4 step 2), which
         * is ordered before all of its data stores: if the copy saw any store of a publish that began after q1,
         * q2 sees at least that publish's odd seq, so q2 != q1. */
        atomic_thread_fence(memory_order_acquire);
        q2 = notice__load64(b, slot_off + NOTICE__SLOT_OFF_SEQ, memory_order_relaxed);
        /* With the guard, a truncation during the copy is not a crash: the vanished pages read as zeros, and the
         * handler flagged the board. Such a copy is never accepted, whatever its seq and crcs say. */
        if (notice__faulted(b))
            return NOTICE_ETRUNCATED;
        if (q2 != q1) {
            prev_fail = NOTICE__FAIL_NONE;
            notice__backoff(attempt);
            continue;
        }

        /* Step 5, on the copy: slot crc over [12, 64 + count*stride), and version == V (a later one of V's parity
         * is a race: publishes overtook the copy; one below V, or of the other parity, is corruption: the slot of V
         * only ever holds versions of that parity). The record crcs of step 6 (over [4, stride) of each record,
         * the crc word being at offset 0) are computed in the same pass and folded into the slot CRC
         * (notice__skip), so the bytes are read once; only the first record mismatch is remembered, and only used
         * if step 5 passes. */
        crc = notice__slot_pass(b, impl, hdr, s->priv_raw, count, &bad_crc, &bad_rec);
        copy_version = notice__le64(hdr + NOTICE__SLOT_OFF_VERSION);
        if (crc != notice__le32(hdr + NOTICE__SLOT_OFF_CRC))
            fail = NOTICE__FAIL_CRC;
        else if (copy_version > v && (copy_version & 1) == (v & 1)) {
            /* Publishes overtook the copy: the slot holds a later version whose number the version word may not
             * show yet; returning it could make the next snapshot a lower version. A race, not a failed check. */
            prev_fail = NOTICE__FAIL_NONE;
            notice__backoff(attempt);
            continue;
        } else if (copy_version != v)
            fail = NOTICE__FAIL_VERSION;
    failed:
        if (fail != NOTICE__FAIL_NONE) {
            /* The same V and the same even q1, failing a step-5 check twice in a row: no writer touched the slot
             * in between, so the bytes are corrupt, not torn. */
            if (prev_fail != NOTICE__FAIL_NONE && prev_v == v && prev_q == q1)
                return NOTICE_ESNAPSHOTCHECKSUM;
            prev_fail = fail;
            prev_v = v;
            prev_q = q1;
            notice__backoff(attempt);
            continue;
        }

        /* Step 6: the copy is consistent; record errors are real errors, not torn reads. */
        if (bad_crc < count || bad_rec < count) /* the first bad record decides; its crc first */
            return bad_crc <= bad_rec ? NOTICE_ERECORDCHECKSUM : NOTICE_EBADRECORD;
        /* The dynamic header words, read before anything is written into s, so that a fault in them (the guard
         * flags it) leaves s as it was. */
        state = notice__load32(b, NOTICE__OFF_STATE, memory_order_acquire);
        writer_pid = notice__load32(b, NOTICE__OFF_WRITER_PID, memory_order_relaxed);
        generation = notice__load64(b, NOTICE__OFF_GENERATION, memory_order_relaxed);
        heartbeat = notice__load64(b, NOTICE__OFF_HEARTBEAT, memory_order_relaxed);
        if (notice__faulted(b))
            return NOTICE_ETRUNCATED;
        if (notice__grow((void **)&s->priv_records, &s->priv_records_cap, count ? count : 1, sizeof(notice_record)))
            return NOTICE_ENOMEM;
        for (i = 0; i < count; i++)
            notice__decode_record(b, s->priv_raw + (size_t)i * b->stride, &s->priv_records[i]);
        s->records = s->priv_records;
        s->count = count;
        s->version = copy_version; /* == v */
        s->published_at = notice__i64(notice__le64(hdr + NOTICE__SLOT_OFF_PUBLISHED));
        s->attempts = attempt;
        s->major = b->major;
        s->minor = b->minor;
        s->region_size = b->region_size;
        s->capacity = b->capacity;
        s->stride = b->stride;
        s->state = state;
        s->writer_pid = writer_pid;
        s->generation = generation;
        s->heartbeat_ns = notice__i64(heartbeat);
        return NOTICE_OK;
    }
    return NOTICE_EBUSY;
}

NOTICE_API void notice_snapshot_free(struct notice_snapshot *s)
{
    if (s == NULL)
        return;
    free(s->priv_records);
    free(s->priv_raw);
    free(s);
}

NOTICE_API int notice_snapshot_reuse(notice_board *b, struct notice_snapshot **snap)
{
    int rc, fresh = 0;
    if (b == NULL || snap == NULL)
        return NOTICE_EINVAL;
    if (*snap == NULL) {
        *snap = (struct notice_snapshot *)calloc(1, sizeof **snap);
        if (*snap == NULL)
            return NOTICE_ENOMEM;
        fresh = 1;
    }
    rc = notice__take(b, *snap);
    if (rc != NOTICE_OK && fresh) {
        notice_snapshot_free(*snap);
        *snap = NULL;
    }
    return rc;
}

NOTICE_API int notice_snapshot(notice_board *b, struct notice_snapshot **out)
{
    if (out == NULL)
        return NOTICE_EINVAL;
    *out = NULL;
    return notice_snapshot_reuse(b, out);
}

NOTICE_API size_t notice_count(const struct notice_snapshot *s) { return s ? (size_t)s->count : 0; }

NOTICE_API const notice_record *notice_record_at(const struct notice_snapshot *s, size_t i)
{
    if (s == NULL || i >= s->count)
        return NULL;
    return &s->records[i];
}

NOTICE_API int notice_iterate(const struct notice_snapshot *s, int (*fn)(const notice_record *, void *), void *arg)
{
    size_t i;
    if (s == NULL || fn == NULL)
        return NOTICE_EINVAL;
    for (i = 0; i < s->count; i++) {
        int r = fn(&s->records[i], arg);
        if (r != 0)
            return r;
    }
    return 0;
}

/* ---- following the path (FORMAT.md §5, "Following the path") ---- */

struct notice_follower {
    char *path;
    notice_board *b;            /* the open board; never NULL */
    int fd;                     /* its file, kept open to fstat it */
    dev_t dev;                  /* its identity, to compare with stat(path) */
    ino_t ino;
    int bad;                    /* the file shrank under the mapping (fstat found it shorter, or the fault guard
                                   caught a read of it): its pages are never touched again */
    int lost;                   /* 0, or why the open file is retired with no usable replacement yet */
    int64_t stale_after_ns;
    uint64_t high;              /* the highest version accepted (returned) so far */
    uint64_t reopens;
    struct notice_snapshot *scratch; /* the next snapshot is taken here, and swapped in once accepted */
    int rep_stale, rep_lost;    /* what the last report of notice_follow_wait said */
    uint64_t rep_reopens;
};

/* Checks whether the open file is still the board to read (not truncated, not superseded, still the file at the
 * path) and moves to the file at the path when it is not and the path names a usable board. Sets f->lost. */
static void notice__follow_refresh(notice_follower *f)
{
    struct stat st;
    notice_board *nb = NULL;
    int reason = 0, nfd = -1;

    int state = 0;

    if (f->bad) {
        reason = NOTICE_ETRUNCATED;
    } else if (notice__faulted(f->b) || fstat(f->fd, &st) != 0 || st.st_size < (off_t)f->b->map_size ||
               (state = notice_state(f->b), notice__faulted(f->b))) {
        /* fstat before any load: a shrunk file is found before its vanished pages are touched. One that shrinks
         * later, during a read, is found by the fault guard (if the host installed it): the same thing. */
        f->bad = 1;
        reason = NOTICE_ETRUNCATED;
    } else if (state == NOTICE_STATE_SUPERSEDED) {
        reason = NOTICE_ESUPERSEDED;
    } else if (stat(f->path, &st) != 0 || (st.st_dev == f->dev && st.st_ino == f->ino)) {
        /* The path names the open file, or nothing (unlinked: its writer may publish into it until it recreates
         * the path). Keep reading it. */
        f->lost = 0;
        return;
    }
    if (notice__open(f->path, &nb, &nfd, &st) == NOTICE_OK) {
        /* A new file at the path; or the same one, truncated under the old mapping and now whole again (the writer
         * restores a truncated file in place): notice__open validated it afresh and mapped its size now. */
        if (st.st_dev != f->dev || st.st_ino != f->ino || f->bad) {
            if (st.st_dev != f->dev || st.st_ino != f->ino)
                f->reopens++; /* a move to a new file; a file restored in place is the same one */
            notice_close(f->b);
            close(f->fd);
            f->b = nb;
            f->fd = nfd;
            f->dev = st.st_dev;
            f->ino = st.st_ino;
            f->bad = 0;
            f->lost = 0;
            return;
        }
        notice_close(nb); /* the path still names the retired file: its replacement is not there yet */
        close(nfd);
    }
    /* No usable file at the path yet. A retired file is lost; a file that is only no longer at the path is still
     * read (reason 0). */
    f->lost = reason;
}

static int notice__follow_stale(notice_follower *f)
{
    int stale;
    if (f->bad || f->lost == NOTICE_ETRUNCATED || notice__faulted(f->b))
        return 1;
    stale = notice_is_stale(f->b, f->stale_after_ns);
    if (notice__faulted(f->b)) { /* the heartbeat read faulted: retired at the next check */
        f->bad = 1;
        return 1;
    }
    return stale;
}

/* The snapshot in f->scratch becomes *snap if it does not go back. */
static int notice__follow_accept(notice_follower *f, struct notice_snapshot **snap)
{
    struct notice_snapshot tmp;
    if (f->scratch->version < f->high)
        return NOTICE_EWENTBACK;
    if (*snap == NULL && (*snap = (struct notice_snapshot *)calloc(1, sizeof **snap)) == NULL)
        return NOTICE_ENOMEM;
    tmp = **snap; /* swap the structs: records points into heap buffers that move with them */
    **snap = *f->scratch;
    *f->scratch = tmp;
    f->high = (*snap)->version;
    return NOTICE_OK;
}

NOTICE_API int notice_follow_open(const char *path, int64_t stale_after_ns, notice_follower **out)
{
    notice_follower *f;
    struct stat st;
    size_t n;
    int rc;

    if (out == NULL)
        return NOTICE_EINVAL;
    *out = NULL;
    if (path == NULL)
        return NOTICE_EINVAL;
    if ((f = (notice_follower *)calloc(1, sizeof *f)) == NULL)
        return NOTICE_ENOMEM;
    n = strlen(path) + 1;
    if ((f->path = (char *)malloc(n)) == NULL) {
        free(f);
        return NOTICE_ENOMEM;
    }
    memcpy(f->path, path, n);
    rc = notice__open(path, &f->b, &f->fd, &st);
    if (rc != NOTICE_OK) {
        free(f->path);
        free(f);
        return rc;
    }
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    f->stale_after_ns = stale_after_ns > 0 ? stale_after_ns : (int64_t)5000000000;
    *out = f;
    return NOTICE_OK;
}

NOTICE_API void notice_follow_close(notice_follower *f)
{
    if (f == NULL)
        return;
    notice_close(f->b);
    close(f->fd);
    notice_snapshot_free(f->scratch);
    free(f->path);
    free(f);
}

NOTICE_API uint64_t notice_follow_reopens(const notice_follower *f) { return f ? f->reopens : 0; }

NOTICE_API int notice_follow_is_stale(notice_follower *f)
{
    if (f == NULL)
        return 1;
    notice__follow_refresh(f);
    return notice__follow_stale(f);
}

NOTICE_API int notice_follow_snapshot(notice_follower *f, struct notice_snapshot **snap)
{
    int rc = NOTICE_ESUPERSEDED, tries;
    if (f == NULL || snap == NULL)
        return NOTICE_EINVAL;
    /* Superseded between the check and the snapshot: check again, the new file is at the path by now. Truncated
     * (the guard caught a fault during the snapshot): the check retires the file and reopens the path. */
    for (tries = 0; tries < 3 && (rc == NOTICE_ESUPERSEDED || rc == NOTICE_ETRUNCATED); tries++) {
        notice__follow_refresh(f);
        if (f->lost)
            return f->lost;
        rc = notice_snapshot_reuse(f->b, &f->scratch);
    }
    if (rc != NOTICE_OK)
        return rc;
    return notice__follow_accept(f, snap);
}

static void notice__follow_status(notice_follower *f, int changed, int stale, notice_follow_status *st, int report)
{
    if (st != NULL) {
        st->version = f->high;
        st->reopens = f->reopens;
        st->reopened = (uint32_t)(f->reopens - f->rep_reopens);
        st->changed = changed;
        st->stale = stale;
        st->lost = f->lost;
    }
    if (report) {
        f->rep_stale = stale;
        f->rep_lost = f->lost != 0;
        f->rep_reopens = f->reopens;
    }
}

NOTICE_API int notice_follow_wait(notice_follower *f, uint64_t last_version, int timeout_ms,
                                  struct notice_snapshot **snap, notice_follow_status *status)
{
    int64_t deadline = 0;
    if (f == NULL || snap == NULL)
        return NOTICE_EINVAL;
    if (timeout_ms >= 0)
        deadline = notice__monotonic_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        uint64_t v = 0;
        int changed = 0, stale, usable, rc, slice_ms = NOTICE_FOLLOW_CHECK_MS;

        notice__follow_refresh(f);
        usable = f->lost == 0;
        if (usable) {
            v = notice_version_inline(f->b);
            if (notice__faulted(f->b))
                continue; /* the version read faulted (the guard caught it): the refresh retires the file */
            if (v > last_version && v >= f->high) {
                rc = notice_snapshot_reuse(f->b, &f->scratch);
                if (rc == NOTICE_ESUPERSEDED || rc == NOTICE_ETRUNCATED)
                    continue; /* the next refresh moves to the new file, or retires this one (the guard caught a
                                 fault in the snapshot) and reopens the path */
                if (rc == NOTICE_OK && f->scratch->version >= f->high) { /* version >= v > last_version */
                    if ((rc = notice__follow_accept(f, snap)) != NOTICE_OK)
                        return rc;
                    changed = 1;
                } else if (rc != NOTICE_OK && rc != NOTICE_EBUSY && rc != NOTICE_ENOTPUBLISHED) {
                    notice__follow_status(f, 0, notice__follow_stale(f), status, 1);
                    return rc; /* corrupt bytes (or out of memory): calling again retries */
                }
                /* busy or not published: wait for the version to move on */
            }
        }
        stale = notice__follow_stale(f);
        if (changed || f->reopens != f->rep_reopens || stale != f->rep_stale || (f->lost != 0) != f->rep_lost) {
            notice__follow_status(f, changed, stale, status, 1);
            return NOTICE_OK;
        }
        if (timeout_ms >= 0) {
            int64_t left = deadline - notice__monotonic_ns();
            if (left <= 0) {
                notice__follow_status(f, 0, stale, status, 0);
                return NOTICE_ETIMEDOUT;
            }
            if (left < (int64_t)slice_ms * 1000000)
                slice_ms = (int)((left + 999999) / 1000000);
        }
        /* Sleep on the futex of a usable board (a publish or a supersede wakes it), at most one check interval. */
        if (!usable || notice_wait(f->b, v, slice_ms, NULL) == NOTICE_EIO) {
            struct timespec ts = {slice_ms / 1000, (long)(slice_ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
}

/* ---- errors ---- */

struct notice__err {
    int code;
    const char *name, *text;
};
static const struct notice__err notice__errs[] = {
    {NOTICE_OK, "ok", "success"},
    {NOTICE_EIO, "io", "I/O error (open, fstat, mmap or futex failed)"},
    {NOTICE_ETRUNCATED, "truncated", "the file is shorter than the header or than region_size"},
    {NOTICE_EBADMAGIC, "bad_magic", "not a board (bad magic)"},
    {NOTICE_EUNSUPPORTEDMAJOR, "unsupported_major", "unsupported format major"},
    {NOTICE_EBADLAYOUT, "bad_layout", "geometry or record layout table invalid"},
    {NOTICE_ENOTPUBLISHED, "not_published", "nothing published yet (version is 0)"},
    {NOTICE_ESUPERSEDED, "superseded", "the region is superseded: reopen the path"},
    {NOTICE_ESNAPSHOTCHECKSUM, "snapshot_checksum", "a stable slot fails its checksum"},
    {NOTICE_ERECORDCHECKSUM, "record_checksum", "a record fails its checksum"},
    {NOTICE_EBADRECORD, "bad_record", "bad record: content_len > 256, content not UTF-8, or id 0"},
    {NOTICE_EBUSY, "busy", "no consistent snapshot in 100 attempts"},
    {NOTICE_ETIMEDOUT, "timed_out", "timed out waiting for a new version"},
    {NOTICE_ENOMEM, "out_of_memory", "out of memory"},
    {NOTICE_EINVAL, "invalid_argument", "invalid argument"},
    {NOTICE_EWENTBACK, "version_went_back", "the file at the path shows a lower version than one already read"},
};

static const struct notice__err *notice__find_err(int err)
{
    size_t i;
    for (i = 0; i < sizeof notice__errs / sizeof notice__errs[0]; i++)
        if (notice__errs[i].code == err)
            return &notice__errs[i];
    return NULL;
}

NOTICE_API const char *notice_strerror(int err)
{
    const struct notice__err *e = notice__find_err(err);
    return e ? e->text : "unknown error";
}

NOTICE_API const char *notice_error_name(int err)
{
    const struct notice__err *e = notice__find_err(err);
    return e ? e->name : "unknown";
}

#endif /* NOTICE_IMPLEMENTATION */
