/* notice_crccheck CRCFILE UTF8FILE - checks notice.h's CRC-32 implementations and its UTF-8 validation against
 * expectations computed by Go (clients/crc_test.go writes both files with hash/crc32 and unicode/utf8).
 *
 * CRCFILE: u32 L, u32 A (little-endian), then A + L random bytes, then A * (L + 1) u32: the CRC-32/IEEE of
 * data[a : a + n] for a < A, n <= L (row a, column n).
 * UTF8FILE: records of u32 len, u8 valid (utf8.Valid's answer), len bytes.
 *
 * Every CRC implementation this CPU can run (slicing-by-8 always; PCLMULQDQ on x86-64 and the ARMv8 CRC32
 * instructions on arm64 when the CPU has them) is checked at every alignment a < 16 (relative to a 16-byte aligned
 * allocation) and every length n <= L: the whole CRC in one call, the same split in two calls at a pseudo-random
 * point, and the record CRC (bytes [4, n) of a record of n bytes, n >= 8; the path a snapshot takes); then the
 * slot pass of a snapshot (record CRCs folded into the slot CRC) for several strides and counts. Each input
 * is copied into its own allocation that ends where the input ends, so that an AddressSanitizer build
 * (notice_crccheck_asan) catches any read past it. Prints one JSON object; exits 0 if nothing mismatched, 1 if
 * something did, 2 on bad usage or input. */
#define _GNU_SOURCE
#define NOTICE_IMPLEMENTATION
#include "notice.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *p = NULL;
    size_t cap = 0, n = 0, r;
    if (f == NULL)
        return NULL;
    for (;;) {
        if (n == cap) {
            unsigned char *q = realloc(p, cap = cap ? 2 * cap : 1 << 16);
            if (q == NULL) {
                free(p);
                fclose(f);
                return NULL;
            }
            p = q;
        }
        r = fread(p + n, 1, cap - n, f);
        if (r == 0)
            break;
        n += r;
    }
    fclose(f);
    *len = n;
    return p;
}

static uint64_t mismatches, shown;

static void mismatch(const char *what, const char *impl, uint32_t a, uint32_t n, uint32_t got, uint32_t want)
{
    mismatches++;
    if (shown++ < 20)
        fprintf(stderr, "mismatch: %s %s align %" PRIu32 " len %" PRIu32 ": got %08" PRIx32 ", want %08" PRIx32 "\n",
                what, impl, a, n, got, want);
}

