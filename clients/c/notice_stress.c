/* notice_stress SECONDS PATH - the torn-read stress reader of docs/STRESS.md.
 *
 * For SECONDS seconds, takes snapshots of the board at PATH (the library's full algorithm, reusing one snapshot
 * buffer) and checks each against the stress writer's contract; prints one JSON line with "lang":"c". When the
 * board is superseded it reopens PATH and continues (the version continues in the new file). The board may not
 * exist yet when it starts: it keeps trying to open it until the time is up.
 *
 * It installs the fault guard (notice_guard_faults) at start: a truncation of the file during a snapshot is
 * reported as truncated (counted in errors) and PATH is reopened, as for superseded (the
 * writer restores a truncated board in place), instead of a death by SIGBUS.
 *
 * Exit status: 0 if at least one snapshot was validated and nothing failed (torn_accepted = 0,
 * version_decreases = 0, no errors other than busy, superseded and truncated); 1 otherwise; 2 on a usage error. */
#define _GNU_SOURCE
#define NOTICE_IMPLEMENTATION
#include "notice.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define N_ERRORS 15 /* error codes 0 .. -14 */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The stress writer's snapshot for version V (STRESS.md): count = 1 + V mod 64, ids 1..count, effective_at = V,
 * expires_at = V + id, priority = id, content = "{V}:{id}:" padded with '.' to 32 + ((V + id) mod 225) bytes. */
static int validate(const notice_snapshot_t *s)
{
    uint64_t v = s->version, i;
    if (s->count != 1 + v % 64)
        return 0;
    for (i = 0; i < s->count; i++) {
        const notice_record *r = notice_record_at(s, (size_t)i);
        uint64_t id = i + 1, len = 32 + (v + id) % 225;
        char want[NOTICE_MAX_CONTENT + 1];
        int prefix;
        if (r == NULL || r->id != id || (uint64_t)r->effective_at != v || (uint64_t)r->expires_at != v + id ||
            (int64_t)r->priority != (int64_t)id || r->content_len != len)
            return 0;
        prefix = snprintf(want, sizeof want, "%" PRIu64 ":%" PRIu64 ":", v, id);
        if (prefix < 0 || (uint64_t)prefix > len)
            return 0;
        memset(want + prefix, '.', len - (uint64_t)prefix);
        if (memcmp(r->content, want, len) != 0 || r->content[len] != '\0')
            return 0;
    }
    return 1;
}

/* Opens path, retrying until deadline. Returns the last open error if it never succeeded. */
static int open_until(const char *path, int64_t deadline, notice_board **b)
{
    for (;;) {
        int rc = notice_open(path, b);
        if (rc == NOTICE_OK || now_ns() >= deadline)
            return rc;
        sleep_ms(5);
    }
}

int main(int argc, char **argv)
{
    double seconds;
    char *end;
    const char *path;
    int64_t deadline;
    notice_board *b = NULL;
    notice_snapshot_t *s = NULL;
    uint64_t snapshots = 0, validated = 0, attempts = 0, decreases = 0, first = 0, last = 0;
    uint64_t errors[N_ERRORS] = {0};
    int have_last = 0, rc, i, failed, open_rc;

    if (argc != 3 || (seconds = strtod(argv[1], &end), *end != '\0' || end == argv[1]) || !(seconds >= 0)) {
        fprintf(stderr, "usage: notice_stress SECONDS PATH\n");
        return 2;
    }
    path = argv[2];
    deadline = now_ns() + (int64_t)(seconds * 1e9);
    if (notice_guard_faults() != NOTICE_OK) {
        perror("notice_stress: installing the SIGBUS guard");
        return 1;
    }

    open_rc = open_until(path, deadline, &b);
    while (b != NULL && now_ns() < deadline) {
        rc = notice_snapshot_reuse(b, &s);
        if (rc != NOTICE_OK) {
            if (rc <= 0 && rc > -N_ERRORS)
                errors[-rc]++;
            if (rc == NOTICE_ESUPERSEDED || rc == NOTICE_ETRUNCATED) {
                /* The writer moved to a new file at the same path, or the file shrank during the snapshot (the
                 * guard caught it) and its writer restores it in place: reopen the path. */
                notice_close(b);
                b = NULL;
                open_rc = open_until(path, deadline, &b);
            } else if (rc == NOTICE_ENOTPUBLISHED) {
                sleep_ms(1);
            }
            continue;
        }
        snapshots++;
        attempts += s->attempts;
        if (have_last && s->version < last)
            decreases++;
        if (!have_last)
            first = s->version;
        last = s->version;
        have_last = 1;
        if (validate(s))
            validated++;
    }
    if (b == NULL && open_rc != NOTICE_OK)
        errors[-open_rc]++; /* never (re)opened: report why */
    notice_snapshot_free(s);
    notice_close(b);

    printf("{\"lang\":\"c\",\"pid\":%ld,\"snapshots\":%" PRIu64 ",\"validated\":%" PRIu64 ",\"attempts\":%" PRIu64
           ",\"torn_accepted\":%" PRIu64 ",\"version_decreases\":%" PRIu64 ",\"first_version\":%" PRIu64
           ",\"last_version\":%" PRIu64 ",\"errors\":{\"busy\":%" PRIu64,
           (long)getpid(), snapshots, validated, attempts, snapshots - validated, decreases, first, last,
           errors[-NOTICE_EBUSY]);
    failed = snapshots == 0 || validated != snapshots || decreases != 0;
    for (i = 1; i < N_ERRORS; i++) {
        if (i == -NOTICE_EBUSY || errors[i] == 0)
            continue;
        printf(",\"%s\":%" PRIu64, notice_error_name(-i), errors[i]);
        if (i != -NOTICE_ESUPERSEDED && i != -NOTICE_ETRUNCATED)
            failed = 1;
    }
    printf("}}\n");
    fflush(stdout);
    return failed ? 1 : 0;
}
