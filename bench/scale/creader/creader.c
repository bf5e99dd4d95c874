/* creader - the C reader process of bench/scale (compiled by the bench: gcc -O2 against clients/c/notice.h).
 *
 *   creader BOARD PUBTABLE CLIENTS own|shared INTERVAL_NS SEED
 *
 * One process simulating CLIENTS clients of the board, each polling the version word every INTERVAL_NS at a phase
 * of its own: a timer wheel. The clients are sorted by phase; the process sleeps (ppoll on stdin, which also
 * carries the bench's commands) until the next client is due, at least 1 ms, and each due client loads the version
 * word with notice_version_inline (one acquire load) and compares it with the last version it holds. When it
 * changed: mode own, the client takes its own verified snapshot (notice_snapshot_reuse: copy, seq check, slot and
 * record CRCs, UTF-8 check, decoding), as a process of its own would; mode shared, the first client of the process
 * to see the version takes it and the others take that one. Then it stamps CLOCK_MONOTONIC and counts, for every
 * publish it had not seen, the time since the bench sent it (the table PUBTABLE, written by the bench before each
 * publish). The copies go to one buffer per process: memory does not grow with the clients, their CPU does.
 *
 * The protocol on stdin/stdout and the report's JSON are bench/scale/internal/sim's (sim.go). CLIENTS = 1 is the
 * real-process point: one process per client. */
#define _GNU_SOURCE
#define NOTICE_IMPLEMENTATION
#include "notice.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define BIN_NS 100000LL /* sim.Bin */
#define NBINS 600000    /* sim.Bins */
#define PUB_SLOTS 65536 /* sim.PubSlots */
#define MIN_SLEEP_NS 1000000LL

typedef struct {
    uint32_t *counts;
    int64_t max;
} hist;

static struct {
    notice_board *b;
    const int64_t *pub;
    int own;
    size_t k;
    uint64_t *last_v, *last_s;
    int64_t *phase;
    notice_snapshot_t *snap; /* the process's copy buffer: every own snapshot, and the shared one */
    uint64_t snap_seq;

    int measuring, stopping;
    uint64_t first, last;
    size_t seen_all;

    uint64_t polls, missed, snapshots, pairs, errors;
    char error[256];
    hist lat, lag;
} S;

static int64_t mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void hist_add(hist *h, int64_t d)
{
    int64_t bin = d < 0 ? 0 : d / BIN_NS;
    if (bin >= NBINS)
        bin = NBINS - 1;
    h->counts[bin]++;
    if (d > h->max)
        h->max = d;
}

static void hist_print(const char *name, const hist *h)
{
    int first = 1;
    printf(",\"%s\":[", name);
    for (int i = 0; i < NBINS; i++) {
        if (h->counts[i] == 0)
            continue;
        printf("%s[%d,%" PRIu32 "]", first ? "" : ",", i, h->counts[i]);
        first = 0;
    }
    printf("],\"%s_max_ns\":%" PRId64, name, h->max);
}

static void fail(const char *what, int rc)
{
    S.errors++;
    if (S.error[0] == '\0')
        snprintf(S.error, sizeof S.error, "%s: %s", what, rc ? notice_error_name(rc) : "");
}

