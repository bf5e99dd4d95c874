/* notice_follow [-s STALE_MS] [-c] [-w EXTRA] [-n] PATH - follow the board at PATH across the writer's
 * replacements of the file.
 *
 * Prints one JSON line per event, until SIGINT or SIGTERM:
 *     {"event":"version","version":V,"count":N,"reopens":R}       a new snapshot ("valid":true|false with -c)
 *     {"event":"reopened","version":V,"reopens":R}                 moved to a new file at the path
 *     {"event":"lost","version":V,"reason":"superseded"}           the open file is retired, nothing usable yet
 *     {"event":"stale","version":V} / {"event":"alive","version":V}  the writer's heartbeat went stale / is back
 *     {"event":"faulted","version":V,"faults":N}                   the fault guard caught a SIGBUS (N so far)
 * then a summary: {"event":"end","versions":N,"validated":N,"torn":N,"decreases":N,"reopens":R,"last":V,
 * "last_valid":true|false,"faults":N,"errors":{NAME:N,...}}. With -c every snapshot is checked against the stress
 * writer's pattern (docs/STRESS.md): a snapshot that does not match is counted as torn. -w EXTRA widens the
 * pattern by EXTRA records (count = EXTRA + 1 + V mod 64, every record as in the pattern) and takes its V from the
 * set itself (the records' effective_at), which must be at most the snapshot's version: a writer that repairs
 * a board republishes its set under a higher version. A mix of two sets, or of a set and zeros, still fails.
 * STALE_MS defaults to 5000.
 *
 * It installs the fault guard (notice_guard_faults) before it opens PATH, so a truncation of the file during a
 * read is a lost board, then a reopen, not a crash. -n leaves it out: the process then dies of SIGBUS when that
 * happens (the negative control of clients/sigbus_test.go).
 *
 * Exit status: 0 after the summary; 1 if PATH cannot be opened ({"error":NAME,...} on stdout); 2 on a usage
 * error. The clients tests run it (and its ASan build) as the C follower. */
#define _GNU_SOURCE
#define NOTICE_IMPLEMENTATION
#include "notice.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define N_ERRORS 16 /* error codes 0 .. -15 */

static volatile sig_atomic_t stop;
static uint64_t extra; /* -w: records added to the stress pattern */

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

/* The stress writer's snapshot for version V (STRESS.md): count = 1 + V mod 64 (plus -w EXTRA), ids 1..count,
 * effective_at = V, expires_at = V + id, priority = id, content = "{V}:{id}:" padded with '.' to
 * 32 + ((V + id) mod 225) bytes. V is the snapshot's version; with -w, the set's own (at most the version). */
