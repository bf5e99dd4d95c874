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
 *                       UTF-8 validation, decoding), counted as snapshot_bytes per snapshot
 *   memcpy_bytes_per_s  memcpy of snapshot_bytes from the same slot of the mapping into a buffer: the limit
 * The snapshot loops run min(ITER, 256 MiB / snapshot_bytes) times (at least once). */
#define _GNU_SOURCE
#define NOTICE_IMPLEMENTATION
#include "notice.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

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
    uint64_t iter, i, acc, snap_iters, bytes, slot_off, snap_errors = 0;
    unsigned long long parsed;
    char *end;
    double t0, t_inline, t_call, t_atomic, t_snap, t_memcpy;
    unsigned char *buf;
    void *anon;
    int rc;

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

    /* 4. Snapshots vs memcpy of the same bytes from the same slot. */
    bytes = 64 + s->count * (uint64_t)b->stride;
    snap_iters = ((uint64_t)256 << 20) / bytes;
    if (snap_iters > iter)
        snap_iters = iter;
    if (snap_iters < 1)
        snap_iters = 1;
    t0 = now_s();
    for (i = 0; i < snap_iters; i++) {
        if (notice_snapshot_reuse(b, &s) != NOTICE_OK)
            snap_errors++;
        sink = s->version;
    }
    t_snap = now_s() - t0;

    buf = malloc(bytes);
    if (buf == NULL)
        return 1;
    slot_off = (uint64_t)b->header_size + (s->version & 1) * (uint64_t)b->slot_size;
    t0 = now_s();
    for (i = 0; i < snap_iters; i++) {
        memcpy(buf, b->base + slot_off, bytes);
        use_buffer(buf);
    }
    t_memcpy = now_s() - t0;
    sink = buf[bytes - 1];

    printf("{\"iterations\":%" PRIu64 ",\"version_ns\":%.3f,\"version_call_ns\":%.3f"
           ",\"atomic_load_ns\":%.3f,\"count\":%" PRIu64 ",\"snapshot_bytes\":%" PRIu64
           ",\"snapshot_iterations\":%" PRIu64 ",\"snapshot_errors\":%" PRIu64 ",\"snapshot_bytes_per_s\":%.0f"
           ",\"memcpy_bytes_per_s\":%.0f,\"snapshot_ns\":%.0f,\"memcpy_ns\":%.0f}\n",
           iter, t_inline * 1e9 / (double)iter, t_call * 1e9 / (double)iter,
           t_atomic * 1e9 / (double)iter, s->count, bytes, snap_iters, snap_errors,
           (double)bytes * (double)snap_iters / t_snap, (double)bytes * (double)snap_iters / t_memcpy,
           t_snap * 1e9 / (double)snap_iters, t_memcpy * 1e9 / (double)snap_iters);

    free(buf);
    munmap(anon, 4096);
    notice_snapshot_free(s);
    notice_close(b);
    return 0;
}
