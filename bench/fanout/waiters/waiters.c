/*
 * waiters.c - a process of blocked readers for bench/fanout (built by the command with gcc; not a library).
 *
 *     waiters CTL BOARD ROUNDS TOTAL FIRST THREADS
 *
 * Starts THREADS pthreads, readers FIRST .. FIRST+THREADS-1 of TOTAL, and runs ROUNDS rounds in each. Even rounds
 * are the baseline: the reader blocks on the bare futex word at offset 0 of CTL (a file in /dev/shm mapped
 * MAP_SHARED, no board) until the word reaches round/2+1 and stamps CLOCK_MONOTONIC. Odd rounds are the board:
 * the reader blocks on the board's futex (FORMAT.md §6, the loop notice_wait runs), then takes a verified snapshot
 * with notice_snapshot_reuse (every check of FORMAT.md §5) and stamps CLOCK_MONOTONIC when it holds it.
 *
 * CTL layout (all little-endian, written by the bench before it starts the processes):
 *     0      uint32  the bare futex word
 *     64     uint64  entered: incremented by each reader as it enters a round (before it blocks)
 *     4096   int64   stamp[ROUNDS][TOTAL]
 *     ...    uint8   slept[ROUNDS][TOTAL]: 1 when the reader was asleep in FUTEX_WAIT and woken by the round's
 *                    wake (the bench counts readers that saw the change without having slept)
 * A failure prints one line on stderr and exits non-zero: the bench fails loudly.
 */
#define _GNU_SOURCE
#define NOTICE_IMPLEMENTATION
#include "notice.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define STAMPS_OFF 4096

static unsigned char *ctl;
static notice_board *board;
static long rounds, total, first;

static _Atomic uint32_t *bare_word(void) { return (_Atomic uint32_t *)(void *)ctl; }
static _Atomic uint64_t *entered(void) { return (_Atomic uint64_t *)(void *)(ctl + 64); }
static int64_t *stamps(void) { return (int64_t *)(void *)(ctl + STAMPS_OFF); }
static unsigned char *slept_flags(void) { return ctl + STAMPS_OFF + 8 * rounds * total; }

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void die(const char *what, long gid, const char *why)
{
    fprintf(stderr, "waiters: reader %ld: %s: %s\n", gid, what, why);
    exit(1);
}

/* futex_wait sleeps while *word == val; it returns 1 when it slept and was woken, 0 when it did not sleep. */
static int futex_wait(const void *word, uint32_t val, long gid)
{
    if (syscall(SYS_futex, word, FUTEX_WAIT, val, NULL, NULL, 0) == 0)
        return 1;
    if (errno == EAGAIN || errno == EINTR)
        return 0;
    die("futex wait", gid, strerror(errno));
    return 0;
}

static void *reader(void *arg)
{
    long gid = (long)(intptr_t)arg;
    notice_snapshot_t *snap = NULL;
    uint64_t last = notice_version(board);
    const _Atomic uint32_t *fw = (const _Atomic uint32_t *)(const void *)(board->base + NOTICE__OFF_FUTEX);

    for (long r = 0; r < rounds; r++) {
        int slept = 0;
        atomic_fetch_add(entered(), 1);
        if (r % 2 == 0) {
            uint32_t target = (uint32_t)(r / 2 + 1);
            for (;;) {
                uint32_t w = atomic_load_explicit(bare_word(), memory_order_acquire);
                if (w >= target)
                    break;
                slept |= futex_wait(bare_word(), w, gid);
            }
        } else {
            for (;;) { /* FORMAT.md §6: the futex word first, then the state and the version */
                uint32_t w = atomic_load_explicit(fw, memory_order_acquire);
                if (notice_state(board) == 2)
                    die("board", gid, "superseded");
                if (notice_version_inline(board) != last)
                    break;
                slept |= futex_wait(fw, w, gid);
            }
            int rc = notice_snapshot_reuse(board, &snap);
            if (rc != 0)
                die("snapshot", gid, notice_error_name(rc));
            if (snap->version <= last)
                die("snapshot", gid, "the version did not advance");
            last = snap->version;
        }
        int64_t t = now_ns();
        stamps()[r * total + gid] = t;
        slept_flags()[r * total + gid] = (unsigned char)slept;
    }
    notice_snapshot_free(snap);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: waiters CTL BOARD ROUNDS TOTAL FIRST THREADS\n");
        return 2;
    }
    rounds = atol(argv[3]);
    total = atol(argv[4]);
    first = atol(argv[5]);
    long threads = atol(argv[6]);
    if (rounds <= 0 || total <= 0 || first < 0 || threads <= 0 || first + threads > total) {
        fprintf(stderr, "waiters: bad counts\n");
        return 2;
    }
    int fd = open(argv[1], O_RDWR | O_CLOEXEC);
    if (fd < 0)
        die("open ctl", -1, strerror(errno));
    size_t size = STAMPS_OFF + 9 * (size_t)rounds * (size_t)total;
    ctl = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (ctl == MAP_FAILED)
        die("mmap ctl", -1, strerror(errno));
    close(fd);
    int rc = notice_open(argv[2], &board);
    if (rc != 0)
        die("notice_open", -1, notice_error_name(rc));

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    pthread_t *tids = calloc((size_t)threads, sizeof *tids);
    if (tids == NULL)
        die("calloc", -1, "out of memory");
    for (long i = 0; i < threads; i++) {
        int err = pthread_create(&tids[i], &attr, reader, (void *)(intptr_t)(first + i));
        if (err != 0)
            die("pthread_create", first + i, strerror(err));
    }
    for (long i = 0; i < threads; i++)
        pthread_join(tids[i], NULL);
    notice_close(board);
    return 0;
}