/* The splitmix64 generator and a sort of the phases. */
static uint64_t rng;
static uint64_t next_rand(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Takes a verified snapshot into S.snap and reads the publish it shows. */
static int take_snapshot(void)
{
    int rc = notice_snapshot_reuse(S.b, &S.snap);
    if (rc != NOTICE_OK) {
        fail("snapshot", rc);
        return rc;
    }
    if (S.measuring)
        S.snapshots++;
    const notice_record *r = notice_record_at(S.snap, 0);
    if (r == NULL || r->id != 1 || strncmp(r->content, "seq=", 4) != 0) {
        fail("announcement 1 missing or without seq=", 0);
        return -1;
    }
    S.snap_seq = strtoull(r->content + 4, NULL, 10);
    return 0;
}

static void observe(size_t i, uint64_t seq, int64_t t)
{
    if (S.measuring) {
        uint64_t k = S.last_s[i] + 1 > S.first ? S.last_s[i] + 1 : S.first;
        for (; k <= seq; k++) {
            int64_t sent = __atomic_load_n(&S.pub[k % PUB_SLOTS], __ATOMIC_ACQUIRE);
            if (sent == 0) {
                fail("a publish with no time in the table", 0);
                continue;
            }
            hist_add(&S.lat, t - sent);
            S.pairs++;
        }
        if (S.stopping && S.last_s[i] < S.last && seq >= S.last)
            S.seen_all++;
    }
    S.last_s[i] = seq;
}

/* Client i's poll, due at due, run at now; returns 1 if it took a snapshot (time passed). */
static int poll_client(size_t i, int64_t now, int64_t due)
{
    int took = 0;
    if (S.measuring) {
        S.polls++;
        hist_add(&S.lag, now - due);
    }
    uint64_t v = notice_version_inline(S.b);
    if (v == S.last_v[i])
        return 0;
    if (S.own || S.snap->version < v) {
        took = 1;
        if (take_snapshot() != 0)
            return 1;
    }
    S.last_v[i] = S.snap->version;
    if (S.snap_seq > S.last_s[i])
        observe(i, S.snap_seq, took ? mono() : now);
    return took;
}

static void report(int64_t cpu0, int64_t wall0)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    int64_t cpu = (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
                  (int64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
    uint64_t missing = 0;
    for (size_t i = 0; i < S.k; i++) {
        uint64_t held = S.last_s[i] > S.first - 1 ? S.last_s[i] : S.first - 1;
        if (held < S.last)
            missing += S.last - held;
    }
    printf("{\"lang\":\"c\",\"mode\":\"%s\",\"clients\":%zu,\"pid\":%d,\"cpu_ns\":%" PRId64 ",\"wall_ns\":%" PRId64
           ",\"polls\":%" PRIu64 ",\"missed_polls\":%" PRIu64 ",\"snapshots\":%" PRIu64 ",\"pairs\":%" PRIu64
           ",\"missing\":%" PRIu64 ",\"errors\":%" PRIu64,
           S.own ? "own" : "shared", S.k, (int)getpid(), cpu - cpu0, mono() - wall0, S.polls, S.missed, S.snapshots,
           S.pairs, missing, S.errors);
    if (S.error[0] != '\0') {
        printf(",\"error\":\"");
        for (const char *p = S.error; *p; p++)
            if (*p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
                putchar(*p);
        printf("\"");
    }
    hist_print("lat", &S.lat);
    hist_print("lag", &S.lag);
    printf("}\n");
    fflush(stdout);
}

static int64_t cpu_now(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
           (int64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: creader BOARD PUBTABLE CLIENTS own|shared INTERVAL_NS SEED\n");
        return 2;
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the bench */
    if (getppid() == 1)
        return 1;
    S.k = strtoull(argv[3], NULL, 10);
    S.own = strcmp(argv[4], "own") == 0;
    int64_t P = strtoll(argv[5], NULL, 10);
    rng = strtoull(argv[6], NULL, 10);
    if (S.k == 0 || P <= 0 || (!S.own && strcmp(argv[4], "shared") != 0)) {
        fprintf(stderr, "creader: bad arguments\n");
        return 2;
    }
    int rc = notice_open(argv[1], &S.b);
    if (rc != NOTICE_OK) {
        fprintf(stderr, "creader: open %s: %s\n", argv[1], notice_strerror(rc));
        return 1;
    }
    FILE *pf = fopen(argv[2], "r");
    if (pf == NULL) {
        perror("creader: pub table");
        return 1;
    }
    S.pub = mmap(NULL, PUB_SLOTS * 8, PROT_READ, MAP_SHARED, fileno(pf), 0);
    fclose(pf);
    S.last_v = calloc(S.k, 8);
    S.last_s = calloc(S.k, 8);
    S.phase = malloc(S.k * 8);
    S.lat.counts = calloc(NBINS, 4);
    S.lag.counts = calloc(NBINS, 4);
    if (S.pub == MAP_FAILED || !S.last_v || !S.last_s || !S.phase || !S.lat.counts || !S.lag.counts) {
        fprintf(stderr, "creader: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < S.k; i++)
        S.phase[i] = (int64_t)(next_rand() % (uint64_t)P);
    qsort(S.phase, S.k, 8, cmp_i64);

    /* Every client starts holding the board as it is (one snapshot for all: the start is not measured). */
    if (take_snapshot() != 0) {
        fprintf(stderr, "creader: first snapshot: %s\n", S.error);
        return 1;
    }
    for (size_t i = 0; i < S.k; i++) {
        S.last_v[i] = S.snap->version;
        S.last_s[i] = S.snap_seq;
    }
    printf("ready %" PRIu64 "\n", S.snap_seq);
    fflush(stdout);

    char line[256];
    size_t used = 0;
    int64_t cpu0 = 0, wall0 = 0, stop_at = 0, base = mono(), cycle = 0;
    size_t idx = 0;
    for (;;) {
        int64_t now = mono();
        for (unsigned n = 1;; n++) {
            int64_t due = base + cycle * P + S.phase[idx];
            if (due > now)
                break;
            if (poll_client(idx, now, due))
                now = mono();
            if (++idx == S.k) {
                idx = 0;
                cycle++;
                int64_t late = now - (base + cycle * P);
                if (late > P) { /* a whole interval behind: skip the polls missed */
                    cycle += late / P;
                    if (S.measuring)
                        S.missed += (uint64_t)(late / P) * S.k;
                }
            }
            if ((n & 63) == 0)
                now = mono();
        }
        if (S.stopping && (S.seen_all == S.k || now >= stop_at)) {
            report(cpu0, wall0);
            return 0;
        }
        int64_t wait = base + cycle * P + S.phase[idx] - now;
        if (wait < MIN_SLEEP_NS)
            wait = MIN_SLEEP_NS;
        struct timespec ts = {wait / 1000000000LL, wait % 1000000000LL};
        struct pollfd pfd = {.fd = 0, .events = POLLIN};
        if (ppoll(&pfd, 1, &ts, NULL) <= 0 || !(pfd.revents & (POLLIN | POLLHUP)))
            continue;
        ssize_t got = read(0, line + used, sizeof line - 1 - used);
        if (got <= 0)
            return 0; /* the bench is gone */
        used += (size_t)got;
        line[used] = '\0';
        char *nl;
        while ((nl = strchr(line, '\n')) != NULL) {
            *nl = '\0';
            unsigned long long a, b;
            if (sscanf(line, "start %llu", &a) == 1) {
                S.measuring = 1;
                S.first = a;
                cpu0 = cpu_now();
                wall0 = mono();
            } else if (sscanf(line, "stop %llu %llu", &a, &b) == 2) {
                S.stopping = 1;
                S.last = a;
                stop_at = mono() + (int64_t)b * 1000000LL;
                for (size_t i = 0; i < S.k; i++)
                    if (S.last_s[i] >= S.last)
                        S.seen_all++;
            } else {
                fprintf(stderr, "creader: bad command %s\n", line);
                return 1;
            }
            size_t rest = used - (size_t)(nl + 1 - line);
            memmove(line, nl + 1, rest + 1);
            used = rest;
        }
        if (used == sizeof line - 1) {
            fprintf(stderr, "creader: command too long\n");
            return 1;
        }
    }
}