static int validate(const notice_snapshot_t *s)
{
    uint64_t v = s->version, i;
    if (extra > 0) {
        if (s->count == 0 || s->records[0].effective_at < 1 || (uint64_t)s->records[0].effective_at > v)
            return 0;
        v = (uint64_t)s->records[0].effective_at;
    }
    if (s->count != extra + 1 + v % 64)
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

static const char *bool_str(int b) { return b ? "true" : "false"; }

int main(int argc, char **argv)
{
    notice_follower *f = NULL;
    notice_snapshot_t *s = NULL;
    notice_follow_status st;
    struct sigaction sa;
    long stale_ms = 5000, wide;
    int check = 0, guard = 1, opt, rc, i, last_valid = 0, stale = 0;
    uint64_t last = 0, versions = 0, valid = 0, decreases = 0, faults = 0;
    uint64_t errors[N_ERRORS] = {0};
    char *end;

    while ((opt = getopt(argc, argv, "s:cw:n")) != -1) {
        switch (opt) {
        case 's':
            stale_ms = strtol(optarg, &end, 10);
            if (*end != '\0' || end == optarg || stale_ms <= 0)
                goto usage;
            break;
        case 'c':
            check = 1;
            break;
        case 'w':
            wide = strtol(optarg, &end, 10);
            if (*end != '\0' || end == optarg || wide < 0 || wide > 1000000)
                goto usage;
            extra = (uint64_t)wide;
            break;
        case 'n':
            guard = 0;
            break;
        default:
            goto usage;
        }
    }
    if (optind != argc - 1)
        goto usage;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (guard && (rc = notice_guard_faults()) != NOTICE_OK) {
        printf("{\"error\":\"%s\",\"message\":\"installing the SIGBUS guard failed\"}\n", notice_error_name(rc));
        return 1;
    }

    rc = notice_follow_open(argv[optind], (int64_t)stale_ms * 1000000, &f);
    if (rc != NOTICE_OK) {
        printf("{\"error\":\"%s\",\"message\":\"%s\"}\n", notice_error_name(rc), notice_strerror(rc));
        return 1;
    }
    while (!stop) {
        /* A bounded wait, so that a signal (which the wait absorbs as EINTR) is seen within 100 ms. */
        rc = notice_follow_wait(f, last, 100, &s, &st);
        if (notice_faults_caught() != faults) {
            faults = notice_faults_caught();
            printf("{\"event\":\"faulted\",\"version\":%" PRIu64 ",\"faults\":%" PRIu64 "}\n", last, faults);
            fflush(stdout);
        }
        if (rc == NOTICE_ETIMEDOUT)
            continue;
        if (rc != NOTICE_OK) {
            struct timespec pause = {0, 1000000};
            if (rc <= 0 && rc > -N_ERRORS)
                errors[-rc]++;
            /* Corrupt bytes: calling again retries, but not flat out (a board its writer is restoring in place
             * can read corrupt until the republish, and a spinning reader slows that writer down). */
            nanosleep(&pause, NULL);
            continue;
        }
        if (st.reopened > 0)
            printf("{\"event\":\"reopened\",\"version\":%" PRIu64 ",\"reopens\":%" PRIu64 "}\n", last, st.reopens);
        if (st.lost != 0)
            printf("{\"event\":\"lost\",\"version\":%" PRIu64 ",\"reason\":\"%s\"}\n", last, notice_error_name(st.lost));
        if (st.changed) {
            int ok = check ? validate(s) : 1;
            if (s->version < last)
                decreases++;
            last = s->version;
            versions++;
            valid += (uint64_t)ok;
            last_valid = ok;
            printf("{\"event\":\"version\",\"version\":%" PRIu64 ",\"count\":%" PRIu64 ",\"reopens\":%" PRIu64,
                   s->version, s->count, st.reopens);
            if (check)
                printf(",\"valid\":%s", bool_str(ok));
            printf("}\n");
        }
        if (st.stale != stale) {
            stale = st.stale;
            printf("{\"event\":\"%s\",\"version\":%" PRIu64 "}\n", stale ? "stale" : "alive", last);
        }
        fflush(stdout);
    }
    printf("{\"event\":\"end\",\"versions\":%" PRIu64 ",\"validated\":%" PRIu64 ",\"torn\":%" PRIu64
           ",\"decreases\":%" PRIu64 ",\"reopens\":%" PRIu64 ",\"last\":%" PRIu64 ",\"last_valid\":%s"
           ",\"faults\":%" PRIu64 ",\"errors\":{",
           versions, valid, check ? versions - valid : 0, decreases, notice_follow_reopens(f), last,
           bool_str(last_valid), notice_faults_caught());
    for (i = 1, rc = 0; i < N_ERRORS; i++) {
        if (errors[i] == 0)
            continue;
        printf("%s\"%s\":%" PRIu64, rc++ ? "," : "", notice_error_name(-i), errors[i]);
    }
    printf("}}\n");
    fflush(stdout);
    notice_snapshot_free(s);
    notice_follow_close(f);
    return 0;

usage:
    fprintf(stderr, "usage: notice_follow [-s STALE_MS] [-c] [-w EXTRA] [-n] PATH\n");
    return 2;
}