int main(int argc, char **argv)
{
    unsigned char *crcfile, *utf8file, *data;
    size_t crclen, utf8len, off;
    uint32_t L, A, a, n, want, got, split;
    uint32_t *expect;
    int impls[3], nimpl = 0, k;
    uint64_t crc_checks = 0, record_checks = 0, slot_checks = 0, utf8_checks = 0, utf8_valid = 0, utf8_mismatches = 0;
    uint64_t rng = 0x9e3779b97f4a7c15ull;

    if (argc != 3) {
        fprintf(stderr, "usage: notice_crccheck CRCFILE UTF8FILE\n");
        return 2;
    }
    crcfile = slurp(argv[1], &crclen);
    utf8file = slurp(argv[2], &utf8len);
    if (crcfile == NULL || utf8file == NULL || crclen < 8) {
        fprintf(stderr, "notice_crccheck: cannot read the input files\n");
        return 2;
    }
    L = notice__le32(crcfile);
    A = notice__le32(crcfile + 4);
    if (A < 20 || L < 64 || crclen != 8 + (size_t)A + L + (size_t)A * (L + 1) * 4) {
        fprintf(stderr, "notice_crccheck: bad CRCFILE\n");
        return 2;
    }
    data = crcfile + 8;
    expect = malloc((size_t)A * (L + 1) * 4); /* the table follows the data, unaligned: copy it out */
    if (expect == NULL)
        return 2;
    memcpy(expect, data + A + L, (size_t)A * (L + 1) * 4);

    impls[nimpl++] = NOTICE__CRC_PORTABLE;
    if (notice__crc_hardware() != NOTICE__CRC_PORTABLE)
        impls[nimpl++] = notice__crc_hardware();

    for (k = 0; k < nimpl; k++) {
        const char *name = notice__crc_impl_name(impls[k]);
        for (a = 0; a < 16; a++) {
            for (n = 0; n <= L; n++) {
                /* the input ends where its allocation ends; a is its offset from a 16-aligned malloc */
                unsigned char *blk = malloc((size_t)a + n + 1), *p = blk + a;
                if (blk == NULL)
                    return 2;
                memcpy(p, data + a, n);
                want = expect[(size_t)a * (L + 1) + n];
                got = notice__crc_update_with(impls[k], 0xffffffffu, p, n) ^ 0xffffffffu;
                if (got != want)
                    mismatch("crc", name, a, n, got, want);
                rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
                split = n ? (uint32_t)(rng % (n + 1)) : 0;
                got = notice__crc_update_with(impls[k], notice__crc_update_with(impls[k], 0xffffffffu, p, split),
                                              p + split, n - split) ^ 0xffffffffu;
                if (got != want)
                    mismatch("crc split", name, a, n, got, want);
                crc_checks += 2;
                if (n >= 8 && a + 4 < A) {
                    /* a record of n bytes at p: its CRC covers [4, n), i.e. data[a + 4 : a + n] */
                    want = expect[(size_t)(a + 4) * (L + 1) + (n - 4)];
                    got = notice__crc_record(impls[k], p, n) ^ 0xffffffffu;
                    if (got != want)
                        mismatch("record crc", name, a, n, got, want);
                    record_checks++;
                }
                free(blk);
            }
        }
    }

    /* The slot pass of a snapshot (notice__slot_pass: record CRCs folded into the slot CRC) for strides that are
     * and are not multiples of 16, against the slot CRC computed directly over the contiguous bytes, and the index
     * of the one record whose crc word is wrong. */
    for (k = 0; k < nimpl; k++) {
        static const uint32_t strides[] = {296, 304, 312, 320, 328, 336, 1024, 4104};
        static const uint32_t counts[] = {0, 1, 2, 7, 33};
        size_t si, ci;
        for (si = 0; si < sizeof strides / sizeof *strides; si++) {
            for (ci = 0; ci < sizeof counts / sizeof *counts; ci++) {
                notice_board fb;
                uint32_t stride = strides[si], count = counts[ci], bad = count / 2, bc, br, i;
                size_t len = NOTICE__SLOT_HDR + (size_t)count * stride, j;
                unsigned char *slot = malloc(len);
                if (slot == NULL)
                    return 2;
                for (j = 0; j < len; j++) {
                    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
                    slot[j] = (unsigned char)rng;
                }
                for (i = 0; i < count; i++) {
                    unsigned char *r = slot + NOTICE__SLOT_HDR + (size_t)i * stride;
                    uint32_t w = notice__crc_update_portable(0xffffffffu, r + 4, stride - 4) ^ 0xffffffffu;
                    if (i == bad)
                        w ^= 1;
                    memcpy(r, &w, 4);
                }
                memset(&fb, 0, sizeof fb);
                fb.stride = stride;
                fb.off_content_len = 4, fb.off_id = 8, fb.off_content = 36;
                notice__skip_setup(&fb);
                got = notice__slot_pass(&fb, impls[k], slot, slot + NOTICE__SLOT_HDR, count, &bc, &br);
                want = notice__crc_update_portable(0xffffffffu, slot + NOTICE__SLOT_CRC_START,
                                                   len - NOTICE__SLOT_CRC_START) ^ 0xffffffffu;
                if (got != want)
                    mismatch("slot crc", notice__crc_impl_name(impls[k]), stride, count, got, want);
                if (bc != (count ? bad : 0))
                    mismatch("slot bad record", notice__crc_impl_name(impls[k]), stride, count, bc, count ? bad : 0);
                slot_checks++;
                free(slot);
            }
        }
    }

    for (off = 0; off + 5 <= utf8len;) {
        uint32_t len = notice__le32(utf8file + off);
        int valid = utf8file[off + 4], res;
        unsigned char *blk;
        off += 5;
        if (len > utf8len - off) {
            fprintf(stderr, "notice_crccheck: bad UTF8FILE\n");
            return 2;
        }
        blk = malloc(len ? len : 1);
        if (blk == NULL)
            return 2;
        memcpy(blk, utf8file + off, len);
        res = notice__utf8_valid(blk, len);
        if (res != valid) {
            utf8_mismatches++;
            if (shown++ < 40) {
                uint32_t j;
                fprintf(stderr, "utf8 mismatch: got %d, want %d for", res, valid);
                for (j = 0; j < len && j < 80; j++)
                    fprintf(stderr, " %02x", blk[j]);
                fprintf(stderr, "\n");
            }
        }
        utf8_checks++;
        utf8_valid += (uint64_t)valid;
        free(blk);
        off += len;
    }

    printf("{\"crc_impls\":[");
    for (k = 0; k < nimpl; k++)
        printf("%s\"%s\"", k ? "," : "", notice__crc_impl_name(impls[k]));
    printf("],\"crc_default\":\"%s\",\"max_len\":%" PRIu32 ",\"crc_checks\":%" PRIu64 ",\"record_checks\":%" PRIu64
           ",\"slot_checks\":%" PRIu64 ",\"crc_mismatches\":%" PRIu64 ",\"utf8_checks\":%" PRIu64 ",\"utf8_valid\":%" PRIu64
           ",\"utf8_mismatches\":%" PRIu64 "}\n",
           notice__crc_impl_name(notice__crc_pick()), L, crc_checks, record_checks, slot_checks, mismatches, utf8_checks,
           utf8_valid, utf8_mismatches);
    free(crcfile);
    free(utf8file);
    free(expect);
    return mismatches || utf8_mismatches ? 1 : 0;
}
