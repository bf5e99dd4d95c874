/* notice_bench PATH ITER - how close the reader gets to the hardware limits.
 *
 * Prints one JSON object:
 *   version_ns          ns per notice_version_inline() (the poll as C callers get it), over ITER calls
 *   version_call_ns     ns per notice_version() called through a function pointer (what an FFI call pays,
 *                       minus the FFI's own overhead), over ITER calls
 *   atomic_load_ns      ns per bare atomic_load_explicit(acquire) of a uint64 in an anonymous MAP_SHARED
 *                       mapping: the limit for the two above
 *   snapshot_bytes      64 + count * stride: the bytes one snapshot of the board copies
 *   snapshot_bytes_per_s  snapshot throughput (notice_snapshot_reuse: copy, seq check, slot and record CRCs,
 *                       UTF-8 validation, decoding), counted as snapshot_bytes per snapshot; crc_impl says which
 *                       CRC it used (pclmul, armv8-crc32 or slicing-by-8: notice.h picks the fastest the CPU has)
 *   snapshot_portable_bytes_per_s  the same snapshots with the portable CRC (slicing-by-8, what every snapshot
 *                       used before the hardware CRCs; NOTICE_CRC=portable forces it everywhere)
 *   memcpy_bytes_per_s  memcpy of snapshot_bytes from the same slot of the mapping into a buffer
 *   limit_bytes_per_s   the limit of a verified snapshot: that memcpy, then one CRC-32 pass over the copy and one
 *                       UTF-8 validation of the contents (every record's content_len bytes, laid end to end in one
 *                       buffer: exactly the bytes a snapshot validates), with the fastest CRC and the UTF-8
 *                       validator notice.h ships; snapshot_vs_limit = snapshot throughput / limit throughput
 *   crc_bytes_per_s, crc_portable_bytes_per_s, zlib_crc_bytes_per_s  one CRC-32 pass over the copied
 *                       snapshot_bytes: the shipped fastest CRC, slicing-by-8, and zlib's crc32() (libz.so.1 loaded
 *                       with dlopen, so nothing links against zlib; null when it is not installed)
 *   utf8_bytes, utf8_bytes_per_s  the contents' bytes and notice.h's UTF-8 validation of them
 * The snapshot measures run min(ITER, 256 MiB / snapshot_bytes) iterations (at least ROUNDS), split into ROUNDS
 * rounds; each round runs every measure in turn (interleaved, so a noisy machine slows them alike), each figure is
 * the median over the rounds, and snapshot_vs_limit the median of the rounds' own ratios. */
#define _GNU_SOURCE
#define NOTICE_IMPLEMENTATION
#include "notice.h"

#include <dlfcn.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define ROUNDS 16

enum { M_SNAP, M_SNAP_PORTABLE, M_MEMCPY, M_LIMIT, M_CRC, M_CRC_PORTABLE, M_CRC_ZLIB, M_UTF8, M_COUNT };

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median(const double *v, int n)
{
    double tmp[ROUNDS];
    memcpy(tmp, v, (size_t)n * sizeof *v);
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_double);
    return n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Results go to volatile sinks so that no loop can be optimised away. */
static volatile uint64_t sink;
/* Called through a volatile pointer: the compiler can neither inline nor hoist it. */
static uint64_t (*volatile version_fn)(const notice_board *) = notice_version;

/* Tells the compiler the buffer's contents are used, so a memcpy into it cannot be dropped. */
static inline void use_buffer(void *p) { __asm__ __volatile__("" : : "r"(p) : "memory"); }

int main(int argc, char **argv)
{
    notice_board *b;
    notice_snapshot_t *s = NULL;
    uint64_t iter, i, acc, snap_iters, per_round, bytes, slot_off, snap_errors = 0, text_len;
    unsigned long long parsed;
    char *end;
    double t0, t_inline, t_call, t_atomic, t[M_COUNT][ROUNDS] = {{0}}, ratio[ROUNDS], med[M_COUNT];
    unsigned char *buf, *text;
    void *anon, *zlib;
    unsigned long (*zcrc)(unsigned long, const unsigned char *, unsigned) = NULL;
    const char *(*zver)(void) = NULL;
    int rc, r, m, best, zlib_agrees = 0;

    if (argc != 3 || (parsed = strtoull(argv[2], &end, 10), *end != '\0' || end == argv[2]) || parsed == 0) {
        fprintf(stderr, "usage: notice_bench PATH ITER\n");
        return 2;
    }
    iter = parsed;
    rc = notice_open(argv[1], &b);
    if (rc == NOTICE_OK)
        rc = notice_snapshot(b, &s);
    if (rc != NOTICE_OK) {
        printf("{\"error\":\"%s\",\"message\":\"%s\"}\n", notice_error_name(rc), notice_strerror(rc));
        return 1;
    }

    /* zlib's crc32, for comparison, if the system has zlib (looked up at run time: no link dependency). */
    zlib = dlopen("libz.so.1", RTLD_NOW | RTLD_LOCAL);
    if (zlib != NULL) {
        *(void **)&zcrc = dlsym(zlib, "crc32");
        *(void **)&zver = dlsym(zlib, "zlibVersion");
    }

    /* 1. The poll, inlined. */
    acc = 0;
    t0 = now_s();
    for (i = 0; i < iter; i++)
        acc += notice_version_inline(b);
    t_inline = now_s() - t0;
    sink = acc;

    /* 2. The poll through the exported function. */
    acc = 0;
    t0 = now_s();
    for (i = 0; i < iter; i++)
        acc += version_fn(b);
    t_call = now_s() - t0;
    sink = acc;

    /* 3. The limit: a bare acquire load from a shared mapping. */
    anon = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (anon == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    atomic_store_explicit((_Atomic uint64_t *)anon, 42, memory_order_release);
    acc = 0;
    t0 = now_s();
    for (i = 0; i < iter; i++)
        acc += atomic_load_explicit((const _Atomic uint64_t *)anon, memory_order_acquire);
    t_atomic = now_s() - t0;
    sink = acc;

    /* 4. Snapshots, their limit and their parts, interleaved: ROUNDS rounds, each running every measure for
     * snap_iters / ROUNDS iterations in turn, so that a noisy machine slows all of them alike; each figure is the
     * median over the rounds, and snapshot_vs_limit the median of the per-round ratios. */
    bytes = 64 + s->count * (uint64_t)b->stride;
    snap_iters = ((uint64_t)256 << 20) / bytes;
    if (snap_iters > iter)
        snap_iters = iter;
    if (snap_iters < 1)
        snap_iters = 1;
    per_round = snap_iters / ROUNDS;
    if (per_round < 1)
        per_round = 1;
    snap_iters = per_round * ROUNDS;

    buf = malloc(bytes);
    text = malloc(bytes);
    if (buf == NULL || text == NULL)
        return 1;
    slot_off = (uint64_t)b->header_size + (s->version & 1) * (uint64_t)b->slot_size;
    /* The limit's UTF-8 part validates exactly the bytes a snapshot must validate (every record's content), laid
     * end to end in one buffer: one call, no per-record overhead. */
    text_len = 0;
    for (i = 0; i < s->count; i++) {
        memcpy(text + text_len, s->records[i].content, s->records[i].content_len);
        text_len += s->records[i].content_len;
    }
    best = notice__crc_pick();
    memcpy(buf, b->base + slot_off, bytes);
    if (zcrc != NULL)
        zlib_agrees = zcrc(0, buf, (unsigned)bytes) == notice__crc32(buf, bytes);

    for (r = 0; r < ROUNDS; r++) {
        /* the snapshot as shipped (the fastest CRC this CPU has) */
        t0 = now_s();
        for (i = 0; i < per_round; i++) {
            if (notice_snapshot_reuse(b, &s) != NOTICE_OK)
                snap_errors++;
            sink = s->version;
        }
        t[M_SNAP][r] = now_s() - t0;

        /* the same with the portable CRC (slicing-by-8, what every snapshot used before) */
        atomic_store(&notice__crc_impl, NOTICE__CRC_PORTABLE);
        t0 = now_s();
        for (i = 0; i < per_round; i++) {
            if (notice_snapshot_reuse(b, &s) != NOTICE_OK)
                snap_errors++;
            sink = s->version;
        }
        t[M_SNAP_PORTABLE][r] = now_s() - t0;
        atomic_store(&notice__crc_impl, best);

        /* memcpy of the same bytes from the same slot of the mapping */
        t0 = now_s();
        for (i = 0; i < per_round; i++) {
            memcpy(buf, b->base + slot_off, bytes);
            use_buffer(buf);
        }
        t[M_MEMCPY][r] = now_s() - t0;

        /* the limit: that memcpy, one CRC-32 pass over the copy, UTF-8 validation of the contents */
        t0 = now_s();
        for (i = 0; i < per_round; i++) {
            memcpy(buf, b->base + slot_off, bytes);
            use_buffer(buf);
            acc = notice__crc_update_with(best, 0xffffffffu, buf, bytes);
            acc += (uint64_t)notice__utf8_valid(text, text_len);
            use_buffer(text);
            sink = acc;
        }
        t[M_LIMIT][r] = now_s() - t0;

        /* the limit's parts alone, and the other CRCs, over the same copy */
        t0 = now_s();
        for (i = 0; i < per_round; i++) {
            sink = notice__crc_update_with(best, 0xffffffffu, buf, bytes);
            use_buffer(buf);
        }
        t[M_CRC][r] = now_s() - t0;
        t0 = now_s();
        for (i = 0; i < per_round; i++) {
            sink = notice__crc_update_portable(0xffffffffu, buf, bytes);
            use_buffer(buf);
        }
        t[M_CRC_PORTABLE][r] = now_s() - t0;
        if (zcrc != NULL) {
            t0 = now_s();
            for (i = 0; i < per_round; i++) {
                sink = zcrc(0, buf, (unsigned)bytes);
                use_buffer(buf);
            }
            t[M_CRC_ZLIB][r] = now_s() - t0;
        }
        t0 = now_s();
        for (i = 0; i < per_round; i++) {
            sink = (uint64_t)notice__utf8_valid(text, text_len);
            use_buffer(text);
        }
        t[M_UTF8][r] = now_s() - t0;
        ratio[r] = t[M_LIMIT][r] / t[M_SNAP][r];
    }
    for (m = 0; m < M_COUNT; m++)
        med[m] = median(t[m], ROUNDS) / (double)per_round; /* seconds per iteration */
    sink = buf[bytes - 1];

    printf("{\"iterations\":%" PRIu64 ",\"version_ns\":%.3f,\"version_call_ns\":%.3f"
           ",\"atomic_load_ns\":%.3f,\"count\":%" PRIu64 ",\"snapshot_bytes\":%" PRIu64
           ",\"snapshot_iterations\":%" PRIu64 ",\"snapshot_errors\":%" PRIu64 ",\"snapshot_bytes_per_s\":%.0f"
           ",\"memcpy_bytes_per_s\":%.0f,\"snapshot_ns\":%.0f,\"memcpy_ns\":%.0f",
           iter, t_inline * 1e9 / (double)iter, t_call * 1e9 / (double)iter,
           t_atomic * 1e9 / (double)iter, s->count, bytes, snap_iters, snap_errors,
           (double)bytes / med[M_SNAP], (double)bytes / med[M_MEMCPY], med[M_SNAP] * 1e9, med[M_MEMCPY] * 1e9);
    printf(",\"rounds\":%d,\"crc_impl\":\"%s\",\"snapshot_portable_bytes_per_s\":%.0f,\"snapshot_portable_ns\":%.0f"
           ",\"limit_bytes_per_s\":%.0f,\"limit_ns\":%.0f,\"snapshot_vs_limit\":%.3f"
           ",\"crc_bytes_per_s\":%.0f,\"crc_portable_bytes_per_s\":%.0f",
           ROUNDS, notice__crc_impl_name(best), (double)bytes / med[M_SNAP_PORTABLE], med[M_SNAP_PORTABLE] * 1e9,
           (double)bytes / med[M_LIMIT], med[M_LIMIT] * 1e9, median(ratio, ROUNDS),
           (double)bytes / med[M_CRC], (double)bytes / med[M_CRC_PORTABLE]);
    if (zcrc != NULL)
        printf(",\"zlib_version\":\"%s\",\"zlib_crc_agrees\":%s,\"zlib_crc_bytes_per_s\":%.0f", zver ? zver() : "?",
               zlib_agrees ? "true" : "false", (double)bytes / med[M_CRC_ZLIB]);
    else
        printf(",\"zlib_version\":null,\"zlib_crc_agrees\":null,\"zlib_crc_bytes_per_s\":null");
    printf(",\"utf8_bytes\":%" PRIu64 ",\"utf8_bytes_per_s\":%.0f}\n", text_len, (double)text_len / med[M_UTF8]);

    free(text);
    free(buf);
    munmap(anon, 4096);
    notice_snapshot_free(s);
    notice_close(b);
    return 0;
}
